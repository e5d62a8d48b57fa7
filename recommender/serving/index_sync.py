"""Keep the live VMIS-kNN index equal to the vmis_history view.

At start the index is built from `SELECT * FROM vmis_history`; then a feed of the view's
changes is applied batch by batch: a deleted row removes its session, an inserted row
upserts it (an update arrives as delete + insert of the same session and becomes one
upsert). Applying a change twice gives the same index, so the feed is opened before the
snapshot is read and nothing falls between the two.

Feeds, all with `poll(timeout)` -> a ChangeBatch (columns, inserts, deletes), a list of
them, or None:
- the embedded engine's in-process subscription (`engine.subscribe("vmis_history")`),
- the embedded engine's `flashrec_changes` table from another process (PgSubscription),
- a RisingWave subscription cursor (blocking FETCH with a timeout),
- a re-read of the whole view every second, diffed (any PostgreSQL-wire server).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from recommender.engine.feed import ChangeBatch  # the change feed's batch, one definition
from recommender.serving.live_index import LiveIndex
from recommender.serving.metrics import Metrics

log = logging.getLogger(__name__)

HISTORY_VIEW = "vmis_history"
SESSION_COLUMNS = ("session_id",)
ITEMS_COLUMNS = ("items", "item_ids", "product_ids")
TIME_COLUMNS = ("last_ts", "last_event_ts", "last_event", "last_event_at", "last_event_time", "ts")


__all__ = ["ChangeBatch", "IndexSync", "RisingWaveFeed", "SnapshotDiffFeed", "apply_batch"]


class Feed(Protocol):
    def poll(self, timeout: float) -> Any: ...


def epoch_seconds(value: Any) -> float:
    """A timestamp column as epoch seconds (datetime, ISO text, seconds or milliseconds)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, datetime):
        if value.tzinfo is None:  # the engine's naive timestamps are UTC
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    number = float(value)
    return number / 1000.0 if number > 1e11 else number


class HistoryRows:
    """Finds the session, items and time columns of the history view by name."""

    def __init__(self, columns: Sequence[str]) -> None:
        names = [c.lower() for c in columns]

        def pick(options: tuple[str, ...]) -> int:
            for option in options:
                if option in names:
                    return names.index(option)
            raise ValueError(f"{HISTORY_VIEW} has none of the columns {options}: {columns}")

        self.session = pick(SESSION_COLUMNS)
        self.items = pick(ITEMS_COLUMNS)
        self.time = pick(TIME_COLUMNS)

    def parse(self, row: Sequence[Any]) -> tuple[str, list[str], float]:
        items = row[self.items] or []
        return str(row[self.session]), [str(i) for i in items], epoch_seconds(row[self.time])


def load_snapshot(dsn: str, view: str = HISTORY_VIEW) -> list[tuple[str, list[str], float]]:
    """Every row of the history view, parsed."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        cur = conn.execute(f"SELECT * FROM {view}")
        parser = HistoryRows([d.name for d in cur.description])
        return [parser.parse(row) for row in cur]


def apply_batch(index: LiveIndex, batch: Any, metrics: Metrics | None = None) -> int:
    """Apply one change batch to the index; returns the number of sessions touched."""
    parser = HistoryRows(list(batch.columns))
    upserts: dict[str, tuple[list[str], float]] = {}
    for row in batch.inserts:
        session, items, ts = parser.parse(row)
        upserts[session] = (items, ts)
    removed = 0
    for row in batch.deletes:
        session = str(row[parser.session])
        if session not in upserts:
            index.remove(session)
            removed += 1
    for session, (items, ts) in upserts.items():
        index.upsert(session, items, ts)
    if metrics is not None:
        metrics.index_updates.labels("upsert").inc(len(upserts))
        metrics.index_updates.labels("remove").inc(removed)
    return len(upserts) + removed


def _is_delete(op: Any) -> bool:
    """RisingWave's op column: 'Delete'/'UpdateDelete' (text), or 2/4 in early versions."""
    if isinstance(op, int):
        return op in (2, 4)
    return "delete" in str(op).lower()


class RisingWaveFeed:
    """Changes of a view from a RisingWave subscription (`CREATE SUBSCRIPTION ... FROM view`).

    The cursor starts at the moment it is declared (the snapshot is read separately); each
    FETCH blocks up to `timeout`. Rows carry the view's columns plus `op` and `rw_timestamp`.
    """

    def __init__(self, dsn: str, subscription: str, view: str = HISTORY_VIEW) -> None:
        import psycopg

        self.view = view
        self._conn = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
        self._cursor = f"flashrec_{subscription}_{int(time.time() * 1000)}"
        self._conn.execute(
            f"DECLARE {self._cursor} SUBSCRIPTION CURSOR FOR {subscription} SINCE now()"
        )
        self.last_rw_timestamp: int | None = None

    def poll(self, timeout: float) -> ChangeBatch | None:
        cur = self._conn.execute(
            f"FETCH 1000 FROM {self._cursor} WITH (timeout = '{max(1, int(timeout))}s')"
        )
        rows = cur.fetchall()
        if not rows:
            return None
        names = [d.name.lower() for d in cur.description]
        op_at, ts_at = names.index("op"), names.index("rw_timestamp")
        keep = [i for i in range(len(names)) if i not in (op_at, ts_at)]
        batch = ChangeBatch(self.view, 0, [names[i] for i in keep])
        for row in rows:
            values = [row[i] for i in keep]
            (batch.deletes if _is_delete(row[op_at]) else batch.inserts).append(values)
            self.last_rw_timestamp = int(row[ts_at])
        batch.epoch = self.last_rw_timestamp or 0
        batch.committed_at = batch.epoch / 1000.0 if batch.epoch else None
        return batch

    def close(self) -> None:
        self._conn.close()


