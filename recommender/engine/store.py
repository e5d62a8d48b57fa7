"""The engine's durable state: accepted events and the Kafka offsets applied, in one DuckDB file.

Each consumed batch is applied in one DuckDB transaction: its new events (duplicates of an
event_id already stored are refused) and, per partition, the next offset to read. After a
crash the engine resumes from these offsets, so no event is lost or counted twice. The table
`flashrec_events` keeps an ingest sequence number; the view `clickstream` shows the event
columns the SQL of sql/ reads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recommender.engine.event_ids import EventIdIndex
from recommender.events import COLUMNS, column_types, schema

# the event's fields (recommender/events.py) as flashrec_events' columns after `seq`
_TYPES = column_types("duckdb")
_STRINGS = tuple(name for name, kind in _TYPES if kind == "VARCHAR")
_REQUIRED = frozenset(schema()["required"])
_ARROW = {"VARCHAR": pa.string(), "DOUBLE": pa.float64()}

SCHEMA_SQL = f"""
CREATE TABLE IF NOT EXISTS flashrec_events (
    seq BIGINT, {", ".join(f"{name} {kind}" for name, kind in _TYPES)});
CREATE TABLE IF NOT EXISTS flashrec_offsets (
    topic VARCHAR, part INTEGER, next_offset BIGINT, PRIMARY KEY (topic, part));
CREATE TABLE IF NOT EXISTS flashrec_meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE OR REPLACE VIEW clickstream AS SELECT {", ".join(COLUMNS)} FROM flashrec_events;
"""


def parse_naive(ts: str) -> datetime:
    """The contract's 'YYYY-MM-DDTHH:MM:SS[.f]Z' as a naive UTC datetime."""
    return datetime.fromisoformat(ts[:-1])


def events_table(events: list[dict[str, Any]], first_seq: int) -> pa.Table:
    """Validated event dicts as an Arrow table of flashrec_events' columns (times as naive
    UTC microseconds; an optional field left out is NULL)."""
    cols: dict[str, Any] = {"seq": pa.array(np.arange(first_seq, first_seq + len(events)))}
    for name, kind in _TYPES:
        if kind == "TIMESTAMP":
            ts = np.array([e[name][:-1] for e in events], dtype="datetime64[us]")
            cols[name] = pa.array(ts, pa.timestamp("us"))
        elif name in _REQUIRED:
            cols[name] = pa.array([e[name] for e in events], _ARROW[kind])
        else:
            cols[name] = pa.array([e.get(name) for e in events], _ARROW[kind])
    return pa.table(cols)


