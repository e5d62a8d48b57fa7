"""Wiring shared by `flashrec serve` and `flashrec udf-server`: where the index comes from.

- `--history PATH`: built once from a session-rec TSV file (benchmarks, offline use).
- `--source embedded`: built from the embedded PostgreSQL's vmis_history table, then kept
  live by the engine's in-process change feed when the engine runs in this process
  (`flashrec up`), else by its `flashrec_changes` table (LISTEN/NOTIFY), else (a plain
  PostgreSQL holding the view) by re-reading the view's keys every second.
- `--source risingwave`: built from the snapshot of a FULL cursor on the subscription
  `vmis_history_sub` (created by `flashrec deploy`), then kept live by the same cursor.

The blend's mirrors of co_view_pairs and trending_by_category (view_mirrors.py) follow the
engine's in-process feed the same way, else the view's change feed table where it has one
(trending_by_category on the embedded engine), else a re-read of the view every second.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from recommender import catalog, config, sqlfiles
from recommender.blend import BlendWeights
from recommender.config import DEFAULT_API_PORT, DEFAULT_DATA_DIR
from recommender.serving.index_sync import (
    HISTORY_VIEW,
    IndexSync,
    RisingWaveFeed,
    SnapshotDiffFeed,
    load_snapshot,
)
from recommender.serving.live_index import LiveIndex
from recommender.serving.prometheus import Metrics
from recommender.serving.view_mirrors import (
    CO_VIEW,
    TRENDING,
    CoViewMirror,
    RowDiffFeed,
    TrendingMirror,
    load_rows,
)
from udfs.params import VmisParams

log = logging.getLogger(__name__)

SOURCES = ("embedded", "risingwave")
SUBSCRIPTION = "vmis_history_sub"


class EngineFeed:
    """The embedded engine's in-process subscription to one view."""

    def __init__(self, engine: Any, view: str = HISTORY_VIEW) -> None:
        self._sub = engine.subscribe(view)

    def poll(self, timeout: float) -> Any:
        return self._sub.poll(timeout)

    def close(self) -> None:
        close = getattr(self._sub, "close", None)
        if close is not None:
            close()


def _has_change_table(dsn: str) -> bool:
    """Whether this is the embedded engine's PostgreSQL: it has `flashrec_changes` (a view
    over the per-view feed tables, made when the engine's publisher starts)."""
    import psycopg

    from recommender.postgres import relation_exists

    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        return relation_exists(conn, "flashrec_changes")


def make_index(
    params: VmisParams | None = None,
    *,
    history: Path | None = None,
    source: str = "embedded",
    dsn: str | None = None,
    engine: Any = None,
    metrics: Metrics | None = None,
) -> tuple[LiveIndex, IndexSync | None]:
    """The index and, when it follows a view, its (not yet started) sync thread. `params`:
    config.vmis_params() when not given."""
    index = LiveIndex(params or config.vmis_params())
    if history is not None:
        index.build_from_tsv(history)
        log.info(
            "index built from %s: %d sessions, %d items", history, index.n_sessions, index.n_items
        )
        return index, None
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r} (expected one of {', '.join(SOURCES)})")
    if not dsn:
        raise ValueError("no history: give --history PATH or a PostgreSQL DSN (--pg-dsn)")

    def open_feed():
        if engine is not None:
            return EngineFeed(engine)
        if source == "risingwave":  # a FULL cursor: its snapshot, then the changes after it
            return RisingWaveFeed(dsn, SUBSCRIPTION, full=True)
        if _has_change_table(dsn):
            from recommender.changefeed import PgSubscription

            return PgSubscription(dsn, HISTORY_VIEW)
        log.warning("no flashrec_changes table: following %s by re-reading it", HISTORY_VIEW)
        return SnapshotDiffFeed(dsn)

    sync = IndexSync(index, open_feed, lambda: load_snapshot(dsn), metrics)
    return index, sync


