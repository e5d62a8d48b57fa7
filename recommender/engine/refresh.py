"""Recompute the views of sql/ on DuckDB at a given clock and diff them with the last refresh.

Views are computed in file order into temporary tables named like the views, so a view that
reads another (trending_by_category reads session_features) sees this refresh's result. The
diff against the previous result (`EXCEPT ALL` both ways) is the change feed; `commit()` makes
the new results the baseline once they are published.

After the first refresh, a view whose catalog entry (sql/*.toml, recommender/catalog.py) has a
`partition` column is recomputed for the values of that column touched since the last one (new
events, or events leaving a temporal filter's window), not for all of them; a view marked
`window_partitioned` for the TUMBLE windows touched (windows of new events, windows leaving
the horizon, windows holding events of sessions whose bot flag changed). The view marked
`bot_source` is the one whose is_bot flags keep bots out of the others.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, overload

import duckdb

from recommender import catalog, sqlfiles
from recommender.engine.maintainers import Compute, Maintainer, as_maintainer
from recommender.engine.store import newest_seq, registered

log = logging.getLogger(__name__)

LO_MARKER, HI_MARKER = "__FLASHREC_LO__", "__FLASHREC_HI__"

# A view computed by code instead of SQL: a Maintainer, or a function (connection, clock) ->
# SQL of a relation to store, which computes it in every refresh.
Override = Maintainer | Compute


@dataclass
class ViewResult:
    """One view after one refresh."""

    name: str
    columns: list[str]
    types: list[str]
    # lists, or ArrowRows (partial refreshes of flat views)
    inserts: Sequence[tuple[Any, ...]] = field(default_factory=list)
    deletes: Sequence[tuple[Any, ...]] = field(default_factory=list)
    row_count: int = 0
    refresh_ms: float = 0.0
    initial: bool = False  # first load of the view into an empty baseline


class ViewRunner:
    """The views of sql/ over the `clickstream` relation of a DuckDB connection."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        objects: list[sqlfiles.SqlObject] | None = None,
        overrides: dict[str, Override] | None = None,
    ) -> None:
        self.con = con
        self.views = sqlfiles.views(objects)
        self.sql = {v.name: sqlfiles.to_duckdb(sqlfiles.view_query(v)) for v in self.views}
        self.overrides = {n: as_maintainer(o) for n, o in (overrides or {}).items()}
        meta = sqlfiles.catalog(self.views)
        self.bot_view = catalog.bot_view(meta)  # None: no view flags bots
        bot_override = self.overrides.get(self.bot_view or "")
        first_click = bot_override.first_clicks() if bot_override is not None else None
        if first_click is not None:  # the session views' clicks, for trending's flips
            for override in self.overrides.values():
                override.read_first_clicks(first_click)
        self.has_prev: set[str] = set()
        self.seeded_empty: set[str] = set()
        self.delta_ready: set[str] = set()  # maintained views that now report their own changes
        # maintainers by touched keys keep their own state and give the touched keys' rows
        self.maintained = {n for n, o in self.overrides.items() if o.by_touched_keys}
        self.partitioned = {
            n: m.partition for n, m in meta.items()
            if m.partition and n in self.sql and (n not in self.overrides or n in self.maintained)
        }
        # Views partitioned by a key read the events of their touched keys from one shared
        # scan per key and refresh, __events_by_{key} (stored columns and seq). Per session
        # (with session_features among the partitioned views) it starts at the earliest start
        # of a touched session: older row groups are skipped.
        self.part_sql = {
            n: sqlfiles.to_duckdb(
                sqlfiles.view_query(next(v for v in self.views if v.name == n)),
                restrict=f"{k} IN (SELECT k FROM __touched_{n})",
                source=f"(SELECT * EXCLUDE (seq) FROM __events_by_{k})",
            )
            for n, k in self.partitioned.items() if n not in self.maintained
        }
        self.windowed: dict[str, int] = {}  # view -> window size (microseconds)
        for view in self.views:
            n = view.name
            if n not in meta or not meta[n].window_partitioned or n in self.overrides:
                continue
            query = sqlfiles.view_query(view)
            micros = sqlfiles.tumble_micros(query)
            if micros:
                self.windowed[n] = micros
                self.partitioned[n] = "window_start"
                start = sqlfiles.window_start_sql("ts", micros)
                self.part_sql[n] = sqlfiles.to_duckdb(query, tumble_restrict=(
                    f"ts >= {LO_MARKER} AND ts < {HI_MARKER} "
                    f"AND {start} IN (SELECT k FROM __touched_{n})"))  # fmt: skip
        self.part_horizons = {
            n: sqlfiles.horizons(sqlfiles.view_query(next(v for v in self.views if v.name == n)))
            for n in self.partitioned
        }
        self.part_state: dict[str, tuple[int, datetime]] = {}  # view -> (last seq, clock)
        self.row_counts: dict[str, int] = {}  # rows of each view after its last refresh
        self._call = 0  # refresh() calls; the call that last committed each view:
        self._commit_call: dict[str, int] = {}
        self._scanned: set[str] = set()  # views whose touched keys' events were scanned
        self.scan_ms = 0.0  # time of this refresh's shared scans
        self._seq: int | None = None
        self._seq_seen = 0  # a seq read before: later reads scan only the row groups above it
        self.part_ready: set[str] = set()
        self._pending_state: dict[str, tuple[int, datetime]] = {}
        self._bots: frozenset[str] | None = None  # session_features' bots, kept from its diffs

    @property
    def names(self) -> list[str]:
        return [v.name for v in self.views]

    def horizon(self):
        """The longest look-back of any view (events older than clock - horizon are unused)."""
        spans = [sqlfiles.horizon(sqlfiles.view_query(v)) for v in self.views]
        known = [s for s in spans if s is not None]
        return max(known) if known else sqlfiles.DEFAULT_HORIZON

    def compute(self, now: datetime, name: str) -> str:
        """Store view `name` at clock `now` as a temp table; returns its name."""
        if name in self.overrides:
            relation = self.overrides[name].override(self.con, now)
        else:
            relation = sqlfiles.bind_now(self.sql[name], now)
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {relation}")
        return name

    def refresh(
        self, now: datetime, diff: bool = True, only: set[str] | None = None
    ) -> list[ViewResult]:
        """Every view (or those in `only`) at clock `now`, with changes since the last commit.

        A view left out keeps its previous result, which later views still read.
        """
        results = []
        self._seq = None
        # fixed before any view reads the store: events stored meanwhile (the background
        # tier refreshes while the loop ingests) have a higher seq and are read next time
        self._last_seq()
        self._call += 1
        self._scanned = set()
        self.scan_ms = 0.0
        if diff:
            self._scan_keys(now, only)
        for name in self.names:
            if only is not None and name not in only:
                continue
            started = time.perf_counter()
            override = self.overrides.get(name)
            if override is not None:  # the bot set this runner keeps
                override.read_bots(self.bots)
            if diff and override is not None and name in self.delta_ready:
                override.read_flips_from(self._flip_source(name))
                changes = override.delta(self.con, now)
                assert changes is not None  # delta_ready: it reports its changes
                inserts, deletes, count = changes
                ms = (time.perf_counter() - started) * 1000
                results.append(ViewResult(name, list(override.COLUMNS), list(override.TYPES),
                                          inserts, deletes, count, ms))  # fmt: skip
                if name == self.bot_view:
                    self._follow_bots(results[-1])
                continue
            if diff and name in self.part_ready:
                results.append(self._partial(name, now, started))
                if name == self.bot_view:
                    self._follow_bots(results[-1])
                continue
            if name == self.bot_view:
                self._bots = None  # read again when asked
            self.compute(now, name)
            self._pending_state[name] = (self._last_seq(), now)
            self._track_bots(name)
            result = ViewResult(name, *self._describe(name))
            if diff:
                prev = f"__prev_{name}"
                if name in self.has_prev:
                    result.inserts = self.con.execute(
                        f"SELECT * FROM {name} EXCEPT ALL SELECT * FROM {prev}"
                    ).fetchall()
                    result.deletes = self.con.execute(
                        f"SELECT * FROM {prev} EXCEPT ALL SELECT * FROM {name}"
                    ).fetchall()
                else:
                    result.inserts = self.con.execute(f"SELECT * FROM {name}").fetchall()
                    result.initial = True
                result.initial = result.initial or name in self.seeded_empty
            count = self.con.execute(f"SELECT count(*) FROM {name}").fetchall()
            result.row_count = self.row_counts[name] = int(count[0][0])
            result.refresh_ms = (time.perf_counter() - started) * 1000
            results.append(result)
        return results

    def bots(self, con: duckdb.DuckDBPyConnection | None = None) -> frozenset[str]:
        """The sessions session_features flags as bots, as last computed. Where this runner
        refreshes session_features the set is kept from each refresh's changed rows (read
        once); else it is read from the table. Never changed in place: a new set each time.
        (`con` is not used: the maintainers call this as they call `bot_sessions`.)"""
        if self.bot_view not in self.names:
            return bot_sessions(self.con)
        if self._bots is None:
            self._bots = bot_sessions(self.con)
        return self._bots

    def _follow_bots(self, result: ViewResult) -> None:
        """Apply one partial refresh of session_features to the kept bot set: the deleted
        rows' sessions leave it, the inserted rows flagged is_bot enter it."""
        if self._bots is None:
            return
        gone = _column(result.deletes, result.columns, "session_id")
        flags = _column(result.inserts, result.columns, "is_bot")
        ids = _column(result.inserts, result.columns, "session_id")
        new = {s for s, bot in zip(ids, flags, strict=True) if bot}
        if gone or new:
            self._bots = (self._bots - set(gone)) | new

    def _describe(self, table: str) -> tuple[list[str], list[str]]:
        """A table's column names and DuckDB types."""
        rel = self.con.execute(f"SELECT * FROM {table} LIMIT 0")
        columns = [d[0] for d in rel.description]
        types = [str(d[1]) for d in rel.description]
        rel.fetchall()
        return columns, types

    def _last_seq(self) -> int:
        """The newest stored event's seq (read once per refresh: views run in one thread)."""
        if self._seq is None:
            self._seq = self._seq_seen = newest_seq(self.con, self._seq_seen)
        return self._seq

    def _touch_windows(self, name: str, now: datetime) -> str:
        """__touched_{name} = the windows of a window-partitioned view to recompute; returns the
        view's partial SQL bound to their time range."""
        micros = self.windowed[name]
        last_seq, _ = self.part_state[name]
        start = sqlfiles.window_start_sql("ts", micros)
        horizon = max(self.part_horizons[name])
        parts = [f"SELECT {start} AS k FROM flashrec_events WHERE seq > {last_seq}",
                 f"SELECT window_start FROM {name} WHERE window_start <= ?"]  # fmt: skip
        params: list[Any] = [now - horizon]
        if self._track_bots(name):
            now_bots, was_bots = f"__bots_next_{name}", f"__bots_{name}"
            flips = (f"(SELECT session_id FROM {now_bots} EXCEPT SELECT session_id FROM "
                     f"{was_bots}) UNION (SELECT session_id FROM {was_bots} EXCEPT "
                     f"SELECT session_id FROM {now_bots})")  # fmt: skip
            parts.append(f"SELECT {start} FROM {self._flip_source(name)} WHERE ts > ? "
                         f"AND session_id IN ({flips})")  # fmt: skip
            params.append(now - horizon - timedelta(microseconds=micros))
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE __touched_{name} AS SELECT DISTINCT k "
                         "FROM (" + " UNION ALL ".join(parts) + ")", params)  # fmt: skip
        lo, hi = self.con.execute(f"SELECT min(k), max(k) FROM __touched_{name}").fetchall()[0]
        if lo is None:
            lo = hi = now
        hi = hi + timedelta(microseconds=micros)
        sql = sqlfiles.bind_now(self.part_sql[name], now)
        return (sql.replace(LO_MARKER, sqlfiles.timestamp_literal(lo))
                .replace(HI_MARKER, sqlfiles.timestamp_literal(hi)))

    def _flip_source(self, name: str) -> str:
        """Where the events of sessions whose bot flag flipped are read: this refresh's
        __events_by_session_id when every flip since the view's last refresh comes from this
        refresh of session_features (its touched sessions are all there), else the store.
        Both have the columns of flashrec_events."""
        same_call = self._commit_call.get(name) == self._commit_call.get(self.bot_view or "")
        scanned = same_call and self.bot_view in self._scanned
        return "__events_by_session_id" if scanned else "flashrec_events"

    def _tracks_bots(self, name: str) -> bool:
        return name in self.windowed and self.bot_view in self.names

    def _track_bots(self, name: str) -> bool:
        """Snapshot the bot sessions for a window-partitioned view (committed with it)."""
        if not self._tracks_bots(name):
            return False
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE __bots_next_{name} AS "
                         f"SELECT session_id FROM {self.bot_view} WHERE is_bot")  # fmt: skip
        self.con.execute(f"CREATE TEMP TABLE IF NOT EXISTS __bots_{name} "
                         f"AS FROM __bots_next_{name} LIMIT 0")  # fmt: skip
        return True

    def _partial(self, name: str, now: datetime, started: float) -> ViewResult:
        """Recompute a partitioned view for the keys touched since its last refresh."""
        seq = self._last_seq()
        if name in self.windowed:
            part = self._touch_windows(name, now)
        elif name in self.maintained:
            touched = self.overrides[name].touched(self.con, now, f"__touched_{name}")
            assert touched is not None  # maintained: it gives its touched keys' rows
            part = touched
        else:  # its touched keys and their events: _scan_keys
            part = sqlfiles.bind_now(self.part_sql[name], now)
        return self._replace_touched(name, now, started, seq, part)

    def _touch_keys(self, name: str, now: datetime) -> None:
        """__touched_{name} = the keys with events stored since the view's last refresh or
        events leaving one of its time filters."""
        key = self.partitioned[name]
        last_seq, last_now = self.part_state[name]
        windows = " ".join(
            f"UNION SELECT {key} FROM flashrec_events WHERE ts > ? AND ts <= ?"
            for _ in self.part_horizons[name]
        )
        params: list[Any] = []
        for h in self.part_horizons[name]:
            params += [last_now - h, now - h]
        self.con.execute(
            f"CREATE OR REPLACE TEMP TABLE __touched_{name} AS SELECT DISTINCT k FROM ("
            f"SELECT {key} AS k FROM flashrec_events WHERE seq > {last_seq} {windows})",
            params,
        )

    def _scan_keys(self, now: datetime, only: set[str] | None) -> None:
        """One scan per key for the views refreshed by key: __events_by_{key} holds every
        event of their touched keys from the earliest one any of them reads on."""
        names = [n for n in self.partitioned
                 if n not in self.windowed and n not in self.maintained and n in self.part_ready
                 and (only is None or n in only)]  # fmt: skip
        if not names:
            return
        started = time.perf_counter()
        for key in sorted({self.partitioned[n] for n in names}):
            group = [n for n in names if self.partitioned[n] == key]
            for name in group:
                self._touch_keys(name, now)
            union = " UNION ".join(f"SELECT k FROM __touched_{n}" for n in group)
            lo = now - max(h for n in group for h in self.part_horizons[n])
            if key == "session_id" and "session_features" in self.partitioned:
                since = min(self.part_state[n][0] for n in group)
                lo = self._session_lower_bound(union, since, lo)
            self.con.execute(f"CREATE OR REPLACE TEMP TABLE __events_by_{key} AS SELECT * FROM "
                             f"flashrec_events WHERE ts >= ? AND {key} IN ({union})", [lo])
        self._scanned = set(names)
        self.scan_ms = (time.perf_counter() - started) * 1000

    def _session_lower_bound(self, touched: str, last_seq: int, floor: datetime) -> datetime:
        """No event of a session in `touched` (a query of session ids) that a session view
        reads is older than this: the events stored since `last_seq` (or session_features'
        last refresh), and for the others the sessions' session_start in session_features
        as last computed."""
        state = self._pending_state.get("session_features") or self.part_state[
            "session_features"]  # fmt: skip
        since = min(last_seq, state[0])
        lo = self.con.execute(
            f"SELECT least((SELECT min(ts) FROM flashrec_events WHERE seq > {since}), "
            f"(SELECT min(session_start) FROM session_features WHERE session_id IN ({touched})))"
        ).fetchall()[0][0]
        return floor if lo is None else max(lo, floor)

    def _replace_touched(self, name: str, now: datetime, started: float, seq: int,
                         part: str) -> ViewResult:
        """Diff and replace the view's rows of the keys in __touched_{name} by `part`'s rows."""
        key = self.partitioned[name]
        self.con.execute("CREATE OR REPLACE TEMP TABLE __part AS " + part)
        columns, types = self._describe("__part")
        # one scan finds, deletes and returns the touched keys' old rows
        delete = f"DELETE FROM {name} WHERE {key} IN (SELECT k FROM __touched_{name}) RETURNING *"
        result = ViewResult(name, columns, types)
        if any("[" in t or t.startswith(("STRUCT", "MAP", "UNION")) for t in types):
            new = self.con.execute("SELECT * FROM __part").fetchall()
            old = self.con.execute(delete).fetchall()
            result.inserts, result.deletes = bag_diff(new, old, lists=True)
        else:  # flat rows: the diff in DuckDB, the changes as Arrow (no tuple unless read)
            old_table = self.con.sql(delete).to_arrow_table()
            with registered(self.con, "__old", old_table):
                result.inserts = ArrowRows(self.con.sql(
                    "SELECT * FROM __part EXCEPT ALL SELECT * FROM __old").to_arrow_table(), types)
                result.deletes = ArrowRows(self.con.sql(
                    "SELECT * FROM __old EXCEPT ALL SELECT * FROM __part").to_arrow_table(), types)
        self.con.execute(f"INSERT INTO {name} SELECT * FROM __part")
        self._pending_state[name] = (seq, now)
        result.row_count = self.row_counts[name] = (
            self.row_counts[name] + len(result.inserts) - len(result.deletes))  # fmt: skip
        result.refresh_ms = (time.perf_counter() - started) * 1000
        return result

    def commit(self, names: list[str] | None = None) -> None:
        """Make this refresh's results the baseline of the next diff."""
        for name in names if names is not None else self.names:
            self.has_prev.add(name)
            self.seeded_empty.discard(name)
            if name in self._pending_state:
                self.part_state[name] = self._pending_state.pop(name)
            self._commit_call[name] = self._call
            if name in self.delta_ready:
                continue
            if self._tracks_bots(name):
                self.con.execute(f"CREATE OR REPLACE TEMP TABLE __bots_{name} AS "
                                 f"FROM __bots_next_{name}")  # fmt: skip
            if name in self.partitioned:
                self.part_ready.add(name)  # the view's table is now the published state
                self.con.execute(f"DROP TABLE IF EXISTS __prev_{name}")
                continue
            override = self.overrides.get(name)
            if override is not None and override.reports_changes:
                self.delta_ready.add(name)  # from now on it reports its own changes
                self.con.execute(f"DROP TABLE IF EXISTS __prev_{name}")
                continue
            self.con.execute(f"CREATE OR REPLACE TEMP TABLE __prev_{name} AS SELECT * FROM {name}")

    def seed(self, name: str, rows: list[tuple[Any, ...]]) -> None:
        """Set the baseline of view `name` (what PostgreSQL holds) before the first refresh:
        its rows as tuples, inserted one by one (see seed_csv for the bulk way)."""
        self._seed_table(name)
        if rows:
            width = len(rows[0])
            marks = ", ".join("?" * width)
            self.con.executemany(f"INSERT INTO __prev_{name} VALUES ({marks})", rows)
        self._seeded(name, len(rows))

    def seed_csv(self, name: str, path: str, pg_types: list[str]) -> int | None:
        """seed() from a CSV file of Publisher.export_csv (columns of PostgreSQL types
        `pg_types`) in one read_csv; returns the rows. None where the file's columns do not
        fit the view's (count, arrays) or DuckDB refuses a value: nothing is seeded then."""
        self._seed_table(name)
        columns, types = self._describe(f"__prev_{name}")
        arrays = [t.endswith("[]") for t in pg_types]
        if len(pg_types) != len(types) or arrays != [t.endswith("]") for t in types]:
            return None
        read = ", ".join(f"'c{i}': '{'VARCHAR' if a else t}'"
                         for i, (t, a) in enumerate(zip(types, arrays, strict=True)))  # fmt: skip
        select = ", ".join(f"CAST(CAST(c{i} AS JSON) AS {t})" if a else f"c{i}"
                           for i, (t, a) in enumerate(zip(types, arrays, strict=True)))  # fmt: skip
        try:
            count = self.con.execute(
                f"INSERT INTO __prev_{name} SELECT {select} FROM read_csv(?, columns = {{{read}}}, "
                "header = false, auto_detect = false, delim = ',', quote = '\"', escape = '\"', "
                "allow_quoted_nulls = false)", [path]).fetchall()[0][0]  # fmt: skip
        except (duckdb.ConversionException, duckdb.InvalidInputException) as exc:
            log.warning("%s: the bulk seed refused a value (%s); seeded row by row", name, exc)
            return None
        self._seeded(name, int(count))
        return int(count)

    def _seed_table(self, name: str) -> None:
        """Empty tables {name} and __prev_{name} of the view's types. The view's query is
        bound, not run (LIMIT 0: a restart with a full store computes nothing here); a view
        maintained in code has its SQL's types and is not called (it builds its state at
        the first refresh). Other views computed by code are computed."""
        if name == self.bot_view:
            self._bots = None
        override = self.overrides.get(name)
        if override is None or override.reports_changes or override.by_touched_keys:
            query = sqlfiles.bind_now(self.sql[name], datetime(1970, 1, 1))
            self.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS "
                             f"SELECT * FROM ({query}) LIMIT 0")  # fmt: skip
        else:
            self.compute(datetime(1970, 1, 1), name)
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE __prev_{name} AS FROM {name} LIMIT 0")

    def _seeded(self, name: str, rows: int) -> None:
        self.has_prev.add(name)
        if not rows:
            self.seeded_empty.add(name)

    def rows(self, name: str) -> list[tuple[Any, ...]]:
        return self.con.execute(f"SELECT * FROM {name}").fetchall()


