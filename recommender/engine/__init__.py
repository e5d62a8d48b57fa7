"""The embedded streaming engine that maintains the views of sql/ (see docs/views.md)."""

from recommender.changefeed import ChangeBatch, PgSubscription, Subscription
from recommender.engine.engine import Engine
from recommender.engine.refresh import ViewRunner, evaluate
from recommender.engine.settings import (
    CLOCKS,
    BackgroundConfig,
    EngineConfig,
    PublishConfig,
    RefreshConfig,
    SourceConfig,
)

__all__ = ["CLOCKS", "BackgroundConfig", "ChangeBatch", "Engine", "EngineConfig",
           "PgSubscription", "PublishConfig", "RefreshConfig", "SourceConfig", "Subscription",
           "ViewRunner", "evaluate"]  # fmt: skip