def mirror_feed(view: str, source: str, dsn: str, engine: Any = None) -> Any:
    """A change feed of `view` for its mirror: the engine's in-process one, else the view's
    feed table on the embedded engine's PostgreSQL, else a re-read of the view every second."""
    if engine is not None:
        return EngineFeed(engine, view)
    has_table = view in catalog.feed_views(sqlfiles.catalog())
    if source == "embedded" and has_table and _has_change_table(dsn):
        from recommender.changefeed import PgSubscription

        return PgSubscription(dsn, view)
    return RowDiffFeed(dsn, view)


def make_mirrors(
    source: str, dsn: str | None, engine: Any = None
) -> tuple[CoViewMirror | None, TrendingMirror | None]:
    """The (not yet started) mirrors of co_view_pairs and trending_by_category; None without
    a DSN (an index built from a file)."""
    if not dsn:
        return None, None
    co_view = CoViewMirror(lambda: mirror_feed(CO_VIEW, source, dsn, engine),
                           lambda: load_rows(dsn, CO_VIEW))  # fmt: skip
    trending = TrendingMirror(lambda: mirror_feed(TRENDING, source, dsn, engine),
                              lambda: load_rows(dsn, TRENDING))  # fmt: skip
    return co_view, trending


def build_state(
    *,
    params: VmisParams | None = None,
    data_dir: Path,
    history: Path | None = None,
    source: str = "embedded",
    dsn: str | None = None,
    engine: Any = None,
    session_ttl_s: float | None = None,
    blend_weights: BlendWeights | None = None,
    recommend_blend: bool | None = None,
):
    """The serving state (index, sync thread, session store, views, blend) for the API.
    `params`, `session_ttl_s`, `blend_weights` and `recommend_blend` not given: their
    settings (config.vmis_params(), api.session_ttl, config.blend_weights(),
    api.recommend_blend)."""
    from recommender import config
    from recommender.serving.app import ServingState
    from recommender.serving.blender import Blender
    from recommender.serving.session_store import SessionStore
    from recommender.serving.views import Views

    params = params or config.vmis_params()
    weights = blend_weights or config.blend_weights()  # a bad setting raises before any start
    if recommend_blend is None:
        recommend_blend = bool(config.value("api.recommend_blend"))
    metrics = Metrics()
    index, sync = make_index(
        params, history=history, source=source, dsn=dsn, engine=engine, metrics=metrics
    )
    store = SessionStore(
        data_dir / "sessions", max_items=params.max_items_in_session,
        ttl_s=config.value("api.session_ttl") if session_ttl_s is None else session_ttl_s,
    )
    views = Views(dsn, raw_events=source == "embedded")
    co_view, trending = make_mirrors(source, dsn, engine)
    blender = Blender(index, views, weights, co_view, trending)
    return ServingState(index=index, store=store, views=views, metrics=metrics, sync=sync,
                        blender=blender, recommend_blend=recommend_blend)  # fmt: skip


class ApiThread:
    """The API running in a background thread of another command (`flashrec up`)."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        import threading

        import uvicorn

        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            loop=loop_impl(),
            http=http_impl(),
        )
        self.server = uvicorn.Server(config)
        self.url = f"http://{host}:{port}"
        self._thread = threading.Thread(target=self.server.run, name="api", daemon=True)

    def start(self, timeout: float = 30.0) -> ApiThread:
        """Start serving; returns once the socket listens (raises if it never does)."""
        import time

        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the API did not start listening on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10)


def start_api(
    engine: Any,
    dsn: str,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_API_PORT,
    data_dir: Path = DEFAULT_DATA_DIR,
    params: VmisParams | None = None,
    blend_weights: BlendWeights | None = None,
    recommend_blend: bool | None = None,
) -> ApiThread:
    """Hook for `flashrec up`: serve the API in this process, following `engine`'s feed."""
    from recommender.serving.app import create_app

    state = build_state(
        params=params, data_dir=data_dir, source="embedded", dsn=dsn, engine=engine,
        blend_weights=blend_weights, recommend_blend=recommend_blend,
    )  # fmt: skip
    state.pipeline = getattr(engine, "health", None)
    return ApiThread(create_app(state), host, port).start()


def loop_impl() -> str:
    try:
        import uvloop  # noqa: F401

        return "uvloop"
    except ImportError:
        return "asyncio"


def http_impl() -> str:
    try:
        import httptools  # noqa: F401

        return "httptools"
    except ImportError:
        return "h11"
