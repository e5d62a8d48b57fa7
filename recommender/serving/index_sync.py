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

When polls keep failing (a dropped connection, a restarted RisingWave frontend, a cursor past
the subscription's retention) the feed is closed and opened again with backoff: a RisingWave
cursor is declared again from the last rw_timestamp applied while the subscription still holds
it, else the index is rebuilt from a fresh snapshot. `IndexSync.state` says which of these is
going on: starting, waiting, following, retrying, reconnecting, resnapshotting, stopped.

The thread itself is `ViewFollower`, which follows any view into a subclass's `load` and
`apply`: IndexSync for the index, the view mirrors of the blend (view_mirrors.py) for
co_view_pairs and trending_by_category.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from recommender import catalog, sqlfiles
from recommender.changefeed import ChangeBatch  # the change feed's batch, one definition
from recommender.serving.live_index import LiveIndex
from recommender.serving.prometheus import Metrics

log = logging.getLogger(__name__)


def _history_view() -> tuple[str, tuple[str, ...]]:
    """The view the index follows (`history = true` in sql/'s catalog) and its key columns."""
    entries = sqlfiles.catalog()
    name = catalog.history_view(entries)
    if name is None:
        raise RuntimeError("no view of sql/ is marked history = true in its .toml")
    return name, entries[name].keys


HISTORY_VIEW, SESSION_COLUMNS = _history_view()
ITEMS_COLUMNS = ("items", "item_ids", "product_ids")
TIME_COLUMNS = ("last_ts", "last_event_ts", "last_event", "last_event_at", "last_event_time", "ts")


__all__ = [
    "ChangeBatch",
    "CursorExpired",
    "IndexSync",
    "RisingWaveFeed",
    "SnapshotDiffFeed",
    "ViewFollower",
    "apply_batch",
]

# the refusal RisingWave gives a DECLARE ... SINCE older than the subscription's retention
# (src/frontend/src/handler/declare_cursor.rs)
OUT_OF_RETENTION = "rw_timestamp is too small"
# TCP keepalives, so that a peer that vanished fails the FETCH instead of hanging it
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
              "keepalives_count": 3}  # fmt: skip


class CursorExpired(Exception):
    """RisingWave no longer holds the changes from the requested rw_timestamp on."""


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
    if removed:
        index.shed()
    if metrics is not None:
        metrics.index_updates.labels("upsert").inc(len(upserts))
        metrics.index_updates.labels("remove").inc(removed)
    return len(upserts) + removed


def _is_delete(op: Any) -> bool:
    """RisingWave's op column: 'Delete'/'UpdateDelete' (text), or 2/4 in early versions."""
    if isinstance(op, int):
        return op in (2, 4)
    return "delete" in str(op).lower()


def declare_sql(
    cursor: str, subscription: str, since: int | None = None, full: bool = False
) -> str:
    """The DECLARE of a subscription cursor: from a snapshot of the view followed by its
    changes (FULL), from an rw_timestamp in unix ms (SINCE n, n included), else from now."""
    if full:
        start = "FULL"
    elif since is not None:
        start = f"SINCE {int(since)}"
    else:
        start = "SINCE now()"
    return f"DECLARE {cursor} SUBSCRIPTION CURSOR FOR {subscription} {start}"


def fetch_sql(cursor: str, count: int, timeout_s: float) -> str:
    """A FETCH that waits up to `timeout_s` (whole seconds, at least 1) for a first row."""
    return f"FETCH {count} FROM {cursor} WITH (timeout = '{max(1, int(timeout_s))}s')"


def close_sql(cursor: str) -> str:
    return f"CLOSE {cursor}"


def cursor_name(subscription: str) -> str:
    """A new cursor's name (cursors live in their connection's session)."""
    return f"flashrec_{subscription}_{int(time.time() * 1000)}"


def cursor_statements(subscription: str) -> list[str]:
    """Every form of statement RisingWaveFeed sends, for checking them with a SQL parser."""
    cursor = cursor_name(subscription)
    return [
        declare_sql(cursor, subscription, full=True),
        declare_sql(cursor, subscription, since=int(time.time() * 1000) - 60_000),
        declare_sql(cursor, subscription),
        fetch_sql(cursor, RisingWaveFeed.FETCH_ROWS, 1.0),
        close_sql(cursor),
    ]


