"""The publisher: writes each engine refresh into PostgreSQL in one transaction.

Tables written by `Publisher`:
- one per view of sql/, same name and columns as on RisingWave;
- `clickstream`: the raw events of the last `raw_retention` (event time);
- `flashrec_status`: per view epoch, last refresh time, event-time watermark, rows, duration;
- `flashrec_changes_<view>(epoch, op, committed_at, <the view's columns>)`: the change feed
  of each view in `feed_views` (default: those other processes follow), typed like the view,
  last `change_epochs` epochs kept; each refresh ends with NOTIFY flashrec_changes;
- `flashrec_changes(view, epoch, op, row jsonb, committed_at)`: a view over all of them, for
  psql (each row as JSON);
- `flashrec_meta`: the last epoch and the last raw event sequence published.
"""

from __future__ import annotations

import logging
import operator
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, BinaryIO

from recommender import catalog, sqlfiles
from recommender.changefeed import FEED_COLUMNS, FEED_PREFIX, feed_table
from recommender.events import column_types
from recommender.postgres import relation_exists, schema
from recommender.postgres.encoding import copy_rows, copy_table, csv_expr, csv_ok, naive, pg_type
from recommender.postgres.local import READER

log = logging.getLogger(__name__)

# the raw clickstream table's columns: the event's fields (recommender/events.py)
RAW_COLUMNS = column_types("postgres")


BASE_SQL = f"""
CREATE TABLE IF NOT EXISTS public.clickstream ({", ".join(f"{n} {t}" for n, t in RAW_COLUMNS)});
CREATE INDEX IF NOT EXISTS clickstream_ts ON public.clickstream (ts);
CREATE TABLE IF NOT EXISTS flashrec_status (
    view text PRIMARY KEY, epoch bigint, last_refresh_at timestamptz, watermark timestamptz,
    row_count bigint, refresh_ms double precision, inserted bigint, deleted bigint);
CREATE TABLE IF NOT EXISTS flashrec_meta (key text PRIMARY KEY, value text);
"""


# From sql/'s catalog (the .toml beside each view): the views whose changes go to a change
# feed table by default, and the columns that identify a row of each view (unique in its
# result; an index in PostgreSQL; deletes find rows by them; views without keys are
# matched on the whole row).
_CATALOG = sqlfiles.catalog()  # sql/ parsed once
DEFAULT_FEED_VIEWS = catalog.feed_views(_CATALOG)
VIEW_KEYS: dict[str, tuple[str, ...]] = catalog.view_keys(_CATALOG)


# An UPDATE of fewer rows than 1/PROBE_SHARE of its table finds each by the key index (the
# planner knows nothing of the staged rows, a temp table never analyzed, and would read the
# whole index or table). The settings are put back after the statement.
PROBE_SHARE = 8
PROBE_ON = ("SELECT set_config('enable_hashjoin', 'off', true), "
            "set_config('enable_mergejoin', 'off', true)")  # fmt: skip
PROBE_OFF = ("SELECT set_config(name, reset_val, true) FROM pg_settings "
             "WHERE name IN ('enable_hashjoin', 'enable_mergejoin')")  # fmt: skip


def view_keys(name: str, columns: list[str]) -> list[str]:
    """The view's key columns (VIEW_KEYS) it has; empty: rows are matched whole."""
    return [k for k in VIEW_KEYS.get(name, ()) if k in columns]


