"""Index upkeep: a view table's index that has grown well past its lean size is rebuilt.

A B-tree gives back a page only when every entry on it is gone. Keys that leave a view and
others that arrive elsewhere in the key order (new customers between old ones who return
now and then) leave pages holding a few live entries each, so an index can grow for as long
as the server runs while its table stays the same size. REINDEX CONCURRENTLY builds a lean
copy beside the old one; the publishers and the readers go on meanwhile.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from recommender.postgres.local import local_backend
from recommender.postgres.schema import DATA_SCHEMA
from recommender.processes import lower_priority

log = logging.getLogger(__name__)

GROWTH = 2.0  # rebuilt when its bytes per row reach this many times those of its last build
SMALLEST = 4 << 20  # indexes below this size (bytes) are left alone


@dataclass(frozen=True)
class IndexSize:
    table: str
    index: str
    size: int  # bytes
    rows: int  # live rows of its table (PostgreSQL's statistics)


def index_sizes(conn: Any) -> list[IndexSize]:
    """Every valid index of the tables in the data schema, its size and its table's rows."""
    rows = conn.execute(
        "SELECT t.relname, i.relname, pg_relation_size(i.oid), "
        "greatest(coalesce(s.n_live_tup, 0), 0) FROM pg_index x "
        "JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid "
        "JOIN pg_namespace n ON n.oid = t.relnamespace "
        "LEFT JOIN pg_stat_user_tables s ON s.relid = t.oid "
        "WHERE n.nspname = %s AND x.indisvalid ORDER BY 1, 2",
        (DATA_SCHEMA,)).fetchall()  # fmt: skip
    return [IndexSize(*row) for row in rows]


def drop_leftovers(conn: Any) -> list[str]:
    """Drop the invalid indexes an interrupted REINDEX CONCURRENTLY leaves behind
    (`<index>_ccnew`, `<index>_ccold`); returns their names."""
    names = [name for (name,) in conn.execute(
        "SELECT i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
        "JOIN pg_namespace n ON n.oid = i.relnamespace WHERE n.nspname = %s "
        "AND NOT x.indisvalid AND i.relname ~ '_cc(new|old)[0-9]*$'", (DATA_SCHEMA,))]  # fmt: skip
    for name in names:
        conn.execute(f'DROP INDEX CONCURRENTLY IF EXISTS {DATA_SCHEMA}."{name}"')
        log.info("dropped %s, left by an interrupted index rebuild", name)
    return names


class IndexUpkeep:
    """Checks the data schema's indexes and rebuilds those grown to GROWTH times the bytes
    per row of their last rebuild (one not rebuilt since this process started: when it has
    reached SMALLEST, which also measures its lean size)."""

    def __init__(self, dsn: str, growth: float = GROWTH, smallest: int = SMALLEST) -> None:
        self.dsn = dsn
        self.growth = growth
        self.smallest = smallest
        self.lean: dict[str, float] = {}  # index -> bytes per row right after its rebuild
        self.rebuilt = 0
        self.checks = 0

    def due(self, s: IndexSize) -> bool:
        """Whether index `s` is to be rebuilt now."""
        if s.size < self.smallest:
            return False
        lean = self.lean.get(s.index)
        return lean is None or s.size > self.growth * lean * max(s.rows, 1)

    def check(self, conn: Any | None = None) -> list[str]:
        """One round: the indexes rebuilt (REINDEX CONCURRENTLY, on an autocommit session of
        its own unless `conn`, which must be in autocommit, is given)."""
        import psycopg

        own = conn is None
        if conn is None:
            conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=10)
        try:
            drop_leftovers(conn)
            done = []
            for s in index_sizes(conn):
                if self.due(s):
                    self._rebuild(conn, s)
                    done.append(s.index)
            self.checks += 1
            return done
        finally:
            if own:
                conn.close()

    def _rebuild(self, conn: Any, s: IndexSize) -> None:
        conn.execute(f'REINDEX INDEX CONCURRENTLY {DATA_SCHEMA}."{s.index}"')
        size = conn.execute("SELECT pg_relation_size(%s::regclass)",
                            (f'{DATA_SCHEMA}."{s.index}"',)).fetchone()[0]  # fmt: skip
        self.lean[s.index] = size / max(s.rows, 1)
        self.rebuilt += 1
        log.info("index %s of %s rebuilt: %.1f MB -> %.1f MB (%d rows)", s.index, s.table,
                 s.size / 2**20, size / 2**20, s.rows)  # fmt: skip


class UpkeepThread:
    """Runs IndexUpkeep.check every `interval` seconds in a thread; a failed round is logged
    and tried again at the next."""

    def __init__(self, upkeep: IndexUpkeep, interval: float, nice: int = 0) -> None:
        self.upkeep = upkeep
        self.interval = interval
        self.nice = nice
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> UpkeepThread:
        self._thread = threading.Thread(target=self._run, name="index-upkeep", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        import psycopg

        if self.nice:
            lower_priority(threading.get_native_id(), self.nice, "the index upkeep thread")
        conn = None
        try:
            while not self._stop.wait(self.interval):
                try:
                    if conn is None:  # one session, opened again after a failure
                        conn = psycopg.connect(self.upkeep.dsn, autocommit=True,
                                               connect_timeout=10)  # fmt: skip
                        if self.nice:
                            lower_priority(local_backend(conn), self.nice,
                                           "its PostgreSQL backend")  # fmt: skip
                    self.upkeep.check(conn)
                    self.last_error = None
                except psycopg.Error as exc:
                    self.last_error = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
                    log.warning("index upkeep failed (%s); trying again in %.0f s",
                                self.last_error, self.interval)  # fmt: skip
                    if conn is not None:
                        conn.close()
                    conn = None
        finally:
            if conn is not None:
                conn.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
