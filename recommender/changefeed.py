"""The change feed, the contract between the engine that writes it and the processes that
follow it (serving, intent scoring): the rows inserted into and deleted from each view at
each refresh.

In process: `engine.subscribe(view)` returns a `Subscription`; `poll(timeout)` returns the
batches published since the last poll (waiting up to `timeout` seconds for the first one).
Across processes: every refresh also writes a followed view's changes to its PostgreSQL
table `flashrec_changes_<view>(epoch, op, committed_at, <view columns>)` in the same
transaction as the views, and sends NOTIFY flashrec_changes; `PgSubscription` follows that
table with the same interface.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

# A followed view's change feed table: the feed's own columns, then the view's.
FEED_PREFIX = "flashrec_changes_"
FEED_COLUMNS = ("epoch", "op", "committed_at")


def feed_table(view: str) -> str:
    """The table of a view's change feed in PostgreSQL."""
    return FEED_PREFIX + view


@dataclass
class ChangeBatch:
    """The changes of one view at one refresh (epoch)."""

    view: str
    epoch: int
    columns: list[str]
    inserts: list[Sequence[Any]] = field(default_factory=list)
    deletes: list[Sequence[Any]] = field(default_factory=list)
    committed_at: float | None = None  # epoch seconds the refresh was committed


class Subscription:
    """An in-process queue of a view's change batches."""

    def __init__(self, hub: FeedHub, view: str, max_batches: int = 10_000) -> None:
        self.view = view
        self._hub = hub
        self._queue: queue.Queue[ChangeBatch] = queue.Queue(max_batches)
        self.dropped = 0

    def _put(self, batch: ChangeBatch) -> None:
        try:
            self._queue.put_nowait(batch)
        except queue.Full:  # a reader that stopped reading must not stall the engine
            self.dropped += 1

    def poll(self, timeout: float = 1.0) -> list[ChangeBatch]:
        """The batches published since the last poll; waits up to `timeout` for one."""
        try:
            out = [self._queue.get(timeout=timeout)]
        except queue.Empty:
            return []
        while True:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> None:
        self._hub.unsubscribe(self)


class FeedHub:
    """Fan-out of change batches to in-process subscriptions."""

    def __init__(self) -> None:
        self._subs: dict[str, list[Subscription]] = {}
        self._lock = threading.Lock()

    def subscribe(self, view: str) -> Subscription:
        sub = Subscription(self, view)
        with self._lock:
            self._subs.setdefault(view, []).append(sub)
        return sub

    def publish_refresh(self, results: Sequence[Any], epoch: int) -> list[ChangeBatch]:
        """The change batches of one committed refresh (ViewResults); those with changes go
        to the subscribers."""
        committed = time.time()
        batches = []
        for r in results:
            batch = ChangeBatch(r.name, epoch, r.columns, r.inserts, r.deletes, committed)
            batches.append(batch)
            if r.inserts or r.deletes:
                self.publish(batch)
        return batches

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs.get(sub.view, []):
                self._subs[sub.view].remove(sub)

    def publish(self, batch: ChangeBatch) -> None:
        with self._lock:
            subs = list(self._subs.get(batch.view, []))
        for sub in subs:
            sub._put(batch)


class PgSubscription:
    """Follows one view's changes from another process through its PostgreSQL change feed
    table (`flashrec_changes_<view>`; rows come typed as PostgreSQL holds them).

    Starts after the newest epoch present (or after `since_epoch`; 0 while the engine has
    not created the table yet); each poll waits for a NOTIFY up to `timeout` seconds, then
    reads the new epochs in order.
    """

    def __init__(self, dsn: str, view: str, since_epoch: int | None = None) -> None:
        import psycopg

        self.view = view
        self.table = feed_table(view)
        self._found = False  # the feed table exists (the engine never drops it)
        self._conn = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
        self._conn.execute("LISTEN flashrec_changes")
        if since_epoch is None:
            since_epoch = 0
            if self._exists():
                row = self._conn.execute(f"SELECT max(epoch) FROM {self.table}").fetchone()
                since_epoch = int(row[0] or 0)
        self.last_epoch = since_epoch

    def _exists(self) -> bool:
        if not self._found:
            row = self._conn.execute("SELECT to_regclass(%s)", (self.table,)).fetchone()
            self._found = row[0] is not None
        return self._found

    def _read(self) -> list[ChangeBatch]:
        if not self._exists():
            return []
        cur = self._conn.execute(f"SELECT * FROM {self.table} WHERE epoch > %s ORDER BY epoch",
                                 (self.last_epoch,))  # fmt: skip
        names = [d.name for d in cur.description]
        e, o, c = (names.index(n) for n in FEED_COLUMNS)
        keep = [i for i, n in enumerate(names) if n not in FEED_COLUMNS]
        columns = [names[i] for i in keep]
        batches: dict[int, ChangeBatch] = {}
        for row in cur.fetchall():
            epoch = int(row[e])
            batch = batches.get(epoch)
            if batch is None:
                batch = batches[epoch] = ChangeBatch(
                    self.view, epoch, columns, committed_at=row[c].timestamp()
                )
            values = [row[i] for i in keep]
            (batch.inserts if row[o] == "insert" else batch.deletes).append(values)
        if batches:
            self.last_epoch = max(batches)
        return [batches[e] for e in sorted(batches)]

    def poll(self, timeout: float = 1.0) -> list[ChangeBatch]:
        found = self._read()
        if found:
            return found
        deadline = time.monotonic() + timeout
        for _ in self._conn.notifies(timeout=max(0.0, deadline - time.monotonic()), stop_after=1):
            break
        return self._read()

    def close(self) -> None:
        self._conn.close()
