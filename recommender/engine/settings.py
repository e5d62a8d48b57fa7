"""The engine's configuration, one small dataclass per concern, held by `EngineConfig`.

`EngineConfig.of(pg_dsn=..., state_path=..., refresh_interval=...)` builds one from the flat
keywords (each part's field, or the name of `FLAT_NAMES`); `to_json`/`from_json` hand the
nested form to the background process.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, fields, is_dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from recommender import sqlfiles
from recommender.catalog import tier_views
from recommender.config import DEFAULT_BACKGROUND_SHARE, DEFAULT_DLQ_TOPIC, DEFAULT_TOPIC
from recommender.postgres.publisher import DEFAULT_FEED_VIEWS

CLOCKS = ("wall", "event")
ROLES = ("main", "background")


def _refuse(ranges: list[tuple[str, bool, str]]) -> None:
    """Raise ValueError naming the first setting whose check is false."""
    for name, ok, expected in ranges:
        if not ok:
            raise ValueError(f"the engine's {name} must be {expected}")


@dataclass(frozen=True)
class SourceConfig:
    """Where the events come from and how they are read."""

    bootstrap: str | None = None
    topic: str = DEFAULT_TOPIC
    dlq_topic: str = DEFAULT_DLQ_TOPIC
    group_id: str = "flashrec-engine"
    max_batch: int = 50_000
    # "wall": NOW() is the wall clock; "event": the newest event time seen (replays)
    clock: str = "wall"

    def check(self) -> None:
        if self.clock not in CLOCKS:
            raise ValueError(f"unknown clock {self.clock!r} (expected wall or event)")
        _refuse([("max_batch", self.max_batch > 0, "above 0")])


@dataclass(frozen=True)
class RefreshConfig:
    """Which views the main loop computes, how and how often."""

    interval: float = 0.5
    sql_dir: Path | None = None
    view_intervals: dict[str, float] = field(default_factory=dict)  # slower cadence per view
    incremental: bool = True  # co_view_pairs by the Numba maintainer instead of recompute
    overrides: dict[str, Any] = field(default_factory=dict)  # objects: never serialised
    # while behind (consumer batches come back full) refresh at most this often: fewer,
    # larger refreshes let a backlog drain faster
    catchup: float = 5.0
    # Python's full GC collections walk the whole state: objects alive after a refresh are
    # frozen (gc.freeze); every this many seconds they are unfrozen and collected once
    # (0: Python's default GC)
    gc_full_interval: float = 600.0

    def check(self) -> None:
        _refuse([("refresh_interval", self.interval > 0, "above 0"),
                 ("catchup_refresh", self.catchup >= 0, "0 or more")]
                + [(f"view_intervals[{name!r}]", seconds > 0, "above 0")
                   for name, seconds in self.view_intervals.items()])  # fmt: skip


@dataclass(frozen=True)
class PublishConfig:
    """Where and how the changes reach PostgreSQL."""

    dsn: str
    # views whose changes also go to PostgreSQL's flashrec_changes (None: all of them)
    feed_views: tuple[str, ...] | None = DEFAULT_FEED_VIEWS
    # views without a feed get UNLOGGED tables: no WAL; PostgreSQL empties them when it
    # recovers from a crash and the engine republishes them when it starts. Off by default:
    # replicas and backups do not hold such tables
    unlogged: bool = False
    # the loop publishes each refresh in a thread while it computes the next (False: inline)
    thread: bool = True
    # how long the raw clickstream table keeps the events it was handed
    raw_retention: timedelta = timedelta(minutes=30)
    # a publish in flight this long is logged as stuck and /readyz says "stalled"
    stall_warning: float = 10.0
    # seconds between checks that rebuild a view table's index grown to twice its lean size
    # (recommender.postgres.upkeep; 0: never)
    reindex_interval: float = 600.0

    def check(self) -> None:
        _refuse([("stall_warning", self.stall_warning > 0, "above 0"),
                 ("reindex_interval", self.reindex_interval >= 0, "0 or more")])


@dataclass(frozen=True)
class BackgroundConfig:
    """The background tier: views refreshed apart from the main loop, on a slower cadence."""

    # refreshed every `interval` s (0: in every main refresh); None: those of tier
    # "background" in the catalog of the engine's sql_dir
    views: tuple[str, ...] | None = None
    interval: float = 30.0
    # at most this share of the time goes to refreshing them: after a refresh of D s the
    # next waits max(interval, D * (1 - share) / share) (1: only the interval)
    share: float = DEFAULT_BACKGROUND_SHARE
    # its thread and PostgreSQL backend (local servers) run this much nicer than the
    # engine, so the main tier's freshness comes first when the CPU is short
    nice: int = 10

    def check(self) -> None:
        _refuse([("background_interval", self.interval >= 0, "0 or more"),
                 ("background_share", 0 < self.share <= 1, "in (0, 1]")])  # fmt: skip


PARTS: dict[str, type] = {"source": SourceConfig, "refresh": RefreshConfig,
                          "publish": PublishConfig, "background": BackgroundConfig}  # fmt: skip

# flat keywords of EngineConfig.of -> (part, field) where the field's name differs
FLAT_NAMES: dict[str, tuple[str, str]] = {
    "pg_dsn": ("publish", "dsn"), "unlogged_views": ("publish", "unlogged"),
    "publish_thread": ("publish", "thread"), "refresh_interval": ("refresh", "interval"),
    "catchup_refresh": ("refresh", "catchup"), "background_views": ("background", "views"),
    "background_interval": ("background", "interval"),
    "background_share": ("background", "share"), "background_nice": ("background", "nice"),
}  # fmt: skip
_RENAMED = set(FLAT_NAMES.values())
_PART_OF = {f.name: part for part, kind in PARTS.items() for f in fields(kind)
            if (part, f.name) not in _RENAMED}  # fmt: skip

# how to read back the fields that JSON does not hold as they are (None stays None)
_DECODE: dict[str, Callable[[Any], Any]] = {
    "state_path": Path, "sql_dir": Path, "feed_views": tuple, "views": tuple,
    "raw_retention": lambda seconds: timedelta(seconds=seconds),
}


def _encode(value: Any) -> Any:
    """`value` as JSON holds it; the refresh's `overrides` (objects) left out."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in fields(value)
                if f.name != "overrides"}  # fmt: skip
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    return value


