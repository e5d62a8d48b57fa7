"""session_features and vmis_history maintained incrementally, equal to the SQL of
sql/030_session_features.sql and sql/050_vmis_history.sql.

State, in memory, per session with a click in the last `idle` of the clock: what both views
aggregate (user and device, first and last click, clicks per action, the products it touched
with the time each was first viewed, its categories, the smallest gap between consecutive
clicks) and its click times. A refresh applies the events stored since the last one to their
sessions: a click after the session's last one adds its gap to the last; an older one (the
partitions of a topic whose producer does not key by session are read unevenly, so a
session's clicks arrive out of order) goes between its neighbours in time. The work follows
the new events, not the sessions' histories that the SQL path reads again.

A session is rebuilt from the stored events instead (its rows before and after both) when
clicks cross the 7-day edge as NOW() moves, when the clock goes back, or for a session not in
memory that has older clicks (idle longer than `idle`, or the engine restarted: such sessions
are listed with their first and last click in a DuckDB table, which bounds the scan).

session_features' columns (mean gap, bot flag, types) come from the view's own final SELECT
run over these aggregates, so they are the SQL's by construction; vmis_history's rows are
its sessions' viewed products in first-view order, for the sessions not flagged as bots by
the same rule, whose thresholds (clicks, seconds per click) and the horizon are read from
the views' SQL.
"""

from __future__ import annotations

import itertools
import logging
import sys
from array import array
from bisect import bisect_right
from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import duckdb
import pyarrow as pa
from sqlglot import exp

from recommender import sqlfiles
from recommender.engine.maintainers import Defaults, FirstClick
from recommender.engine.refresh import ArrowRows
from recommender.engine.store import newest_seq, registered

log = logging.getLogger(__name__)

# sqlfiles.shape of the queries this module reproduces. Their parameters, in query order:
# session_features: the horizon's INTERVAL, the clicks a mean gap needs (read by the view's
# own SELECT, any value), the bot rule's least clicks and its seconds per click;
# vmis_history: the horizon's INTERVAL.
SHAPES = {"session_features": "e74df74364c2f09f", "vmis_history": "689f5c300e96bae7"}
PARAMETERS = {"session_features": "the horizon, the mean gap's and the bot rule's thresholds",
              "vmis_history": "the horizon"}  # fmt: skip
VIEWS = tuple(SHAPES)
NO_VIEW = 1 << 62  # first-view time of a product the session only carted or bought
UNBOUNDED = -(1 << 62)
NO_CLICK = 1 << 62  # the oldest click's time when there is none
EPOCH = datetime(1970, 1, 1)
DAY_US = 86_400_000_000
PRELOAD_CHUNK = 100_000  # events per fetch when sessions are built at the full build
KNOWN = "__sess_known"  # sessions not in memory: session_id, first and last click (us)
SWEEP_ROUND, SWEEP_MIN = 60, 2_000  # eviction: refreshes per round, sessions per refresh
EVENT_COLUMNS = ("session_id, user_id, product_id, category, action, device, "
                 "epoch_us(ts) AS t, event_id")  # fmt: skip
# per_session of sql/030 (types as DuckDB gives them there) from the state's aggregates
PER_SESSION = (
    "SELECT session_id, user_id, make_timestamp(start_us) AS session_start, "
    "make_timestamp(last_us) AS last_event_at, event_count, "
    "CAST(view_count AS HUGEINT) AS view_count, "
    "CAST(cart_add_count AS HUGEINT) AS cart_add_count, "
    "CAST(purchase_count AS HUGEINT) AS purchase_count, distinct_products, "
    "distinct_categories, device, CAST(EXTRACT(EPOCH FROM make_timestamp(gap_us) - "
    "make_timestamp(CAST(0 AS BIGINT))) AS DOUBLE) AS min_gap_s FROM __sess_arrow"
)
BASE_SCHEMA = pa.schema([
    ("session_id", pa.string()), ("user_id", pa.string()), ("start_us", pa.int64()),
    ("last_us", pa.int64()), ("event_count", pa.int64()), ("view_count", pa.int64()),
    ("cart_add_count", pa.int64()), ("purchase_count", pa.int64()),
    ("distinct_products", pa.int64()), ("distinct_categories", pa.int64()),
    ("device", pa.string()), ("gap_us", pa.int64()),
])  # fmt: skip

Row = tuple[Any, ...]
BotRule = tuple[float, Decimal]  # (least clicks, seconds per gap): session_features' is_bot


