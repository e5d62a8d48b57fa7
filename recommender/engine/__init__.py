"""The embedded streaming engine that maintains the views of sql/ (see docs/views.md)."""

from recommender.changefeed import ChangeBatch, PgSubscription, Subscription
from recommender.engine.engine import CLOCKS, Engine, EngineConfig
from recommender.engine.refresh import ViewRunner, evaluate

__all__ = ["CLOCKS", "ChangeBatch", "Engine", "EngineConfig", "PgSubscription",
           "Subscription", "ViewRunner", "evaluate"]  # fmt: skip