class Publisher:
    """Writes engine refreshes into PostgreSQL, each one in one transaction."""

    def __init__(self, dsn: str, change_epochs: int = 600,
                 feed_views: tuple[str, ...] | None = DEFAULT_FEED_VIEWS,
                 unlogged: bool = False, lock_timeout_s: float = 30.0,
                 statement_timeout_s: float = 600.0,
                 comments: dict[str, str] | None = None) -> None:  # fmt: skip
        """`feed_views`: views whose changes go to their change feed tables (None: all).
        `comments`: each view's description for psql (schema.view_comments).
        `unlogged`: the tables of views without a feed are UNLOGGED (see ensure_view).
        A statement waiting longer than `lock_timeout_s` for a lock, or running longer than
        `statement_timeout_s`, is cancelled, and its publish tried again."""
        self.dsn = dsn
        self.unlogged = unlogged
        self.change_epochs = change_epochs
        self.feed_views = None if feed_views is None else set(feed_views)
        self.timeouts = (lock_timeout_s, statement_timeout_s)
        self.comments = comments or {}
        self.stop = threading.Event()  # set: a failing publish is no longer tried again
        self.busy_since: float | None = None  # monotonic start of the publish in flight
        self.failing_since: float | None = None  # monotonic time of the first failed try
        self.last_error: str | None = None
        self.conn = self._connect()
        with self.conn.transaction():
            schema.prepare(self.conn, READER)
            self.conn.execute(BASE_SQL)
            self._changes_view()
        self._ready: set[str] = set()
        self._feeds: list[str] = []  # feed tables this publisher writes (and trims)
        self.timings: dict[str, float] = {}  # the last publish's parts (ms), for the logs

    def _connect(self) -> Any:
        import psycopg

        conn = psycopg.connect(self.dsn, connect_timeout=10)
        lock_s, statement_s = self.timeouts
        conn.execute("SET TIME ZONE 'UTC'")
        conn.execute(f"SET lock_timeout = {int(lock_s * 1000)}")
        conn.execute(f"SET statement_timeout = {int(statement_s * 1000)}")
        # each publish durable at its commit, whatever the server's default: the engine's
        # baseline is what it committed, also after PostgreSQL crashes
        conn.execute("SET synchronous_commit = on")
        conn.execute(f"SET search_path = {schema.WRITE_PATH}")  # the tables, not the views
        conn.commit()  # else each publish's transaction() is a savepoint in this one
        return conn

    def _retrying(self, what: str, write: Callable[[], None], landed: Callable[[], bool]
                  ) -> None:  # fmt: skip
        """Run `write` (one transaction); when PostgreSQL fails (connection lost, a timeout)
        connect again and try again, with a growing pause, until it succeeds or `stop` is
        set. `landed()` tells, after a reconnect, whether a commit whose answer was lost
        had gone through."""
        import psycopg

        self.busy_since = time.monotonic()
        pause = 0.5
        try:
            while True:
                try:
                    write()
                    break
                except psycopg.OperationalError as exc:
                    self.failing_since = self.failing_since or time.monotonic()
                    self.last_error = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
                    if self.stop.is_set():
                        raise
                    log.warning("%s failed (%s); trying again in %.1f s", what,
                                self.last_error, pause)  # fmt: skip
                    if self.stop.wait(pause) or not self._reconnect():
                        pause = min(pause * 2, 30.0)
                        continue
                    pause = 0.5
                    try:
                        if landed():
                            break
                    except psycopg.OperationalError:
                        continue
            if self.failing_since is not None:
                log.warning("%s went through after %.1f s of failures", what,
                            time.monotonic() - self.failing_since)  # fmt: skip
        finally:
            self.busy_since = None
        self.failing_since = self.last_error = None

    def _reconnect(self) -> bool:
        """A new connection in place of the broken one; False if PostgreSQL does not answer."""
        import psycopg

        try:
            conn = self._connect()
        except psycopg.OperationalError as exc:
            self.last_error = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
            return False
        try:
            self.conn.close()
        except psycopg.Error:
            pass
        self.conn = conn
        return True

    def meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM flashrec_meta WHERE key = %s", (key,)).fetchone()
        self.conn.commit()
        return None if row is None else row[0]

    def ensure_view(self, name: str, columns: list[str], types: list[str]) -> None:
        """Create the view's table if missing (same name and columns as the view).

        With `unlogged`, a view without a change feed gets an UNLOGGED table: PostgreSQL
        writes no WAL for it and empties it when it recovers from a crash. Its rows are derived:
        the engine reads each view table when it starts and republishes what is missing.
        A followed view stays logged, so that its table and its feed survive together. A
        table of the other kind is altered (PostgreSQL rewrites it)."""
        if name in self._ready:
            return
        cols = ", ".join(f"{c} {pg_type(t)}" for c, t in zip(columns, types, strict=True))
        unlogged = self.unlogged and not self._followed(name)
        with self.conn.transaction():
            schema.move_old_table(self.conn, name)
            self.conn.execute(f"CREATE {'UNLOGGED ' * unlogged}TABLE IF NOT EXISTS {name} ({cols})")
            kind = self.conn.execute("SELECT relpersistence FROM pg_class WHERE oid = %s::regclass",
                                     (name,)).fetchone()[0]  # fmt: skip
            if (kind == "u") != unlogged:
                log.info("%s: table altered to %s", name, "UNLOGGED" if unlogged else "LOGGED")
                self.conn.execute(f"ALTER TABLE {name} SET {'UNLOGGED' if unlogged else 'LOGGED'}")
            keys = view_keys(name, columns)
            if keys:
                self.conn.execute(
                    f"CREATE INDEX IF NOT EXISTS {name}_key ON {name} ({', '.join(keys)})"
                )
            if self._followed(name):
                self._ensure_feed(name, cols, columns)
            schema.show_view(self.conn, name, self.comments.get(name))
        self._ready.add(name)

    def _followed(self, view: str) -> bool:
        """Whether the view's changes go to its change feed table."""
        return self.feed_views is None or view in self.feed_views

    def _ensure_feed(self, name: str, cols: str, columns: list[str]) -> None:
        """The view's change feed table, and flashrec_changes over it (in the open
        transaction)."""
        clash = set(columns) & set(FEED_COLUMNS)
        if clash:
            raise ValueError(f"view {name} has column(s) {sorted(clash)}, which its change "
                             "feed table uses itself; rename them or leave it out of feed_views")
        table = feed_table(name)
        conn = self.conn
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('flashrec_changes'))")
        if not relation_exists(conn, table):
            conn.execute(f"CREATE TABLE {table} (epoch bigint NOT NULL, op text NOT NULL, "
                         f"committed_at timestamptz NOT NULL DEFAULT now(), {cols})")
            conn.execute(f"CREATE INDEX {table}_epoch ON {table} (epoch)")
            self._changes_view()
        self._feeds.append(table)

    def _changes_view(self) -> None:
        """(Re)create the view flashrec_changes over every feed table in the database (in
        the open transaction). The table of that name of versions before the typed feed
        tables is dropped (it held only the last epochs' changes)."""
        conn = self.conn
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('flashrec_changes'))")
        kind = conn.execute("SELECT relkind FROM pg_class WHERE oid = "
                            "to_regclass('flashrec_changes')").fetchone()  # fmt: skip
        if kind is not None and kind[0] == "r":
            log.info("flashrec_changes becomes a view over per-view feed tables; "
                     "the old table and its recent changes are dropped")
            conn.execute("DROP TABLE flashrec_changes")
        tables = [t for (t,) in conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'r' AND n.nspname = current_schema() "
            "AND starts_with(c.relname, %s) ORDER BY 1", (FEED_PREFIX,))]  # fmt: skip
        meta = " - ".join(f"'{c}'" for c in FEED_COLUMNS)
        parts = [f"SELECT '{t[len(FEED_PREFIX):]}'::text AS view, epoch, op, "
                 f"to_jsonb(c) - {meta} AS row, committed_at FROM {t} c" for t in tables]
        empty = ("SELECT NULL::text AS view, NULL::bigint AS epoch, NULL::text AS op, "
                 "NULL::jsonb AS row, NULL::timestamptz AS committed_at WHERE false")
        conn.execute("DROP VIEW IF EXISTS flashrec_changes")
        conn.execute("CREATE VIEW flashrec_changes AS " + (" UNION ALL ".join(parts) or empty))

    def current_rows(self, name: str) -> list[tuple[Any, ...]]:
        """What PostgreSQL holds for a view (naive UTC timestamps), to seed the engine's diff."""
        if not relation_exists(self.conn, name):
            self.conn.commit()
            return []
        rows = self.conn.execute(f"SELECT * FROM {name}").fetchall()
        self.conn.commit()
        return [tuple(naive(v) for v in r) for r in rows]

    def export_csv(self, name: str, out: BinaryIO,
                   progress: Callable[[int], None] | None = None) -> list[str] | None:  # fmt: skip
        """Write what PostgreSQL holds for a view to `out` as CSV (COPY ... TO STDOUT), for
        a bulk load of the engine's diff baseline: NULL an unquoted empty field, an empty
        string "", timestamptz as naive UTC, arrays as JSON, floats in their exact shortest
        form. Returns the columns' PostgreSQL types ([]: no such table); None where a column
        type is not one this form covers, or the connection is not UTF-8 (then nothing is
        written: read the rows with current_rows). `progress` gets the rows written so far
        every EXPORT_PROGRESS_ROWS rows."""
        conn = self.conn
        with conn.transaction():
            if not relation_exists(conn, name):
                return []
            columns = conn.execute(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE "
                "attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                (name,)).fetchall()  # fmt: skip
            exprs = [csv_expr(c, t) for c, t in columns]
            if None in exprs or not csv_ok(conn):
                return None
            # ISO dates and timestamps; floats printed exactly (the shortest exact form)
            conn.execute("SET LOCAL DateStyle = 'ISO, YMD'")
            conn.execute("SET LOCAL extra_float_digits = 3")
            sql = f"COPY (SELECT {', '.join(map(str, exprs))} FROM {name}) TO STDOUT (FORMAT csv)"
            rows = 0
            with conn.cursor().copy(sql) as cp:
                for data in cp:  # one message per row
                    out.write(data)
                    rows += 1
                    if progress is not None and rows % EXPORT_PROGRESS_ROWS == 0:
                        progress(rows)
        return [t for _, t in columns]

    def publish(
        self,
        epoch: int,
        results: list[Any],
        raw: Any,
        raw_seq: int,
        watermark: datetime | None,
        raw_keep_after: datetime | None,
        counters: dict[str, int] | None = None,
    ) -> None:
        """One refresh: view changes, change feed rows, raw events, status, in one transaction
        (tried again until it goes through: see _retrying)."""
        self._retrying(
            f"publish of epoch {epoch}",
            lambda: self._publish_once(epoch, results, raw, raw_seq, watermark, raw_keep_after,
                                       counters),
            lambda: int(self.meta("epoch") or 0) >= epoch,
        )  # fmt: skip

    def _publish_once(self, epoch: int, results: list[Any], raw: Any, raw_seq: int,
                      watermark: datetime | None, raw_keep_after: datetime | None,
                      counters: dict[str, int] | None) -> None:  # fmt: skip
        now = datetime.now(UTC)
        conn = self.conn
        for r in results:
            self.ensure_view(r.name, r.columns, r.types)
        self.timings = {}
        with conn.transaction():
            self._write_views(epoch, results, now, watermark)
            mark = time.perf_counter()
            if raw is not None and raw.num_rows:
                names = [n for n, _ in RAW_COLUMNS]
                copy_table(conn, "clickstream", names, raw.select(names))
            if raw_keep_after is not None:
                conn.execute("DELETE FROM clickstream WHERE ts <= %s", (raw_keep_after,))
            mark = self._timed("clickstream", mark)
            for table in self._feeds:
                conn.execute(f"DELETE FROM {table} WHERE epoch <= %s",
                             (epoch - self.change_epochs,))  # fmt: skip
            meta = {"epoch": epoch, "raw_seq": raw_seq, **(counters or {})}
            for key, value in meta.items():
                conn.execute(
                    "INSERT INTO flashrec_meta VALUES (%s, %s) ON CONFLICT (key) "
                    "DO UPDATE SET value = EXCLUDED.value",
                    (key, str(value)),
                )
            conn.execute("SELECT pg_notify('flashrec_changes', %s)", (str(epoch),))
            mark = self._timed("meta", mark)
        self._timed("commit", mark)

    def _timed(self, part: str, since: float) -> float:
        """Record the time from `since` as `part` of this publish; returns the time now."""
        now = time.perf_counter()
        self.timings[part] = (now - since) * 1000
        return now

    def publish_views(self, results: list[Any], watermark: datetime | None,
                      epoch: int) -> None:
        """Only view changes and their status rows, in one transaction (background tier),
        tried again until it goes through (see _retrying)."""
        key, token = "published:" + ",".join(r.name for r in results), uuid.uuid4().hex

        def write() -> None:
            for r in results:
                self.ensure_view(r.name, r.columns, r.types)
            with self.conn.transaction():
                self._write_views(epoch, results, datetime.now(UTC), watermark)
                self.conn.execute("INSERT INTO flashrec_meta VALUES (%s, %s) ON CONFLICT (key) "
                                  "DO UPDATE SET value = EXCLUDED.value", (key, token))

        self._retrying(f"publish of {key[10:]}", write, lambda: self.meta(key) == token)

    def _write_views(self, epoch: int, results: list[Any], now: datetime,
                     watermark: datetime | None) -> None:
        for r in results:
            mark = time.perf_counter()
            initial = getattr(r, "initial", False)
            feed = epoch if self._followed(r.name) and not initial else None
            inserts, deletes = r.inserts, r.deletes
            if len(inserts) and len(deletes):
                inserts, deletes = self._update(r.name, r.columns, inserts, deletes, feed,
                                                r.row_count)  # fmt: skip
            if deletes:
                self._delete(r.name, r.columns, r.types, deletes, feed)
            if inserts:
                self._insert(r.name, r.columns, inserts, feed)
            self._status(r, epoch, now, watermark)
            self._timed(r.name, mark)

    def _update(self, name: str, columns: list[str], inserts: Sequence[tuple[Any, ...]],
                deletes: Sequence[tuple[Any, ...]], feed: int | None = None,
                table_rows: int = 0) -> tuple[Sequence[Any], Sequence[Any]]:  # fmt: skip
        """Rows of a keyed view deleted and inserted again under the same key become one
        UPDATE (no new index entry where PostgreSQL can update in place: co_view_pairs'
        counts moving with the window, a session's aggregates after its next click). With
        `feed` (an epoch) the UPDATE also writes the row it replaced and the new one to the
        change feed, which needs PostgreSQL 18's RETURNING old.*; before 18 such views
        keep the delete and insert. Rows come as tuples or both as Arrow.
        `table_rows`: about how many rows the table holds (the plan: probe its key index
        for each row when they are few of them). Returns the inserts and deletes left to
        do."""
        keys = view_keys(name, columns)
        rest = [c for c in columns if c not in keys]
        if not keys or not rest or (feed is not None and not self._returns_old()):
            return inserts, deletes
        split = _split_arrow if hasattr(inserts, "table") else _split_tuples
        if hasattr(inserts, "table") != hasattr(deletes, "table"):
            return inserts, deletes
        updates, inserts, deletes = split([columns.index(k) for k in keys], inserts, deletes)
        if not len(updates):
            return inserts, deletes
        staged = _stage(self.conn, "_upd", name, columns, updates)
        on = " AND ".join(f"v.{k} = s.{k}" for k in keys)
        update = (f"UPDATE {name} v SET {', '.join(f'{c} = s.{c}' for c in rest)} "
                  f"FROM {staged} s WHERE {on}")  # fmt: skip
        probe = len(updates) * PROBE_SHARE < table_rows
        if probe:  # few rows of a large table: by its key index, not a scan of all of it
            self.conn.execute(PROBE_ON)
        if feed is None:
            done = self.conn.execute(update).rowcount
        else:
            cols = ", ".join(columns)
            olds, news = (", ".join(f"{p}_{c}" for c in columns) for p in ("o", "n"))
            returned = ", ".join([f"old.{c} AS o_{c}" for c in columns]
                                 + [f"new.{c} AS n_{c}" for c in columns])  # fmt: skip
            done = self.conn.execute(
                f"WITH changed AS ({update} RETURNING {returned}), fed AS (INSERT INTO "
                f"{feed_table(name)} (epoch, op, {cols}) SELECT %s, 'delete', {olds} FROM "
                f"changed UNION ALL SELECT %s, 'insert', {news} FROM changed) "
                "SELECT count(*) FROM changed", (feed, feed)).fetchone()[0]  # fmt: skip
        if probe:
            self.conn.execute(PROBE_OFF)
        if done != len(updates):  # PostgreSQL lacked some: insert them, lose nothing
            log.warning("%s: %d of %d updated rows were missing in PostgreSQL; inserted",
                        name, len(updates) - done, len(updates))  # fmt: skip
            cols = ", ".join(columns)
            lacks = " AND ".join(f"w.{k} = s.{k}" for k in keys)
            insert = (f"INSERT INTO {name} AS v ({cols}) SELECT {cols} FROM {staged} s "
                      f"WHERE NOT EXISTS (SELECT 1 FROM {name} w WHERE {lacks})")  # fmt: skip
            if feed is None:
                self.conn.execute(insert)
            else:
                self.conn.execute(_fed(insert, name, columns), (feed, "insert"))
        return inserts, deletes

    def _returns_old(self) -> bool:
        """Whether the server's UPDATE ... RETURNING can give the old row (PostgreSQL 18)."""
        return self.conn.info.server_version >= 180000

    def _insert(self, name: str, columns: list[str], rows: Sequence[tuple[Any, ...]],
                feed: int | None) -> None:
        """Insert `rows` into view table `name`; with `feed` (an epoch) also their change
        feed rows, each the JSON PostgreSQL makes of the stored row (to_jsonb)."""
        conn = self.conn
        if feed is None:
            copy_rows(conn, name, columns, rows)
            return
        staged = _stage(conn, "_ins", name, columns, rows)
        cols = ", ".join(columns)
        conn.execute(_fed(f"INSERT INTO {name} AS v ({cols}) SELECT {cols} FROM {staged}",
                          name, columns), (feed, "insert"))  # fmt: skip

    def _status(self, r: Any, epoch: int, now: datetime, watermark: datetime | None) -> None:
        """The view's flashrec_status row after a refresh."""
        self.conn.execute(
            "INSERT INTO flashrec_status VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (view) DO UPDATE SET epoch = EXCLUDED.epoch, "
            "last_refresh_at = EXCLUDED.last_refresh_at, watermark = EXCLUDED.watermark,"
            " row_count = EXCLUDED.row_count, refresh_ms = EXCLUDED.refresh_ms, "
            "inserted = EXCLUDED.inserted, deleted = EXCLUDED.deleted",
            (r.name, epoch, now, watermark, r.row_count, r.refresh_ms,
             len(r.inserts), len(r.deletes)),
        )  # fmt: skip

    def _delete(self, name: str, columns: list[str], types: list[str],
                rows: Sequence[tuple[Any, ...]], feed: int | None = None) -> None:
        """Delete `rows` from view table `name`: by its key columns where it has them (sent
        as arrays, or by COPY of the keys when the rows come as an Arrow table), else by
        whole-row match. With `feed` (an epoch), the deleted rows also go to the change feed
        (RETURNING, as PostgreSQL held them)."""
        conn = self.conn
        keys = view_keys(name, columns)
        params: list[Any] = []
        if keys:
            at = [columns.index(k) for k in keys]
            on = " AND ".join(f"v.{k} = d.{k}" for k in keys)
            given = getattr(rows, "table", None)
            if given is not None and csv_ok(conn):
                defs = ", ".join(f"{k} {pg_type(types[i])}" for k, i in zip(keys, at, strict=True))
                conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS _delkeys_{name} ({defs}) "
                             "ON COMMIT DELETE ROWS")  # fmt: skip
                copy_table(conn, f"_delkeys_{name}", keys, given.select(at))
                sql = f"DELETE FROM {name} v USING _delkeys_{name} d WHERE {on}"
            else:
                params = [[row[i] for row in rows] for i in at]
                unnest = ", ".join(f"%s::{pg_type(types[i])}[]" for i in at)
                sql = (f"DELETE FROM {name} v USING unnest({unnest}) AS d({', '.join(keys)}) "
                       f"WHERE {on}")  # fmt: skip
        else:
            staged = _stage(conn, "_del", name, columns, rows)
            sql = f"DELETE FROM {name} v USING {staged} d WHERE md5(v::text) = md5(d::text)"
        if feed is None:
            conn.execute(sql, params)
        else:
            conn.execute(_fed(sql, name, columns), [*params, feed, "delete"])

    def close(self) -> None:
        self.conn.close()