class RisingWaveFeed:
    """Changes of a view from a RisingWave subscription (`CREATE SUBSCRIPTION ... FROM view`).

    The cursor starts when it is declared (the snapshot is read separately), at `since` (an
    rw_timestamp in unix ms, e.g. the last one applied; raises CursorExpired when the
    subscription no longer holds it), or with `full=True` at a snapshot of the view, which
    `read_snapshot()` returns. Each FETCH blocks up to `timeout`. Rows carry the view's
    columns plus `op` and `rw_timestamp` (NULL on snapshot rows).
    """

    FETCH_ROWS = 1000

    def __init__(
        self,
        dsn: str,
        subscription: str,
        view: str = HISTORY_VIEW,
        *,
        since: int | None = None,
        full: bool = False,
    ) -> None:
        import psycopg

        self.dsn, self.subscription, self.view = dsn, subscription, view
        self.last_rw_timestamp: int | None = since
        self._names: list[str] = []
        self._pending: list[Sequence[Any]] = []  # change rows fetched with the snapshot's end
        self._cursor = cursor_name(subscription)
        self._conn = psycopg.connect(dsn, autocommit=True, connect_timeout=10, **KEEPALIVES)
        try:
            self._conn.execute(declare_sql(self._cursor, subscription, since, full))
        except Exception as exc:
            self._conn.close()
            if since is not None and OUT_OF_RETENTION in str(exc):
                raise CursorExpired(
                    f"{subscription} no longer holds rw_timestamp {since}: {exc}"
                ) from exc
            raise

    @property
    def position(self) -> int | None:
        """The rw_timestamp of the last change row returned (None before the first)."""
        return self.last_rw_timestamp

    def resume(self, position: int) -> RisingWaveFeed:
        """The same subscription on a new connection, from `position` on (that rw_timestamp
        included: rows seen again are applied again, which gives the same index)."""
        return RisingWaveFeed(self.dsn, self.subscription, self.view, since=position)

    def _fetch(self, timeout: float) -> list[Sequence[Any]]:
        cur = self._conn.execute(fetch_sql(self._cursor, self.FETCH_ROWS, timeout))
        rows = cur.fetchall()
        if cur.description:
            self._names = [d.name.lower() for d in cur.description]
        return rows

    def read_snapshot(self, timeout: float = 1.0) -> list[tuple[str, list[str], float]]:
        """The view's rows where a FULL cursor starts. Snapshot rows have no rw_timestamp; an
        empty FETCH or the first row with one ends the snapshot (change rows fetched with it
        are kept for the next poll)."""
        sessions: dict[str, tuple[str, list[str], float]] = {}
        while True:
            rows = self._fetch(timeout)
            if not rows:
                break
            op_at, ts_at = self._names.index("op"), self._names.index("rw_timestamp")
            parser = HistoryRows(self._names)
            end = next((i for i, row in enumerate(rows) if row[ts_at] is not None), len(rows))
            for row in rows[:end]:
                session, items, ts = parser.parse(row)
                if _is_delete(row[op_at]):
                    sessions.pop(session, None)
                else:
                    sessions[session] = (session, items, ts)
            if end < len(rows):
                self._pending = rows[end:]
                break
        return list(sessions.values())

    def poll(self, timeout: float) -> ChangeBatch | list[ChangeBatch] | None:
        rows = self._pending or self._fetch(timeout)
        self._pending = []
        if not rows:
            return None
        batches = self._batches(rows)
        return batches[0] if len(batches) == 1 else batches

    def _batches(self, rows: list[Sequence[Any]]) -> list[ChangeBatch]:
        """Change rows as batches, in order. A batch's insert of a session wins over its delete
        (an update is delete + insert), so a delete after an insert starts a new batch."""
        names = self._names
        op_at, ts_at = names.index("op"), names.index("rw_timestamp")
        keep = [i for i in range(len(names)) if i not in (op_at, ts_at)]
        columns = [names[i] for i in keep]
        session_at = HistoryRows(columns).session
        batches: list[ChangeBatch] = []
        inserted: set[str] = set()
        for row in rows:
            values = [row[i] for i in keep]
            delete = _is_delete(row[op_at])
            if not batches or (delete and str(values[session_at]) in inserted):
                batches.append(ChangeBatch(self.view, 0, columns))
                inserted = set()
            batch = batches[-1]
            if delete:
                batch.deletes.append(values)
            else:
                batch.inserts.append(values)
                inserted.add(str(values[session_at]))
            if row[ts_at] is not None:
                self.last_rw_timestamp = int(row[ts_at])
            batch.epoch = self.last_rw_timestamp or 0
            batch.committed_at = batch.epoch / 1000.0 if batch.epoch else None
        return batches

    def close(self) -> None:
        """Close the cursor while the connection still works, then the connection."""
        conn = self._conn
        try:
            if not (getattr(conn, "closed", False) or getattr(conn, "broken", False)):
                conn.execute(close_sql(self._cursor))
        except Exception as exc:  # the session (and its cursor) ends with the connection
            log.debug("closing cursor %s failed: %s", self._cursor, exc)
        finally:
            conn.close()


