"""The engine's configuration: its parts, the flat constructor and the JSON handed to the
background process (no PostgreSQL or broker needed)."""

from __future__ import annotations

import json
from dataclasses import fields
from datetime import timedelta
from pathlib import Path

import pytest

from recommender.engine import (
    BackgroundConfig,
    EngineConfig,
    PublishConfig,
    RefreshConfig,
    SourceConfig,
)
from recommender.engine.settings import FLAT_NAMES, PARTS


def _every_field_set(tmp_path: Path) -> EngineConfig:
    """A configuration with no field at its default."""
    return EngineConfig(
        PublishConfig("postgresql://x@127.0.0.1:1/db", feed_views=("top_products",),
                      unlogged=True, thread=False, raw_retention=timedelta(minutes=7),
                      stall_warning=3.0, reindex_interval=60.0),
        tmp_path / "state.duckdb",
        source=SourceConfig("127.0.0.1:9", "t", "t-dlq", "g", max_batch=10, clock="event"),
        refresh=RefreshConfig(interval=0.2, sql_dir=tmp_path / "sql",
                              view_intervals={"co_view_pairs": 3.0}, incremental=False,
                              catchup=1.0, gc_full_interval=0.0),
        background=BackgroundConfig(views=("customer_features",), interval=2.5, share=0.5,
                                    nice=3),
        role="background", duckdb_threads=None,
    )  # fmt: skip


def test_the_json_round_trips_the_nested_form(tmp_path: Path) -> None:
    """from_json(to_json(c)) == c for every field; the JSON holds one object per part and
    leaves the in-process overrides out."""
    config = _every_field_set(tmp_path)
    text = config.to_json()
    assert EngineConfig.from_json(text) == config
    doc = json.loads(text)
    assert set(PARTS) <= set(doc) and "overrides" not in doc["refresh"]
    assert doc["publish"]["raw_retention"] == 420.0
    assert doc["background"]["views"] == ["customer_features"]
    with_objects = EngineConfig.of(pg_dsn="", state_path=None, overrides={"v": object()})
    assert EngineConfig.from_json(with_objects.to_json()).refresh.overrides == {}


def test_the_flat_keywords_reach_their_part() -> None:
    """EngineConfig.of takes the engine's flat setting names and fills the parts."""
    config = EngineConfig.of(pg_dsn="dsn", state_path=None, topic="t", clock="event",
                             refresh_interval=0.2, catchup_refresh=1.0, unlogged_views=True,
                             publish_thread=False, background_interval=5.0,
                             background_share=0.5, background_nice=2, duckdb_threads=None,
                             sql_dir=None)  # fmt: skip
    assert config.publish == PublishConfig("dsn", unlogged=True, thread=False)
    assert config.source == SourceConfig(topic="t", clock="event")
    assert config.refresh == RefreshConfig(interval=0.2, catchup=1.0)
    assert (config.background.interval, config.background.share,
            config.background.nice) == (5.0, 0.5, 2)  # fmt: skip
    assert config.duckdb_threads is None and config.role == "main"
    with pytest.raises(TypeError, match="refresh_intervall"):
        EngineConfig.of(pg_dsn="", state_path=None, refresh_intervall=1.0)


def test_every_field_has_one_flat_name() -> None:
    """No two fields of different parts answer to the same flat keyword."""
    flat = list(FLAT_NAMES)
    renamed = set(FLAT_NAMES.values())
    flat += [f.name for part, kind in PARTS.items() for f in fields(kind)
             if (part, f.name) not in renamed]  # fmt: skip
    flat += [f.name for f in fields(EngineConfig) if f.name not in PARTS]
    assert len(flat) == len(set(flat))
