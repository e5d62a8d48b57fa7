"""The background tier: heavy views refreshed on their own cadence, off the ingest loop.

A tier is chosen by whoever starts the engine and handed to it as a `TierFactory`:
`thread_tier` (the default: a thread of the engine's process, below) or
`recommender.engine.worker.process_tier` (a child process). With no background interval the
engine keeps every view in its main refresh (no tier).

The 30-day customer views' refresh grows with the users touched since the last one;
refreshed in the engine loop they would hold back every event's way into PostgreSQL. Here
they run in their own thread, with their own DuckDB cursor (temp tables are per connection;
the stored events are shared) and their own PostgreSQL connection: each of their refreshes
is still one transaction, at the engine clock of that moment. Their changes go to in-process
subscribers, not to flashrec_changes (their commits would interleave with the main tier's
epochs).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlglot import exp

from recommender import sqlfiles
from recommender.changefeed import ChangeBatch, FeedHub
from recommender.engine.baseline import seed_views
from recommender.engine.refresh import ViewRunner
from recommender.postgres.local import local_backend
from recommender.processes import lower_priority

log = logging.getLogger(__name__)


def split_views(
    objects: list[sqlfiles.SqlObject], background: tuple[str, ...]
) -> tuple[list[sqlfiles.SqlObject], list[sqlfiles.SqlObject]]:
    """(main, background) objects. A view may go to the background only if it reads no other
    view (it cannot see the main tier's results); otherwise it stays in the main tier."""
    names = {v.name for v in sqlfiles.views(objects)}
    chosen = set()
    for view in sqlfiles.views(objects):
        if view.name not in background:
            continue
        tables = {t.name for t in sqlfiles.view_query(view).find_all(exp.Table)}
        reads = tables & (names - {view.name})
        if reads:
            log.warning("%s reads %s: kept in the main refresh", view.name, ", ".join(reads))
        else:
            chosen.add(view.name)
    main = [o for o in objects if o.name not in chosen]
    return main, [o for o in objects if o.name in chosen]


@dataclass(frozen=True)
class TierContext:
    """What a tier gets from the engine that starts it."""

    con: Any  # the engine's DuckDB connection (its stored events)
    views: list[sqlfiles.SqlObject]  # the tier's views
    overrides: dict[str, Any]  # their incremental maintainers
    config: Any  # the engine's EngineConfig
    clock: Callable[[], datetime | None]
    hub: FeedHub
    epoch: Callable[[], int]  # the main tier's epoch now


class Tier(Protocol):
    """The background views' refresher, as the engine drives it."""

    in_process: bool  # its changes reach the engine's in-process subscribers
    last_now: datetime | None  # the clock of its last refresh (None: none, or not known)

    @property
    def running(self) -> bool: ...

    @property
    def error(self) -> BaseException | None: ...

    def horizon(self) -> timedelta: ...

    def refresh(self) -> list[ChangeBatch]: ...

    def start(self) -> Any: ...

    def stop(self) -> None: ...


TierFactory = Callable[[TierContext], Tier]


def thread_tier(ctx: TierContext) -> BackgroundTier:
    """The background views in a thread of the engine's process."""
    from recommender.postgres.schema import view_comments

    c, publish = ctx.config.background, ctx.config.publish
    return BackgroundTier(ctx.con, ctx.views, publish.dsn, c.interval, ctx.clock, ctx.hub,
                          ctx.epoch, c.nice, ctx.overrides, c.share, unlogged=publish.unlogged,
                          comments=view_comments(ctx.views, ctx.config.refresh.sql_dir)
                          )  # fmt: skip


class BackgroundTier:
    """Refreshes some views every `interval` seconds in a thread; each refresh one
    PostgreSQL transaction of their changes and status rows."""

    def __init__(self, con, objects: list[sqlfiles.SqlObject], dsn: str, interval: float,
                 clock: Callable[[], datetime | None], hub: FeedHub,
                 epoch: Callable[[], int], nice: int = 0,
                 overrides: dict[str, Any] | None = None, share: float = 1.0,
                 unlogged: bool = False, comments: dict[str, str] | None = None
                 ) -> None:  # fmt: skip
        from recommender.postgres.publisher import Publisher

        if not 0 < share <= 1:  # before any cursor or connection is opened
            raise ValueError(f"the background share must be in (0, 1], not {share}")
        self.con = con.cursor()
        self.runner = ViewRunner(self.con, objects, overrides)
        self.publisher = Publisher(dsn, feed_views=(), unlogged=unlogged, comments=comments)
        seed_views(self.runner, self.publisher, "background views")  # the diff's baseline
        self.interval = interval
        self.share = share
        self.nice = nice
        if nice:  # its PostgreSQL backend (a local server) runs nicer too
            lower_priority(local_backend(self.publisher.conn), nice, "its PostgreSQL backend")
        self.clock = clock
        self.hub = hub
        self.epoch = epoch
        self.in_process = True
        self.last_refresh_ms = 0.0
        self.last_now: datetime | None = None  # the clock of the last refresh
        self.refresh_count = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def horizon(self) -> timedelta:
        return self.runner.horizon()

    def refresh(self) -> list[ChangeBatch]:
        """One refresh of the tier's views at the engine clock; returns the changes."""
        with self._lock:
            now = self.clock()
            if now is None:
                return []
            started = time.perf_counter()
            results = self.runner.refresh(now)
            self.last_now = now
            epoch = self.epoch()
            self.publisher.publish_views(results, watermark=now, epoch=epoch)
            self.runner.commit([r.name for r in results])
            batches = self.hub.publish_refresh(results, epoch)
            self.last_refresh_ms = (time.perf_counter() - started) * 1000
            self.refresh_count += 1
            log.info("background refresh: %.0f ms; the next in %.0f s", self.last_refresh_ms,
                     self.pause_after(self.last_refresh_ms / 1000))  # fmt: skip
            return batches

    def pause_after(self, refresh_s: float) -> float:
        """Seconds between the end of a refresh that took `refresh_s` and the next: the
        interval, or longer, so that refreshing takes at most `share` of the time."""
        return max(self.interval, refresh_s * (1 - self.share) / self.share)

    def _run(self) -> None:
        if self.nice:
            lower_priority(threading.get_native_id(), self.nice, "the background thread")
        while True:  # at once (a restart brings the views up to date), then every interval
            try:
                self.refresh()
            except BaseException as exc:
                self.error = exc
                log.exception("background refresh failed")
                return
            if self._stop.wait(self.pause_after(self.last_refresh_ms / 1000)):
                return

    def start(self) -> BackgroundTier:
        self._thread = threading.Thread(target=self._run, name="engine-background", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=300)
        self.publisher.close()
        self.con.close()