def _column(rows: Any, columns: list[str], name: str) -> list[Any]:
    """One column of a refresh's inserted or deleted rows (Arrow or tuples)."""
    table = getattr(rows, "table", None)
    at = columns.index(name)
    if table is not None:
        return table.column(at).to_pylist()
    return [r[at] for r in rows]


def bot_sessions(con: duckdb.DuckDBPyConnection) -> frozenset[str]:
    """The sessions session_features flags as bots, as last computed (none without the view:
    the SQL reads a missing flag as not bot)."""
    try:
        rows = con.execute("SELECT session_id FROM session_features WHERE is_bot")
    except duckdb.CatalogException:
        return frozenset()
    return frozenset(rows.fetchnumpy()["session_id"].tolist())


def rows_table(columns: list[str], kinds: list[Any], rows: list[tuple[Any, ...]]) -> Any:
    """Rows (tuples in column order) as an Arrow table of the given column types."""
    import pyarrow as pa

    values = list(zip(*rows, strict=True)) or [()] * len(columns)
    return pa.table({name: pa.array(col, kind)
                     for name, col, kind in zip(columns, values, kinds, strict=True)})


class ArrowRows(Sequence[tuple[Any, ...]]):
    """Inserted or deleted rows of a refresh kept as an Arrow table: tuples (as DuckDB's
    fetchall gives them) are made only when read; the publisher writes the table itself."""

    def __init__(self, table: Any, types: list[str]) -> None:
        self.table = table
        self.types = types
        self._rows: list[tuple[Any, ...]] | None = None

    def __len__(self) -> int:
        return self.table.num_rows

    def rows(self) -> list[tuple[Any, ...]]:
        if self._rows is None:
            cols = [self._values(col, kind) for col, kind in
                    zip(self.table.columns, self.types, strict=True)]  # fmt: skip
            self._rows = list(zip(*cols, strict=True)) if cols else []
        return self._rows

    @staticmethod
    def _values(col: Any, kind: str) -> list[Any]:
        values = col.to_pylist()
        if kind == "HUGEINT":  # Arrow holds it as decimal128(38, 0); fetchall gives an int
            return [None if v is None else int(v) for v in values]
        return values

    @overload
    def __getitem__(self, index: int) -> tuple[Any, ...]: ...
    @overload
    def __getitem__(self, index: slice) -> list[tuple[Any, ...]]: ...
    def __getitem__(self, index: int | slice) -> Any:
        return self.rows()[index]

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self.rows())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and self.rows() == list(other)

    def __repr__(self) -> str:
        return f"ArrowRows({self.rows()!r})"