class Session:
    """One session's aggregates over its clicks inside the horizon."""

    __slots__ = ("user", "device", "start", "last", "n", "views", "carts", "buys", "gap",
                 "times", "products", "items", "categories")  # fmt: skip

    def __init__(self) -> None:
        self.user: str | None = None
        self.device: str | None = None
        self.start = self.last = 0
        self.n = self.views = self.carts = self.buys = 0
        self.gap: int | None = None
        self.times = array("q")  # every click's time (us), ascending: a late click's neighbours
        self.products: dict[str, int] = {}  # product -> first view (us) or NO_VIEW
        self.items: list[str] = []  # viewed products by (first view, product_id)
        self.categories: list[str] = []  # distinct (a session has few)

    def add(self, rows: Iterable[Row]) -> None:
        """Apply clicks (EVENT_COLUMNS order) in any order: one older than the session's
        last click (another partition's, read later) goes between its neighbours in time,
        whose gap it splits: the smallest gap is the smaller of the old one and its two new
        ones (both at most the gap they replace)."""
        products, times, intern = self.products, self.times, sys.intern
        for _sid, user, product, category, action, device, t, _eid in rows:
            product = intern(product)  # never NULL: the event contract requires it
            if not self.n:
                self.start = self.last = t
                times.append(t)
            elif t >= self.last:
                self._gap(t - self.last)
                self.last = t
                times.append(t)
            else:
                i = bisect_right(times, t)
                if i:
                    self._gap(t - times[i - 1])
                else:
                    self.start = t
                self._gap(times[i] - t)
                times.insert(i, t)
            self.n += 1
            if action == "view":
                self.views += 1
                first = products.get(product, NO_VIEW)
                if t < first:
                    if first != NO_VIEW:
                        self.items.remove(product)
                    products[product] = t
                    self._view(product, t)
            else:
                if action == "add_to_cart":
                    self.carts += 1
                elif action == "purchase":
                    self.buys += 1
                products.setdefault(product, NO_VIEW)
            if category is not None and category not in self.categories:  # NULL: not counted
                self.categories.append(intern(category))
            if user is not None and (self.user is None or user > self.user):
                self.user = user
            if device is not None and (self.device is None or device > self.device):
                self.device = intern(device)

    def _gap(self, gap: int) -> None:
        if self.gap is None or gap < self.gap:
            self.gap = gap

    def _view(self, product: str, t: int) -> None:
        """Place a product first viewed at t among items (by first view, then product_id):
        from the end, where an in-order click's product goes."""
        items, products, j = self.items, self.products, len(self.items)
        while j and (products[items[j - 1]], items[j - 1]) > (t, product):
            j -= 1
        items.insert(j, product)

    def is_bot(self, rule: BotRule) -> bool:
        """session_features' rule: at least `clicks` clicks, and (last - first) in seconds
        under `seconds` per gap between them, both doubles as DuckDB computes them: the
        seconds of an interval of whole days and microseconds, and the decimal product of
        `1.0 * (event_count - 1)`."""
        clicks, seconds = rule
        if self.n < clicks:
            return False
        days, micros = divmod(self.last - self.start, DAY_US)
        return days * 86400 + micros / 1e6 < float(seconds * (self.n - 1))


def _features_of(sid: str, s: Session | None) -> Row | None:
    """The session's aggregates as BASE_SCHEMA (None: no click in the horizon)."""
    if s is None or not s.n:
        return None
    return (sid, s.user, s.start, s.last, s.n, s.views, s.carts, s.buys, len(s.products),
            len(s.categories), s.device, s.gap)  # fmt: skip


def _history_of(sid: str, s: Session | None, rule: BotRule) -> Row | None:
    """The session's vmis_history row as (id, items, last click us); None: no row."""
    if s is None or not s.items or s.is_bot(rule):
        return None
    return sid, tuple(s.items), s.last