def _split_tuples(at: list[int], inserts: Sequence[tuple[Any, ...]],
                  deletes: Sequence[tuple[Any, ...]]) -> tuple[list[Any], Sequence[Any],
                                                                Sequence[Any]]:  # fmt: skip
    """(rows inserted under a key also deleted, the other inserts, the other deletes)."""
    key = operator.itemgetter(*at)  # a row's key, in C
    gone = {key(row) for row in deletes}
    updates = [row for row in inserts if key(row) in gone]
    if not updates:
        return [], inserts, deletes
    again = {key(row) for row in updates}
    return (updates, [row for row in inserts if key(row) not in gone],
            [row for row in deletes if key(row) not in again])


def _split_arrow(at: list[int], inserts: Any, deletes: Any) -> tuple[Any, Any, Any]:
    """_split_tuples for rows given as Arrow (ArrowRows); NULL keys match nothing, as in
    SQL (is_in's skip_nulls: a NULL is never found)."""
    import pyarrow.compute as pc

    ins, dels = inserts.table, deletes.table
    ins_key, del_key = _arrow_key(ins, at), _arrow_key(dels, at)
    hit = pc.is_in(ins_key, value_set=del_key, skip_nulls=True)
    if not pc.any(hit).as_py():
        return [], inserts, deletes
    updates = ins.filter(hit)
    kept = pc.invert(pc.is_in(del_key, value_set=ins_key.filter(hit), skip_nulls=True))
    return (type(inserts)(updates, inserts.types), type(inserts)(ins.filter(pc.invert(hit)),
            inserts.types), type(deletes)(dels.filter(kept), deletes.types))  # fmt: skip