def _frozen(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return tuple((k, _frozen(v)) for k, v in value.items())
    return value


def bag_diff(new: list[tuple[Any, ...]], old: list[tuple[Any, ...]], lists: bool = False
             ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(new EXCEPT ALL old, old EXCEPT ALL new): rows compared by value (`lists`: some
    columns hold lists or structs, compared as tuples)."""
    def key(row: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(_frozen(v) for v in row) if lists else row

    first: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    counts: Counter[tuple[Any, ...]] = Counter()
    for rows, sign in ((new, 1), (old, -1)):
        for row in rows:
            k = key(row)
            first.setdefault(k, row)
            counts[k] += sign
    inserts = [first[k] for k, n in counts.items() for _ in range(n)]
    deletes = [first[k] for k, n in counts.items() for _ in range(-n)]
    return inserts, deletes


def evaluate(
    events: list[dict[str, Any]],
    now: datetime,
    objects: list[sqlfiles.SqlObject] | None = None,
) -> dict[str, list[tuple[Any, ...]]]:
    """Batch run of every view's SQL over `events` (valid dicts, first event_id wins) at `now`.

    The reference the streaming engine is compared with: sorted rows per view.
    """
    from recommender.engine.store import StateStore, dedupe

    store = StateStore(None)
    try:
        keep, _ = dedupe(events)
        store.apply(keep, {})
        runner = ViewRunner(store.con, objects)
        runner.refresh(now, diff=False)
        return {name: sorted(runner.rows(name), key=repr) for name in runner.names}
    finally:
        store.close()