class SessionState:
    """The sessions both views read, updated from the stored events at each refresh."""

    def __init__(self, horizon: timedelta, idle: timedelta,
                 bot_rule: BotRule = (5, Decimal("1.0"))) -> None:  # fmt: skip
        self.horizon = horizon
        self.bot_rule = bot_rule
        self.idle_us = int(idle / timedelta(microseconds=1))
        self.sessions: dict[str, Session] = {}
        # per view: session -> its row when the view last published it (None: no row)
        self.pending: dict[str, dict[str, Row | None]] = {v: {} for v in VIEWS}
        self.sweep: list[str] = []  # sessions still to check for eviction in this round
        self.last_seq = 0
        self.last_now: datetime | None = None
        self.con: duckdb.DuckDBPyConnection | None = None
        self.loaded = False  # KNOWN filled from the views' full build
        self.advances = 0
        self.rebuilt = 0  # sessions rebuilt from the store (all refreshes)
        self.oldest = UNBOUNDED  # no click inside the horizon is older (us)
        # the newest click applied (us): idleness is measured from it, not from the clock,
        # so a backlog being drained (clicks minutes behind the wall clock) is not evicted
        self.newest = UNBOUNDED

    def reset(self, con: duckdb.DuckDBPyConnection, now: datetime) -> None:
        """When the views are built from their SQL at `now`: the sessions with a click in
        the last `idle` are built in memory from the store, the others are listed in KNOWN
        at the next advance."""
        self.con = con
        self.sessions.clear()
        self.sweep.clear()
        for pending in self.pending.values():
            pending.clear()
        self.last_seq = newest_seq(con)
        self.last_now = now
        self.loaded = False
        self.advances = 0
        edge = now - self.horizon
        oldest, newest = con.execute(
            "SELECT min(epoch_us(ts)), max(epoch_us(ts)) FROM flashrec_events WHERE seq <= ? "
            "AND ts > ?", [self.last_seq, edge]).fetchall()[0]  # fmt: skip
        self.oldest = NO_CLICK if oldest is None else oldest
        self.newest = UNBOUNDED if newest is None else newest
        if newest is None:
            log.info("session views: no click stored yet")
            return
        hot = EPOCH + timedelta(microseconds=self._cutoff(now))
        result = con.execute(
            f"SELECT {EVENT_COLUMNS} FROM flashrec_events WHERE seq <= ? AND ts > ? AND "
            "session_id IN (SELECT session_id FROM flashrec_events WHERE seq <= ? AND ts > ? "
            "AND ts >= ?) ORDER BY session_id, ts, event_id",
            [self.last_seq, edge, self.last_seq, edge, hot])  # fmt: skip
        while rows := result.fetchmany(PRELOAD_CHUNK):  # a session may span two chunks
            for sid, group in itertools.groupby(rows, key=lambda r: r[0]):
                session = self.sessions.get(sid)
                if session is None:
                    session = self.sessions[sid] = Session()
                session.add(group)
        log.info("session views: %d sessions with a click in the last %s built in memory",
                 len(self.sessions), timedelta(microseconds=self.idle_us))  # fmt: skip

    def _load(self, con: duckdb.DuckDBPyConnection) -> None:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {KNOWN} AS SELECT session_id, "
                    "epoch_us(session_start) AS start_us, epoch_us(last_event_at) AS last_us "
                    "FROM session_features")  # fmt: skip
        self.loaded = True

    def advance(self, con: duckdb.DuckDBPyConnection, now: datetime) -> None:
        """Bring the sessions to clock `now` and every event stored so far; what changed is
        recorded for each view."""
        if self.con is not con or self.last_now is None:
            raise RuntimeError("the session views must be built from their SQL first")
        if not self.loaded:
            self._load(con)
        seq = newest_seq(con, self.last_seq)
        if seq == self.last_seq and now == self.last_now:
            return
        edge = now - self.horizon
        rows = con.execute(f"SELECT {EVENT_COLUMNS} FROM flashrec_events WHERE seq > ? AND "
                           "seq <= ? AND ts > ? ORDER BY session_id, ts, event_id",
                           [self.last_seq, seq, edge]).fetchall()  # fmt: skip
        groups = [(sid, list(g)) for sid, g in itertools.groupby(rows, key=lambda r: r[0])]
        if rows:
            times = [r[6] for r in rows]
            self.oldest, self.newest = min(self.oldest, min(times)), max(self.newest, max(times))
        edge_sids = self._edge_sessions(con, now)
        rebuild = set(edge_sids)
        missing = [sid for sid, _ in groups if sid not in self.sessions and sid not in rebuild]
        known = self._known(con, missing)
        bounds = dict(known)
        for sid, g in groups:
            session = self.sessions.get(sid)
            if sid in rebuild or sid in known:
                rebuild.add(sid)
                bounds[sid] = min(bounds.get(sid, g[0][6]), g[0][6])
                continue
            self._record(sid, session)
            if session is None:
                session = self.sessions[sid] = Session()
            session.add(g)
        if rebuild:
            self._rebuild(con, rebuild, bounds, now, seq, edge_sids)
        self.last_seq, self.last_now = seq, now
        self.advances += 1
        self._evict(con, now)

    def _record(self, sid: str, session: Session | None) -> None:
        """Keep the session's current row for each view that has not got it yet."""
        for view, pending in self.pending.items():
            if sid not in pending:
                pending[sid] = self._snapshot(view, sid, session)

    def _edge_sessions(self, con: duckdb.DuckDBPyConnection, now: datetime) -> set[str]:
        """Sessions with stored clicks that NOW()'s move took out of (or back into) the
        horizon."""
        assert self.last_now is not None
        old, new = self.last_now - self.horizon, now - self.horizon
        if old == new or (new > old and _micros(new) < self.oldest):
            return set()  # no click inside the horizon is that old
        lo, hi = min(old, new), max(old, new)
        found = con.execute("SELECT DISTINCT session_id FROM flashrec_events WHERE seq <= ? "
                            "AND ts > ? AND ts <= ?", [self.last_seq, lo, hi]).fetchall()
        self.oldest = _micros(new)  # clicks inside the horizon from now on are later
        return {r[0] for r in found}

    def _known(self, con: duckdb.DuckDBPyConnection, sids: list[str]) -> dict[str, int]:
        """Of sessions not in memory, those with clicks stored earlier: their first click."""
        if not sids:
            return {}
        with registered(con, "__sess_ids", pa.table({"session_id": pa.array(sids, pa.string())})):
            rows = con.execute(f"SELECT session_id, min(start_us) FROM {KNOWN} WHERE session_id "
                               "IN (SELECT session_id FROM __sess_ids) GROUP BY ALL").fetchall()
        return dict(rows)

    def _rebuild(self, con: duckdb.DuckDBPyConnection, sids: set[str], bounds: dict[str, int],
                 now: datetime, seq: int, edge_sids: set[str]) -> None:  # fmt: skip
        """Rebuild sessions from their stored clicks: their state at the last refresh (for
        the views' old rows), then now."""
        assert self.last_now is not None
        old_edge, new_edge = self.last_now - self.horizon, now - self.horizon
        forward = now >= self.last_now
        for sid in sids:
            session = self.sessions.get(sid)
            if session is not None and session.n:
                bounds[sid] = min(bounds.get(sid, session.start), session.start)
        # no bound where one is unknown, or where the clock went back (clicks older than a
        # session's first one come back into the horizon)
        lo = min(bounds.get(sid, UNBOUNDED) for sid in sids) if forward else UNBOUNDED
        with registered(con, "__sess_ids", pa.table({"session_id": pa.array(sorted(sids))})):
            rows = con.execute(
                f"SELECT {EVENT_COLUMNS}, seq, ts > ? AS was_in, ts > ? AS is_in "
                "FROM flashrec_events WHERE session_id IN (SELECT session_id FROM __sess_ids) "
                "AND seq <= ? AND ts > ? AND epoch_us(ts) >= ? ORDER BY session_id, ts, event_id",
                [old_edge, new_edge, seq, min(old_edge, new_edge), lo]).fetchall()  # fmt: skip
        by_sid = {sid: list(g) for sid, g in itertools.groupby(rows, key=lambda r: r[0])}
        last_seq = self.last_seq
        for sid in sids:
            events = by_sid.get(sid, [])
            session = Session()
            session.add(r[:8] for r in events if r[8] <= last_seq and r[9])
            self._record(sid, session)
            later = [r[:8] for r in events if r[8] > last_seq and r[10]]
            if not forward or sid in edge_sids:
                session = Session()  # the clicks it had are not all still in: from scratch
                later = [r[:8] for r in events if r[10]]
            session.add(later)
            if session.n:
                self.sessions[sid] = session
            else:
                self.sessions.pop(sid, None)
        self.rebuilt += len(sids)

    def _evict(self, con: duckdb.DuckDBPyConnection, now: datetime) -> None:
        """Sessions idle longer than `idle` leave memory for KNOWN (not while a view has yet
        to read their change). Each refresh checks a slice of the sessions: a round over
        all of them takes SWEEP_ROUND refreshes."""
        if not self.sweep:
            self.sweep = list(self.sessions)
        size = max(SWEEP_MIN, len(self.sweep) // SWEEP_ROUND)
        part, self.sweep[-size:] = self.sweep[-size:], []
        cutoff = self._cutoff(now)
        out: list[tuple[str, int, int]] = []
        for sid in part:
            session = self.sessions.get(sid)
            if session is None or session.last >= cutoff:
                continue
            if any(sid in pending for pending in self.pending.values()):
                continue  # in the next round
            del self.sessions[sid]
            out.append((sid, session.start, session.last))
        if out:
            ids, starts, lasts = zip(*out, strict=True)
            out_table = pa.table({"session_id": pa.array(ids, pa.string()),
                                  "start_us": pa.array(starts, pa.int64()),
                                  "last_us": pa.array(lasts, pa.int64())})  # fmt: skip
            with registered(con, "__sess_out", out_table):
                con.execute(f"INSERT INTO {KNOWN} SELECT * FROM __sess_out")
        if self.advances % 100 == 0:  # sessions whose clicks all left the horizon
            con.execute(f"DELETE FROM {KNOWN} WHERE last_us <= ?",
                        [_micros(now - self.horizon)])

    def _cutoff(self, now: datetime) -> int:
        """Sessions whose last click is older than this (us) are idle."""
        return max(min(_micros(now), self.newest) - self.idle_us, UNBOUNDED)

    def first_click(self, sids: Iterable[str], seq: int) -> datetime | None:
        """The oldest click of these sessions among the stored events up to `seq`; None
        when that is not known here (the state is behind `seq`, or a session is not in
        memory). A session leaving the horizon is not in memory either: its clicks are
        older than any a view of a shorter horizon reads."""
        if self.last_seq < seq:
            return None
        oldest = NO_CLICK
        for sid in sids:
            session = self.sessions.get(sid)
            if session is None or not session.n:
                return None
            oldest = min(oldest, session.start)
        return None if oldest == NO_CLICK else EPOCH + timedelta(microseconds=oldest)

    def _snapshot(self, view: str, sid: str, session: Session | None) -> Row | None:
        """The session's row in `view` (None: no row)."""
        if view == "session_features":
            return _features_of(sid, session)
        return _history_of(sid, session, self.bot_rule)

    def take(self, view: str) -> list[tuple[Row | None, Row | None]]:
        """The sessions changed since `view` last took them: (row before, row now)."""
        pending, self.pending[view] = self.pending[view], {}
        out = []
        for sid, old in pending.items():
            new = self._snapshot(view, sid, self.sessions.get(sid))
            if new != old:
                out.append((old, new))
        return out


def _micros(ts: datetime) -> int:
    return (ts - EPOCH) // timedelta(microseconds=1)


class SessionView(Defaults):
    """ViewRunner override of one of the two session views over the shared state: the
    first refresh builds the view from its SQL, later ones report their own changes."""

    def __init__(self, name: str, state: SessionState, query: exp.Expression,
                 features: exp.Expression) -> None:  # fmt: skip
        self.name = name
        self.state = state
        self.sql = sqlfiles.to_duckdb(query)
        self.final = _final_select(features)  # session_features' columns from per_session
        self.COLUMNS: list[str] = []
        self.TYPES: list[str] = []
        self.row_count = 0

    def override(self, con: duckdb.DuckDBPyConnection, now: datetime) -> str:
        """The view from its SQL (the state starts over when session_features is built)."""
        if self.name == "session_features":
            self.state.reset(con, now)
        elif self.state.advances:
            raise RuntimeError("vmis_history must be built in the same refresh as "
                               "session_features (its SQL reads that view's table)")
        self.COLUMNS = []
        return sqlfiles.bind_now(self.sql, now)

    def delta(self, con: duckdb.DuckDBPyConnection, now: datetime) -> tuple[Any, Any, int]:
        """(inserts, deletes, rows) since this view's last refresh."""
        if not self.COLUMNS:  # the table built by the SQL: columns, types and rows
            rel = con.execute(f"SELECT * FROM {self.name} LIMIT 0")
            self.COLUMNS = [d[0] for d in rel.description]
            self.TYPES = [str(d[1]) for d in rel.description]
            rel.fetchall()
            self.row_count = int(con.execute(f"SELECT count(*) FROM {self.name}")
                                 .fetchall()[0][0])  # fmt: skip
        self.state.advance(con, now)
        changed = self.state.take(self.name)
        olds = [old for old, _ in changed if old is not None]
        news = [new for _, new in changed if new is not None]
        if self.name == "session_features":
            rows = self._features(con, olds + news)  # in this order: one query for both
            deletes: Any = ArrowRows(rows.slice(0, len(olds)), self.TYPES)
            inserts: Any = ArrowRows(rows.slice(len(olds)), self.TYPES)
        else:
            inserts, deletes = _history(news), _history(olds)
        self.row_count += len(inserts) - len(deletes)
        return inserts, deletes, self.row_count

    def _features(self, con: duckdb.DuckDBPyConnection, bases: list[Row]) -> pa.Table:
        """session_features' rows of these aggregates, by the view's final SELECT, in their
        order (DuckDB keeps a scan's order without ORDER BY: preserve_insertion_order)."""
        columns = list(zip(*bases, strict=True)) or [()] * len(BASE_SCHEMA)
        table = pa.table([pa.array(c, f.type) for c, f in zip(columns, BASE_SCHEMA, strict=True)],
                         schema=BASE_SCHEMA)  # fmt: skip
        with registered(con, "__sess_arrow", table):
            return con.sql(self.final).to_arrow_table()

    # the rest of the Maintainer protocol: maintainers.Defaults
    @property
    def reports_changes(self) -> bool:
        return True

    def first_clicks(self) -> FirstClick:
        """The oldest click of sessions in the shared state (SessionState.first_click)."""
        return self.state.first_click


def _history(rows: list[Row]) -> list[Row]:
    """vmis_history's rows (as DuckDB gives them) of snapshots from `_history_of`."""
    return [(sid, list(items), EPOCH + timedelta(microseconds=last)) for sid, items, last in rows]


def _final_select(features: exp.Expression) -> str:
    """session_features' SELECT with its per_session CTE read from the state's aggregates."""
    query = features.copy()
    query.set("with_", None)
    for table in list(query.find_all(exp.Table)):
        if table.name == "per_session":
            table.replace(exp.to_table("__sess_base"))
    return f"WITH __sess_base AS ({PER_SESSION}) " + query.sql(dialect="duckdb")


def parameters(view: sqlfiles.SqlObject) -> tuple[timedelta, BotRule | None]:
    """(horizon, bot rule: session_features only) of a session view's SQL; ShapeError when
    its query is not the one this module reproduces."""
    if view.name not in SHAPES:
        raise sqlfiles.ShapeError(f"the sessions maintainer reproduces {' and '.join(VIEWS)}")
    found = sqlfiles.match(sqlfiles.view_query(view), SHAPES[view.name], PARAMETERS[view.name])
    if found[0].value <= 0:
        raise sqlfiles.ShapeError(f"its horizon ({found[0].sql}) must be longer than 0")
    rule = (found[2].value, Decimal(found[3].sql)) if view.name == "session_features" else None
    return timedelta(seconds=found[0].value), rule


def joint_problem(views: list[sqlfiles.SqlObject]) -> str | None:
    """Why these session views (each of the right shape) cannot share one state: the
    maintainer keeps both views, over one horizon. None: they can."""
    found = {v.name: parameters(v)[0] for v in views if v.name in SHAPES}
    if set(found) != set(VIEWS):
        return (f"the sessions maintainer keeps {' and '.join(VIEWS)} together; "
                f"{', '.join(sorted(set(VIEWS) - set(found)))} is not among its views")
    if len(set(found.values())) > 1:
        spans = ", ".join(f"{n} {h}" for n, h in found.items())
        return f"the session views must look back as far as each other ({spans})"
    return None


def maintainers(views: list[sqlfiles.SqlObject],
                idle: timedelta = timedelta(minutes=10)) -> dict[str, SessionView]:  # fmt: skip
    """Overrides for both session views (one shared state), with the horizon and bot rule
    of their SQL; none when neither is among `views`. ShapeError when a view's query is not
    the one this module reproduces, or the two cannot share one state."""
    found = {v.name: v for v in views if v.name in SHAPES}
    if not found:
        return {}
    problem = joint_problem(list(found.values()))
    if problem:
        raise sqlfiles.ShapeError(problem)
    horizon, rule = parameters(found["session_features"])
    assert rule is not None
    state = SessionState(horizon, idle, rule)
    features = sqlfiles.view_query(found["session_features"])
    return {n: SessionView(n, state, sqlfiles.view_query(v), features) for n, v in found.items()}