def _arrow_key(table: Any, at: list[int]) -> Any:
    """One array naming each row's key: its key column, or several joined as text, each
    part behind its length (so that no two keys join alike); NULL if a part is NULL."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if len(at) == 1:
        return table.column(at[0]).combine_chunks()
    parts = []
    for i in at:
        text = pc.cast(table.column(i), pa.string())
        parts += [pc.cast(pc.utf8_length(text), pa.string()), text]
    return pc.binary_join_element_wise(*parts, ":").combine_chunks()


def _stage(conn: Any, prefix: str, name: str, columns: list[str],
           rows: Sequence[tuple[Any, ...]]) -> str:  # fmt: skip
    """`rows` COPYed into a temp table shaped like view table `name` (emptied at commit);
    returns its name."""
    staged = f"{prefix}_{name}"
    conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {staged} (LIKE {name}) ON COMMIT DELETE ROWS")
    copy_rows(conn, staged, columns, rows)
    return staged


def _fed(statement: str, view: str, columns: list[str]) -> str:
    """`statement` (an INSERT or DELETE on view table `view` aliased v) that also writes the
    rows it changed, as PostgreSQL holds them, to the view's change feed table; its
    parameters end with (epoch, op)."""
    cols = ", ".join(columns)
    return (f"WITH changed AS ({statement} RETURNING v.*) INSERT INTO {feed_table(view)} "
            f"(epoch, op, {cols}) SELECT %s, %s, {cols} FROM changed")


EXPORT_PROGRESS_ROWS = 100_000