def _decoded(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v if v is None or k not in _DECODE else _DECODE[k](v) for k, v in doc.items()}


@dataclass
class EngineConfig:
    """What the engine reads, where it keeps its state and where it publishes."""

    publish: PublishConfig
    state_path: Path | None  # its DuckDB state file (None: in memory)
    source: SourceConfig = field(default_factory=SourceConfig)
    refresh: RefreshConfig = field(default_factory=RefreshConfig)
    background: BackgroundConfig = field(default_factory=BackgroundConfig)
    # "main": the engine; "background": the child process of the background tier
    # (engine/worker.py): its views only, every partition assigned by hand, no dead letters,
    # no raw events or change feed, status rows under the main tier's epoch
    role: str = "main"
    # DuckDB's threads (None: one per core, DuckDB's default). One by default: on a few
    # busy cores DuckDB's parallel tasks wait for each other
    duckdb_threads: int | None = 1

    def __post_init__(self) -> None:
        if self.background.views is None:
            catalog = sqlfiles.catalog(sqlfiles.load(self.refresh.sql_dir))
            self.background = replace(self.background,
                                      views=tier_views(catalog, "background"))  # fmt: skip

    @classmethod
    def of(cls, **flat: Any) -> EngineConfig:
        """The configuration from flat keywords: pg_dsn and state_path, then any field of
        a part by its name (or its name in FLAT_NAMES), role and duckdb_threads."""
        parts: dict[str, dict[str, Any]] = {part: {} for part in PARTS}
        top: dict[str, Any] = {}
        own = {f.name for f in fields(cls)} - set(PARTS)  # state_path, role, duckdb_threads
        for key, value in flat.items():
            part, name = FLAT_NAMES.get(key) or (_PART_OF.get(key), key)
            if part is None and key not in own:
                raise TypeError(f"EngineConfig.of() got an unexpected keyword {key!r}")
            (top if part is None else parts[part])[name] = value
        return cls(**top, **{part: PARTS[part](**kw) for part, kw in parts.items()})

    def to_json(self) -> str:
        """The configuration as JSON, nested by part (for a child process), without the
        refresh's `overrides` (objects)."""
        return json.dumps(_encode(self))

    @classmethod
    def from_json(cls, text: str) -> EngineConfig:
        """The configuration that to_json wrote."""
        doc = json.loads(text)
        parts = {part: PARTS[part](**_decoded(doc.pop(part))) for part in PARTS}
        return cls(**_decoded(doc), **parts)

    def check(self) -> None:
        """Raise ValueError naming the first setting out of its range."""
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r} (expected main or background)")
        for part in (self.source, self.refresh, self.publish, self.background):
            part.check()
        _refuse([("duckdb_threads", self.duckdb_threads is None or self.duckdb_threads > 0,
                  "above 0 or None")])  # fmt: skip