class SnapshotDiffFeed:
    """Changes found by re-reading the view's keys every `interval` seconds and diffing.

    Works on any PostgreSQL-wire server without a change table. Each round reads
    (session_id, time) of every row; rows that are new or whose time moved (a session's
    items change only with a new click) are then read in full, and missing ones are deleted.
    """

    def __init__(self, dsn: str, view: str = HISTORY_VIEW, interval: float = 1.0) -> None:
        import psycopg

        self.view = view
        self.interval = interval
        self._conn = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
        self._seen: dict[str, float] = {}
        self._next = 0.0
        self._epoch = 0

    def prime(self, rows: list[tuple[str, list[str], float]]) -> None:
        self._seen = {s: ts for s, _items, ts in rows}
        self._next = time.monotonic() + self.interval

    def poll(self, timeout: float) -> ChangeBatch | None:
        wait = self._next - time.monotonic()
        if wait > timeout:
            time.sleep(timeout)
            return None
        time.sleep(max(0.0, wait))
        self._next = time.monotonic() + self.interval
        cur = self._conn.execute(f"SELECT * FROM {self.view} LIMIT 0")
        parser = HistoryRows([d.name for d in cur.description])
        session_col, time_col = (
            cur.description[parser.session].name,
            cur.description[parser.time].name,
        )
        keys = {
            str(s): epoch_seconds(t)
            for s, t in self._conn.execute(f"SELECT {session_col}, {time_col} FROM {self.view}")
        }
        changed = [s for s, t in keys.items() if self._seen.get(s) != t]
        self._epoch += 1
        batch = ChangeBatch(self.view, self._epoch, ["session_id", "items", "last_ts"])
        batch.deletes = [(s, [], t) for s, t in self._seen.items() if s not in keys]
        if changed:
            cur = self._conn.execute(
                f"SELECT * FROM {self.view} WHERE CAST({session_col} AS VARCHAR) = ANY(%s)",
                (changed,),
            )
            batch.inserts = [parser.parse(row) for row in cur]
        self._seen = keys
        return batch

    def close(self) -> None:
        self._conn.close()


class IndexSync:
    """A background thread: open the feed, build the index from a snapshot, apply changes."""

    def __init__(
        self,
        index: LiveIndex,
        open_feed: Callable[[], Feed],
        snapshot: Callable[[], list[tuple[str, list[str], float]]],
        metrics: Metrics | None = None,
    ) -> None:
        self.index = index
        self.open_feed = open_feed
        self.snapshot = snapshot
        self.metrics = metrics
        self.feed: Feed | None = None
        self.last_heard = 0.0
        self.last_lag_s: float | None = None
        self.applied = 0
        self.errors = 0
        self.state = "starting"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="index-sync", daemon=True)

    def start(self) -> IndexSync:
        self._thread.start()
        return self

    def _start_feed(self) -> None:
        while not self._stop.is_set():
            try:
                self.feed = self.open_feed()
                started = time.perf_counter()
                rows = self.snapshot()
                prime = getattr(self.feed, "prime", None)
                if prime is not None:
                    prime(rows)
                self.index.build(rows)
                log.info(
                    "index built from %s: %d sessions, %d items in %.2f s",
                    HISTORY_VIEW,
                    self.index.n_sessions,
                    self.index.n_items,
                    time.perf_counter() - started,
                )
                self.state = "following"
                self.last_heard = time.time()
                return
            except Exception as exc:
                self._close_feed()
                self.errors += 1
                self.state = f"waiting for {HISTORY_VIEW}: {exc}"
                log.warning("cannot build the index yet (%s); retrying in 2 s", exc)
                self._stop.wait(2.0)

    def _run(self) -> None:
        self._start_feed()
        while not self._stop.is_set():
            try:
                batch = self.feed.poll(0.5)
            except Exception as exc:  # keep serving; the feed may recover
                self.errors += 1
                log.warning("change feed poll failed: %s", exc)
                self._stop.wait(1.0)
                continue
            self.last_heard = time.time()
            if self.metrics is not None:
                self.metrics.sync_age.set(0.0)
            batches = batch if isinstance(batch, list) else [batch] if batch is not None else []
            for one in batches:
                self._apply(one)

    def _apply(self, batch: Any) -> None:
        if not (batch.inserts or batch.deletes):
            return
        try:
            self.applied += apply_batch(self.index, batch, self.metrics)
        except Exception:
            self.errors += 1
            log.exception("could not apply a change batch of %s", batch.view)
            return
        self._record_lag(batch)

    def _record_lag(self, batch: Any) -> None:
        committed = getattr(batch, "committed_at", None)
        if committed is not None:
            self.last_lag_s = max(0.0, time.time() - epoch_seconds(committed))
            if self.metrics is not None:
                self.metrics.sync_lag.set(self.last_lag_s)

    def _close_feed(self) -> None:
        close = getattr(self.feed, "close", None)
        if close is not None:
            try:
                close()
            except Exception as exc:  # closing a broken connection may fail too
                log.debug("closing the feed failed: %s", exc)
        self.feed = None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._close_feed()