class StateStore:
    """A DuckDB database (file, or memory when path is None) with events, offsets and meta."""

    def __init__(self, path: Path | None = None, threads: int | None = None) -> None:
        self.path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self.con = duckdb.connect(str(path) if path else ":memory:")
        if threads:
            self.con.execute(f"SET threads = {int(threads)}")
        self.con.execute(SCHEMA_SQL)
        self.lock = threading.RLock()
        row = self.con.execute("SELECT coalesce(max(seq), 0) FROM flashrec_events").fetchall()[0]
        self.last_seq = int(row[0])
        if self.last_seq == 0:
            self.last_seq = int(self.meta("last_seq") or 0)
        # read by other threads without touching the connection
        self._counters = {k: int(self.meta(k) or 0) for k in ("accepted", "rejected", "duplicates")}
        max_ts = self.meta("max_ts")
        self._max_ts = None if max_ts is None else datetime.fromisoformat(max_ts)
        self.ids = EventIdIndex()  # hashes of the stored event_ids (duplicate checks)
        self.ids.rebuild(self.con)

    # meta ------------------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        rows = self.con.execute("SELECT value FROM flashrec_meta WHERE key = ?", [key]).fetchall()
        return rows[0][0] if rows else None

    def _set_meta(self, values: dict[str, str]) -> None:
        """Write meta keys in one statement."""
        self._upsert("flashrec_meta", list(values.items()))

    def _upsert(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        """INSERT OR REPLACE `rows` into `table` in one statement."""
        if not rows:
            return
        marks = ", ".join(["(" + ", ".join("?" * len(rows[0])) + ")"] * len(rows))
        self.con.execute(f"INSERT OR REPLACE INTO {table} VALUES {marks}",
                         [x for row in rows for x in row])  # fmt: skip

    def max_event_time(self) -> datetime | None:
        """The newest event time stored (naive UTC)."""
        return self._max_ts

    def offsets(self) -> dict[tuple[str, int], int]:
        rows = self.con.execute("SELECT topic, part, next_offset FROM flashrec_offsets")
        return {(t, p): o for t, p, o in rows.fetchall()}

    def topic_id(self, topic: str) -> str | None:
        """The broker's id of the topic the stored offsets of `topic` belong to."""
        return self.meta(f"topic_id:{topic}")

    def follow_topic(self, topic: str, topic_id: str | None, restart: bool) -> None:
        """Record that the offsets of `topic` belong to the topic with this id; `restart`:
        forget its stored offsets first (reading starts at the beginning of its log)."""
        with self.lock:
            self.con.execute("BEGIN TRANSACTION")
            try:
                if restart:
                    self.con.execute("DELETE FROM flashrec_offsets WHERE topic = ?", [topic])
                if topic_id is not None:
                    self._set_meta({f"topic_id:{topic}": topic_id})
                self.con.execute("COMMIT")
            except BaseException:
                self.con.execute("ROLLBACK")
                raise

    # applying a batch --------------------------------------------------------------------
    def counters(self) -> dict[str, int]:
        """Messages accepted, rejected (dead-lettered) and duplicates refused, all time."""
        return dict(self._counters)

    def apply(
        self,
        events: list[dict[str, Any]],
        offsets: dict[tuple[str, int], int],
        rejected: int = 0,
        before_commit: Callable[[list[str]], None] | None = None,
        duplicates: int = 0,
    ) -> list[str]:
        """Store `events` and the offsets in one transaction; returns refused duplicate ids.

        Duplicates inside `events` must already be removed (first one kept). `rejected`
        counts the batch's dead-lettered messages, `duplicates` those of them that repeated
        an event_id of the same batch; `before_commit(duplicate_ids)` runs inside the
        transaction (the dead-letter records are flushed before the offsets are committed).
        """
        with self.lock:
            con = self.con
            con.execute("BEGIN TRANSACTION")
            try:
                dups: list[str] = []
                meta: dict[str, str] = {}
                hashes = np.empty(0, np.uint64)
                if events:
                    batch = events_table(events, self.last_seq + 1)
                    con.register("incoming", batch)
                    hashes = con.execute(
                        "SELECT hash(event_id) AS h FROM incoming").fetchnumpy()["h"]  # fmt: skip
                    maybe = np.flatnonzero(self.ids.maybe_present(hashes))
                    if len(maybe):  # confirm by id: a hash match alone refuses nothing
                        ids = [events[i]["event_id"] for i in maybe.tolist()]
                        dups = [r[0] for r in con.execute(
                            "SELECT DISTINCT event_id FROM flashrec_events "
                            "WHERE event_id IN (SELECT unnest(?))", [ids]).fetchall()]  # fmt: skip
                    if dups:
                        con.execute("INSERT INTO flashrec_events SELECT * FROM incoming "
                                    "WHERE event_id NOT IN (SELECT unnest(?))", [dups])  # fmt: skip
                    else:
                        con.execute("INSERT INTO flashrec_events SELECT * FROM incoming")
                    refused = set(dups)
                    ts = batch["ts"]
                    if refused:
                        keep = [e["event_id"] not in refused for e in events]
                        ts = ts.filter(pa.array(keep))
                    newest = pc.max(ts).as_py()
                    con.unregister("incoming")
                    self.last_seq += len(events)
                    meta["last_seq"] = str(self.last_seq)
                    known = self._max_ts
                    if newest is not None and (known is None or newest > known):
                        meta["max_ts"] = newest.isoformat()
                        new_max = newest
                    else:
                        new_max = known
                counts = dict(self._counters)
                counts["accepted"] += len(events) - len(dups)
                counts["duplicates"] += len(dups) + duplicates
                counts["rejected"] += rejected + len(dups)
                meta.update((key, str(value)) for key, value in counts.items())
                self._set_meta(meta)
                if before_commit is not None:
                    before_commit(dups)
                self._upsert("flashrec_offsets",
                             [(topic, part, nxt) for (topic, part), nxt in offsets.items()])
                con.execute("COMMIT")
                self.ids.add(hashes)
                self._counters = counts
                if events:
                    self._max_ts = new_max
            except BaseException:
                con.execute("ROLLBACK")
                raise
            return dups

    def drop_nul_events(self) -> list[dict[str, Any]]:
        """Remove events holding a NUL in a text field (stored before the contract refused
        them: PostgreSQL cannot hold them) and return them; checked once per state file."""
        if self.meta("nul_checked"):
            return []
        with self.lock:
            where = " OR ".join(f"contains({c}, chr(0))" for c in _STRINGS)
            found = self.con.execute(f"SELECT * FROM flashrec_events WHERE {where}")
            names = [d[0] for d in found.description]
            rows = [dict(zip(names, row, strict=True)) for row in found.fetchall()]
            if rows:
                gone = self.con.execute(f"DELETE FROM flashrec_events WHERE {where} "
                                        "RETURNING hash(event_id) AS h").fetchnumpy()["h"]
                self.ids.remove(gone)
            self._set_meta({"nul_checked": "1"})
        return rows

    def prune(self, before: datetime) -> int:
        """Forget events older than `before` (outside every view's horizon)."""
        with self.lock:
            gone = self.con.execute("DELETE FROM flashrec_events WHERE ts < ? "
                                    "RETURNING hash(event_id) AS h", [before]).fetchnumpy()["h"]
            self.ids.remove(gone)  # the index holds what the store holds
            return len(gone)

    def events_since(self, seq: int, limit: int | None = None) -> pa.Table:
        """Events with an ingest sequence number above `seq`, in order."""
        sql = f"SELECT * FROM flashrec_events WHERE seq > {int(seq)} ORDER BY seq"
        if limit:
            sql += f" LIMIT {int(limit)}"
        with self.lock:
            return self.con.sql(sql).to_arrow_table()

    def count(self) -> int:
        """Events stored (takes the lock: waits for a running batch or refresh)."""
        with self.lock:
            return int(self.con.execute("SELECT count(*) FROM flashrec_events").fetchall()[0][0])

    def close(self) -> None:
        with self.lock:
            self.con.close()


def newest_seq(con: duckdb.DuckDBPyConnection, since: int = 0) -> int:
    """The newest stored event's seq; only row groups with seqs above `since` (a seq read
    before) are scanned."""
    return int(con.execute("SELECT coalesce(max(seq), ?) FROM flashrec_events WHERE seq > ?",
                           [since, since]).fetchall()[0][0])  # fmt: skip


@contextmanager
def registered(con: duckdb.DuckDBPyConnection, name: str, table: Any) -> Iterator[None]:
    """An Arrow table readable by name in `con`'s queries inside the block."""
    con.register(name, table)
    try:
        yield
    finally:
        con.unregister(name)


def dedupe(events: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(first occurrence of each event_id, later repeats) in input order."""
    seen: set[str] = set()
    keep, repeats = [], []
    for e in events:
        (repeats if e["event_id"] in seen else keep).append(e)
        seen.add(e["event_id"])
    return keep, repeats