class Paced:
    """A feed that re-reads its view at most every `interval` seconds."""

    interval: float
    _next: float

    def due(self, timeout: float) -> bool:
        """Sleep until the next read is due (True), or for `timeout` when it is later (False)."""
        wait = self._next - time.monotonic()
        if wait > timeout:
            time.sleep(timeout)
            return False
        time.sleep(max(0.0, wait))
        self._next = time.monotonic() + self.interval
        return True


class SnapshotDiffFeed(Paced):
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
        if not self.due(timeout):
            return None
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


def _view_missing(exc: BaseException) -> bool:
    """Whether PostgreSQL refused because a relation does not exist (SQLSTATE 42P01)."""
    return getattr(exc, "sqlstate", None) == "42P01"


class ViewFollower:
    """A background thread that keeps something equal to a view: open the feed, load a
    snapshot, apply changes, and open the feed again when its polls keep failing.

    Subclasses say what the view feeds: `load(rows)` replaces everything with a snapshot,
    `apply(batch)` applies one change batch (returns the rows it touched), `summary()` says
    what was loaded. `snapshot()` is read after the feed opened (a feed with its own
    `read_snapshot()`, such as a FULL cursor, gives the rows itself; one with `prime(rows)`
    is handed them).

    `state`: starting (first load), waiting (the first load failed; trying again),
    following, retrying (a poll failed; polling again), reconnecting (`max_poll_errors` polls
    failed in a row: the feed was closed and is being opened again, with backoff),
    resnapshotting (loading a fresh snapshot), stopped. `last_error`, `attempts` (tries of
    the current opening), `recoveries` and `resnapshots` say what happened.
    """

    what = "view"  # what is built, for the log

    def __init__(
        self,
        view: str,
        open_feed: Callable[[], Feed],
        snapshot: Callable[[], Any],
        *,
        max_poll_errors: int = 3,
        backoff_s: tuple[float, float] = (1.0, 30.0),
        name: str = "view-follower",
    ) -> None:
        self.view = view
        self.open_feed = open_feed
        self.snapshot = snapshot
        self.max_poll_errors = max_poll_errors
        self.backoff_s = backoff_s  # first and longest wait between tries
        self.feed: Feed | None = None
        self.last_heard = 0.0
        self.last_lag_s: float | None = None
        self.applied = 0
        self.errors = 0
        self.state = "starting"
        self.last_error: str | None = None
        self.attempts = 0
        self.recoveries = 0
        self.resnapshots = 0
        self._poll_errors = 0  # failed polls in a row
        self._unproven = False  # resumed at a position and not yet polled once
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    # --- what the view feeds (subclasses) ------------------------------------------------------
    def load(self, rows: Any) -> None:
        """Replace everything with a snapshot of the view."""
        raise NotImplementedError

    def apply(self, batch: Any) -> int:
        """Apply one change batch; returns the rows (or keys) it touched."""
        raise NotImplementedError

    def summary(self) -> str:
        return ""

    def _heard(self) -> None:
        """A poll answered (with or without changes)."""

    def _lagged(self, lag_s: float) -> None:
        """A batch committed `lag_s` seconds ago was applied."""

    # --- the thread -------------------------------------------------------------------------
    def start(self) -> ViewFollower:
        self._thread.start()
        return self

    @property
    def following(self) -> bool:
        return self.state == "following"

    def status(self) -> dict[str, Any]:
        """What the follower is doing and what happened to it, for /v1/status."""
        return {
            "state": self.state,
            "error": self.last_error,
            "attempts": self.attempts,
            "recoveries": self.recoveries,
            "resnapshots": self.resnapshots,
            "position": getattr(self.feed, "position", None),
        }

    def _build(self) -> None:
        """Open a feed and load a snapshot: the feed's own (a FULL cursor) or a read of the
        view made after the feed opened (changes in between then arrive twice, which gives
        the same result). Loading replaces everything loaded before."""
        self.feed = self.open_feed()
        started = time.perf_counter()
        read_snapshot = getattr(self.feed, "read_snapshot", None)
        rows = read_snapshot() if read_snapshot is not None else self.snapshot()
        prime = getattr(self.feed, "prime", None)
        if prime is not None:
            prime(rows)
        self.load(rows)
        log.info("%s built from %s: %s in %.2f s", self.what, self.view, self.summary(),
                 time.perf_counter() - started)  # fmt: skip

    def _connect(self, old: Feed | None = None, position: Any = None) -> None:
        """Open the feed, trying again with backoff until it works or the follower stops:
        `old` resumed at `position` when given, else a new feed and a fresh snapshot (at once
        when the subscription no longer holds `position`)."""
        recovering = old is not None
        delay = self.backoff_s[0]
        self.attempts = 0
        while not self._stop.is_set():
            self.attempts += 1
            try:
                if position is not None:
                    self.feed = old.resume(position)  # type: ignore[union-attr]
                    self._unproven = True
                    log.info("change feed of %s resumed at %s", self.view, position)
                else:
                    self.state = "resnapshotting" if recovering else "starting"
                    self._build()
                    if recovering:
                        self.resnapshots += 1
                self.state = "following"
                self.last_heard = time.time()
                return
            except CursorExpired as exc:
                self._failed(exc, "resnapshotting")
                log.warning("%s; loading a fresh snapshot of %s", exc, self.view)
                position = None
            except Exception as exc:
                self._close_feed()
                self._failed(exc, "reconnecting" if recovering else "waiting")
                if not recovering and _view_missing(exc):
                    # a first start: the engine creates the view at its first refresh
                    level = logging.INFO if self.attempts == 1 else logging.DEBUG
                    log.log(level, "%s does not exist yet: waiting for the engine's first "
                            "refresh (checking every %.1f s)", self.view, self.backoff_s[0])
                    self._stop.wait(self.backoff_s[0])
                    continue
                log.warning(
                    "cannot open the change feed of %s (attempt %d: %s); trying again in %.1f s",
                    self.view,
                    self.attempts,
                    exc,
                    delay,
                )
                self._stop.wait(delay)
                delay = min(delay * 2, self.backoff_s[1])

    def _failed(self, exc: Exception, state: str) -> None:
        self.errors += 1
        self.last_error = f"{type(exc).__name__}: {exc}".strip()
        self.state = state

    def _run(self) -> None:
        self._connect()
        while not self._stop.is_set():
            try:
                batch = self.feed.poll(0.5)  # type: ignore[union-attr]
            except Exception as exc:
                self._poll_failed(exc)
                continue
            self._poll_errors = 0
            self._unproven = False
            self.state = "following"
            self.last_heard = time.time()
            self._heard()
            batches = batch if isinstance(batch, list) else [batch] if batch is not None else []
            for one in batches:
                self._apply(one)

    def _poll_failed(self, exc: Exception) -> None:
        """Poll again after a short wait; after `max_poll_errors` failures in a row, close the
        feed and open it again: resumed at its position, else (no position, or the resumed feed
        failed before its first poll) with a fresh snapshot."""
        self._poll_errors += 1
        self._failed(exc, "retrying")
        if self._poll_errors < self.max_poll_errors:
            log.warning("change feed poll of %s failed (%d in a row): %s", self.view,
                        self._poll_errors, exc)  # fmt: skip
            self._stop.wait(self.backoff_s[0])
            return
        old = self.feed
        position = getattr(old, "position", None)
        if self._unproven or not hasattr(old, "resume"):
            position = None
        log.warning(
            "change feed of %s failed %d polls in a row (%s); reopening it %s",
            self.view,
            self._poll_errors,
            exc,
            f"at {position}" if position is not None else "from a fresh snapshot",
        )
        self._close_feed()
        self._poll_errors = 0
        self.recoveries += 1
        self.state = "reconnecting"
        self._connect(old, position)

    def _apply(self, batch: Any) -> None:
        if not (batch.inserts or batch.deletes):
            return
        try:
            self.applied += self.apply(batch)
        except Exception:
            self.errors += 1
            log.exception("could not apply a change batch of %s", batch.view)
            return
        committed = getattr(batch, "committed_at", None)
        if committed is not None:
            self.last_lag_s = max(0.0, time.time() - epoch_seconds(committed))
            self._lagged(self.last_lag_s)

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
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._close_feed()
        self.state = "stopped"


class IndexSync(ViewFollower):
    """Keeps the live index equal to the history view (a ViewFollower of it)."""

    what = "index"

    def __init__(
        self,
        index: LiveIndex,
        open_feed: Callable[[], Feed],
        snapshot: Callable[[], list[tuple[str, list[str], float]]],
        metrics: Metrics | None = None,
        *,
        max_poll_errors: int = 3,
        backoff_s: tuple[float, float] = (1.0, 30.0),
    ) -> None:
        super().__init__(HISTORY_VIEW, open_feed, snapshot, max_poll_errors=max_poll_errors,
                         backoff_s=backoff_s, name="index-sync")  # fmt: skip
        self.index = index
        self.metrics = metrics

    def load(self, rows: list[tuple[str, list[str], float]]) -> None:
        self.index.build(rows)

    def apply(self, batch: Any) -> int:
        return apply_batch(self.index, batch, self.metrics)

    def summary(self) -> str:
        return f"{self.index.n_sessions} sessions, {self.index.n_items} items"

    def _heard(self) -> None:
        if self.metrics is not None:
            self.metrics.sync_age.set(0.0)

    def _lagged(self, lag_s: float) -> None:
        if self.metrics is not None:
            self.metrics.sync_lag.set(lag_s)
