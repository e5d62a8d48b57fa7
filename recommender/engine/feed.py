"""The change feed: rows inserted into and deleted from each view at each refresh.

In process: `engine.subscribe(view)` returns a `Subscription`; `poll(timeout)` returns the
batches published since the last poll (waiting up to `timeout` seconds for the first one).
Across processes: every refresh also writes its changes to the PostgreSQL table
`flashrec_changes(view, epoch, op, row)` in the same transaction as the views, and sends
NOTIFY flashrec_changes; `PgSubscription` follows that table with the same interface.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


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
    """Follows one view's changes from another process through `flashrec_changes`.

    Starts after the newest epoch present (or after `since_epoch`); each poll waits for a
    NOTIFY up to `timeout` seconds, then reads the new epochs in order.
    """

    def __init__(self, dsn: str, view: str, since_epoch: int | None = None) -> None:
        import psycopg

        self.view = view
        self._conn = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
        self._conn.execute("LISTEN flashrec_changes")
        if since_epoch is None:
            row = self._conn.execute(
                "SELECT coalesce(max(epoch), 0) FROM flashrec_changes WHERE view = %s", (view,)
            ).fetchone()
            since_epoch = int(row[0])
        self.last_epoch = since_epoch

    def _read(self) -> list[ChangeBatch]:
        rows = self._conn.execute(
            "SELECT epoch, op, row, extract(epoch FROM committed_at) FROM flashrec_changes "
            "WHERE view = %s AND epoch > %s ORDER BY epoch, id",
            (self.view, self.last_epoch),
        ).fetchall()
        batches: dict[int, ChangeBatch] = {}
        for epoch, op, row, committed in rows:
            batch = batches.get(epoch)
            if batch is None:
                batch = batches[epoch] = ChangeBatch(
                    self.view, int(epoch), list(row.keys()), committed_at=float(committed)
                )
            (batch.inserts if op == "insert" else batch.deletes).append(list(row.values()))
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
