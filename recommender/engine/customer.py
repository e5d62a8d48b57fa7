"""customer_features and customer_hours maintained incrementally, equal to the SQL of
sql/060_customer_features.sql and sql/061_customer_hours.sql.

State (DuckDB temp tables of the runner's connection), per look-back window (read from the
views' SQL: a label and an INTERVAL, 1, 7, 14 and 30 days in sql/; any INTERVAL works, the
label is only the value of `window_days`): per (user, session) the counts of its events
inside the window, the newest time per action and overall and the oldest time; per (user,
hour of day) the purchases inside the window. A refresh adds the events stored since the
last one and, per window, takes out the events that its moving edge (NOW() - window) passed
(or puts them back if the clock went back). Its work follows those events, not the 30 days
behind every touched user that the SQL reads again.

Why this equals the SQL:
- COUNT(DISTINCT session_id) is the number of (user, session) rows with events left;
- a MAX over a window loses only its oldest events, which are older than every event left,
  so a session's newest time stays right while it keeps any event of that kind;
- MIN(ts) of a session (the hour of its visit) moves when its oldest events leave: those
  sessions' oldest time left is read again from the stored events.

Both views share one state (`CustomerState`); each keeps the users changed since its own
last refresh, so either can be refreshed without the other.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import duckdb

from recommender import sqlfiles
from recommender.engine.maintainers import Defaults
from recommender.engine.store import newest_seq

# sqlfiles.shape of the queries this module reproduces. Their parameters, in query order:
# per look-back window its label and its INTERVAL (`7 AS window_days ... INTERVAL '7 DAYS'`);
# customer_hours then counts 1 visit or 1 purchase per row (`1 AS visits, 0 AS purchases`,
# `0 AS visits, 1 AS purchases`), which are kept as they are.
SHAPES = {"customer_features": "a1ee5a694c8b55ba", "customer_hours": "88c251a49a15299b"}
PARAMETERS = "each window's label and INTERVAL"
HOURS_COUNTS = (1.0, 0.0, 0.0, 1.0)
DAY_US = 86_400_000_000
DEFAULT_WINDOWS = tuple((d, d * DAY_US) for d in (1, 7, 14, 30))

# per-session counters: column -> the event's condition
COUNTS = {
    "n": "true",
    "views": "action = 'view'",
    "carts": "action = 'add_to_cart'",
    "buys": "action = 'purchase'",
    "views_mobile": "action = 'view' AND device = 'mobile'",
    "views_desktop": "action = 'view' AND device = 'desktop'",
    "buys_mobile": "action = 'purchase' AND device = 'mobile'",
    "buys_desktop": "action = 'purchase' AND device = 'desktop'",
}
# newest times: column -> (counter that must stay above 0, the event's condition)
NEWEST = {
    "last_cart_at": ("carts", "action = 'add_to_cart'"),
    "last_purchase_at": ("buys", "action = 'purchase'"),
    "last_seen_at": ("n", "true"),
}

SESSIONS = "__cust_sessions"
BUY_HOURS = "__cust_buy_hours"


class CustomerState:
    """The events inside each customer look-back window, aggregated per session."""

    def __init__(self, windows: tuple[tuple[int, int], ...] = DEFAULT_WINDOWS) -> None:
        self.spans = dict(windows)  # window label -> look-back in microseconds
        self.windows = tuple(self.spans)  # the labels
        self.last_seq = 0
        self.last_now: datetime | None = None
        self.views: set[str] = set()
        self.con: duckdb.DuckDBPyConnection | None = None

    def _setup(self, con: duckdb.DuckDBPyConnection) -> None:
        if self.con is con:
            return
        if self.con is not None:
            raise RuntimeError("the customer views' state belongs to another connection")
        self.con = con
        counts = ", ".join(f"{c} BIGINT" for c in COUNTS)
        newest = ", ".join(f"{c} TIMESTAMP" for c in NEWEST)
        con.execute(f"CREATE OR REPLACE TEMP TABLE {SESSIONS} (user_id VARCHAR, "
                    f"session_id VARCHAR, window_days INTEGER, {counts}, {newest}, "
                    "first_at TIMESTAMP)")  # fmt: skip
        con.execute(f"CREATE OR REPLACE TEMP TABLE {BUY_HOURS} (user_id VARCHAR, "
                    "window_days INTEGER, hour_of_day INTEGER, purchases BIGINT)")  # fmt: skip
        for name in self.views:
            con.execute(f"CREATE OR REPLACE TEMP TABLE {dirty(name)} (user_id VARCHAR)")

    def advance(self, con: duckdb.DuckDBPyConnection, now: datetime) -> None:
        """Bring the state to clock `now` and every event stored so far; the users whose
        aggregates changed are added to each view's dirty users."""
        self._setup(con)
        seq = newest_seq(con, self.last_seq)
        parts, params = self._delta(now, seq)
        if parts:
            self._apply(con, " UNION ALL ".join(parts), params, now, seq)
        self.last_seq, self.last_now = seq, now

    def _delta(self, now: datetime, seq: int) -> tuple[list[str], list[Any]]:
        """SELECTs of the events entering (sign 1) or leaving (-1) each window."""
        cols = "user_id, session_id, action, device, ts"
        parts: list[str] = []
        params: list[Any] = []
        for days, micros in self.spans.items():
            span = timedelta(microseconds=micros)
            if seq > self.last_seq:  # new events inside the window
                parts.append(f"SELECT {cols}, {days} AS window_days, 1 AS sign FROM "
                             f"flashrec_events WHERE seq > {self.last_seq} AND seq <= {seq} "
                             "AND ts > ?")  # fmt: skip
                params.append(now - span)
            if self.last_now is None or now == self.last_now or not self.last_seq:
                continue
            old, new = self.last_now - span, now - span  # the window's edge moved
            lo, hi, sign = (old, new, -1) if new > old else (new, old, 1)
            parts.append(f"SELECT {cols}, {days} AS window_days, {sign} AS sign FROM "
                         "flashrec_events WHERE "
                         f"seq <= {self.last_seq} AND ts > ? AND ts <= ?")  # fmt: skip
            params += [lo, hi]
        return parts, params

    def _apply(self, con: duckdb.DuckDBPyConnection, delta: str, params: list[Any],
               now: datetime, seq: int) -> None:  # fmt: skip
        counts = ", ".join(f"CAST(sum(sign) FILTER (WHERE {cond}) AS BIGINT) AS {c}"
                           for c, cond in COUNTS.items())  # fmt: skip
        newest = ", ".join(f"max(ts) FILTER (WHERE sign > 0 AND {cond}) AS {c}"
                           for c, (_, cond) in NEWEST.items())  # fmt: skip
        # per (session, window, purchase hour): purchases per hour come from the same scan
        con.execute(
            "CREATE OR REPLACE TEMP TABLE __cust_d0 AS SELECT user_id, session_id, "
            "window_days, CASE WHEN action = 'purchase' THEN CAST(hour(ts) AS INTEGER) END "
            f"AS buy_hour, {counts}, {newest}, min(ts) FILTER (WHERE sign > 0) AS first_at, "
            f"bool_or(sign < 0) AS shrank FROM ({delta}) GROUP BY ALL", params)  # fmt: skip
        sums = ", ".join(f"CAST(sum({c}) AS BIGINT) AS {c}" for c in COUNTS)
        maxes = ", ".join(f"max({c}) AS {c}" for c in NEWEST)
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE __cust_delta AS SELECT user_id, session_id, "
            f"window_days, {sums}, {maxes}, min(first_at) AS first_at, bool_or(shrank) AS shrank "
            "FROM __cust_d0 GROUP BY ALL")  # fmt: skip
        self._merge_sessions(con, now, seq)
        self._merge_buys(con)
        for name in self.views:
            con.execute(f"INSERT INTO {dirty(name)} SELECT DISTINCT user_id FROM __cust_delta")

    def _merge_sessions(self, con: duckdb.DuckDBPyConnection, now: datetime, seq: int) -> None:
        keys = ("user_id", "session_id", "window_days")
        key_cols, joined = _full_join(SESSIONS, "__cust_delta", keys, "session_id")
        sums = ", ".join(f"coalesce(o.{c}, 0) + coalesce(d.{c}, 0) AS {c}" for c in COUNTS)
        newest = ", ".join(f"CASE WHEN {c} > 0 THEN greatest(o_{m}, d_{m}) END AS {m}"
                           for m, (c, _) in NEWEST.items())  # fmt: skip
        pairs = ", ".join(f"o.{m} AS o_{m}, d.{m} AS d_{m}" for m in NEWEST)
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE __cust_merged AS SELECT {', '.join(keys)}, "
            f"{', '.join(COUNTS)}, {newest}, CASE WHEN n > 0 AND NOT shrank THEN first_at END "
            "AS first_at, n > 0 AND shrank AS refirst FROM ("
            f"SELECT {key_cols}, {sums}, {pairs}, least(o.first_at, d.first_at) AS first_at, "
            f"coalesce(d.shrank, false) AS shrank FROM {joined})"
        )  # fmt: skip
        self._refirst(con, now, seq)
        columns = ", ".join((*keys, *COUNTS, *NEWEST, "first_at"))
        _replace(con, SESSIONS, "__cust_delta", "session_id",
                 f"SELECT {columns} FROM __cust_merged WHERE n > 0")  # fmt: skip

    def _refirst(self, con: duckdb.DuckDBPyConnection, now: datetime, seq: int) -> None:
        """The oldest time left of sessions whose oldest events left a window."""
        hi = con.execute("SELECT max(last_seen_at) FROM __cust_merged WHERE refirst").fetchall()
        if hi[0][0] is None:
            return
        # scanned from the widest window's edge; each session's own edge is applied per row
        start = now - timedelta(microseconds=max(self.spans.values()))
        span = " ".join(f"WHEN {d} THEN {us}" for d, us in self.spans.items())
        con.execute(
            "UPDATE __cust_merged AS m SET first_at = f.first_at FROM ("
            "SELECT r.user_id, r.session_id, r.window_days, min(e.ts) AS first_at "
            "FROM flashrec_events AS e JOIN (SELECT user_id, session_id, window_days "
            "FROM __cust_merged WHERE refirst) AS r "
            "ON e.session_id = r.session_id AND e.user_id = r.user_id "
            f"WHERE e.seq <= {seq} AND e.ts > ? AND e.ts <= ? "
            "AND e.ts > CAST(? AS TIMESTAMP) - "
            f"to_microseconds(CASE r.window_days {span} END) "
            "GROUP BY ALL) AS f WHERE m.user_id = f.user_id AND m.session_id = f.session_id "
            "AND m.window_days = f.window_days", [start, hi[0][0], now])  # fmt: skip

    def _merge_buys(self, con: duckdb.DuckDBPyConnection) -> None:
        con.execute("CREATE OR REPLACE TEMP TABLE __cust_buys_delta AS SELECT user_id, "
                    "window_days, buy_hour AS hour_of_day, CAST(sum(buys) AS BIGINT) AS "
                    "purchases FROM __cust_d0 WHERE buy_hour IS NOT NULL GROUP BY ALL")  # fmt: skip
        key_cols, joined = _full_join(BUY_HOURS, "__cust_buys_delta",
                                      ("user_id", "window_days", "hour_of_day"), "user_id")
        con.execute(f"CREATE OR REPLACE TEMP TABLE __cust_buys_merged AS SELECT {key_cols}, "
                    "coalesce(o.purchases, 0) + coalesce(d.purchases, 0) AS purchases "
                    f"FROM {joined}")  # fmt: skip
        _replace(con, BUY_HOURS, "__cust_buys_delta", "user_id",
                 "SELECT * FROM __cust_buys_merged WHERE purchases <> 0")

    # the views' rows, for all users or for those in table `keys` (column k) ----------------
    @staticmethod
    def features_sql(keys: str | None = None) -> str:
        where = f"WHERE user_id IN (SELECT k FROM {keys})" if keys else ""
        c = {"product_views": "views", "cart_adds": "carts", "purchases": "buys",
             "views_mobile": "views_mobile", "views_desktop": "views_desktop",
             "purchases_mobile": "buys_mobile", "purchases_desktop": "buys_desktop"}  # fmt: skip
        sums = ", ".join(f"CAST(sum({src}) AS BIGINT) AS {col}" for col, src in c.items())
        maxes = ", ".join(f"max({m}) AS {m}" for m in NEWEST)
        return (f"SELECT user_id, window_days, count(*) AS sessions, {sums}, {maxes} "
                f"FROM {SESSIONS} {where} GROUP BY user_id, window_days")  # fmt: skip

    @staticmethod
    def hours_sql(keys: str | None = None) -> str:
        where = f"WHERE user_id IN (SELECT k FROM {keys})" if keys else ""
        return (
            "SELECT user_id, window_days, hour_of_day, CAST(sum(visits) AS HUGEINT) AS visits, "
            "CAST(sum(purchases) AS HUGEINT) AS purchases FROM ("
            "SELECT user_id, window_days, CAST(hour(first_at) AS INTEGER) AS hour_of_day, "
            f"count(*) AS visits, 0 AS purchases FROM {SESSIONS} {where} GROUP BY ALL "
            "UNION ALL SELECT user_id, window_days, hour_of_day, 0, purchases "
            f"FROM {BUY_HOURS} {where}) GROUP BY ALL"
        )  # fmt: skip


def _full_join(table: str, delta: str, keys: tuple[str, ...], by: str) -> tuple[str, str]:
    """(key columns, FROM clause): the rows of `table` whose `by` is in `delta` (as `o`),
    full-joined with `delta` (as `d`) on `keys`."""
    key_cols = ", ".join(f"coalesce(o.{k}, d.{k}) AS {k}" for k in keys)
    on = " AND ".join(f"o.{k} = d.{k}" for k in keys)
    return key_cols, (f"(SELECT * FROM {table} WHERE {by} IN (SELECT {by} FROM {delta})) "
                      f"AS o FULL JOIN {delta} AS d ON {on}")  # fmt: skip


def _replace(con: duckdb.DuckDBPyConnection, table: str, delta: str, by: str,
             rows: str) -> None:  # fmt: skip
    """Replace the rows of `table` whose `by` is in `delta` with those of query `rows` (which
    must not read `table`)."""
    con.execute(f"DELETE FROM {table} WHERE {by} IN (SELECT {by} FROM {delta})")
    con.execute(f"INSERT INTO {table} {rows}")


def dirty(view: str) -> str:
    """The table of users changed since view `view` last read its rows."""
    return f"__cust_dirty_{view}"


class CustomerView(Defaults):
    """ViewRunner override of one customer view over the shared state: `override` gives
    every row, `touched` the rows of the users changed since this view's last refresh."""

    def __init__(self, name: str, state: CustomerState, rows: Callable[[str | None], str],
                 windows: tuple[int, ...] | None = None) -> None:  # fmt: skip
        self.name = name
        self.state = state
        self._all_rows = rows  # SQL of the view's rows (all, or the users in a table)
        self.windows = windows or state.windows  # the view's own windows (labels)
        state.views.add(name)
        # it reports no changes of its own (`touched` gives its changed users' rows instead)
        self.COLUMNS: list[str] = []
        self.TYPES: list[str] = []

    def _rows(self, keys: str | None) -> str:
        """SQL of the view's rows, of its own windows where the state keeps more."""
        sql = self._all_rows(keys)
        if set(self.windows) == set(self.state.windows):
            return sql
        days = ", ".join(str(d) for d in self.windows)
        return f"SELECT * FROM ({sql}) WHERE window_days IN ({days})"

    def override(self, con: duckdb.DuckDBPyConnection, now: datetime) -> str:
        self.state.advance(con, now)
        con.execute(f"DELETE FROM {dirty(self.name)}")
        return self._rows(None)

    def touched(self, con: duckdb.DuckDBPyConnection, now: datetime, table: str) -> str:
        """Fill `table` (column k) with the users to recompute; returns their rows' SQL."""
        self.state.advance(con, now)
        con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS "
                    f"SELECT DISTINCT user_id AS k FROM {dirty(self.name)}")  # fmt: skip
        con.execute(f"DELETE FROM {dirty(self.name)}")
        return self._rows(table)

    # the rest of the Maintainer protocol: maintainers.Defaults
    @property
    def by_touched_keys(self) -> bool:
        return True


def parameters(view: sqlfiles.SqlObject) -> tuple[tuple[int, int], ...]:
    """The look-back windows of a customer view's SQL, (label, microseconds) each;
    ShapeError when its query is not the one this module reproduces."""
    if view.name not in SHAPES:
        raise sqlfiles.ShapeError(f"the customer maintainer reproduces {' and '.join(SHAPES)}")
    found = sqlfiles.match(sqlfiles.view_query(view), SHAPES[view.name], PARAMETERS)
    windows = found[:8]
    if view.name == "customer_hours" and tuple(p.value for p in found[8:]) != HOURS_COUNTS:
        raise sqlfiles.ShapeError("its visits and purchases columns must stay 1 AS visits, "
                                  "0 AS purchases and 0 AS visits, 1 AS purchases")
    out = []
    for label, span in zip(windows[::2], windows[1::2], strict=True):
        if not label.value.is_integer() or label.value <= 0 or span.value <= 0:
            raise sqlfiles.ShapeError(f"its window {label.sql} AS window_days looks back "
                                      f"{span.sql}: the label must be a whole number above 0 "
                                      "and the look-back longer than 0")  # fmt: skip
        out.append((int(label.value), round(span.value * 1_000_000)))
    labels = [d for d, _ in out]
    if len(set(labels)) != len(labels):
        raise sqlfiles.ShapeError(f"its windows {labels} repeat a label")
    return tuple(out)


def joint_problem(views: list[sqlfiles.SqlObject]) -> str | None:
    """Why these customer views (each of the right shape) cannot share one state: a label
    that looks back differently in each. None: they can."""
    spans: dict[int, set[int]] = {}
    for view in views:
        for label, micros in parameters(view):
            spans.setdefault(label, set()).add(micros)
    clash = sorted(label for label, found in spans.items() if len(found) > 1)
    if clash:
        return f"window_days {clash} must look back as far in both customer views"
    return None


def maintainers(views: list[sqlfiles.SqlObject]) -> dict[str, CustomerView]:
    """Overrides for the customer views among these, with the windows of their SQL (one
    shared state keeps every window of either); ShapeError when a view's query is not the
    one this module reproduces."""
    windows = {v.name: parameters(v) for v in views if v.name in SHAPES}
    if not windows:
        return {}
    state = CustomerState(tuple(sorted(set().union(*windows.values()))))
    rows = {"customer_features": state.features_sql, "customer_hours": state.hours_sql}
    return {n: CustomerView(n, state, rows[n], tuple(d for d, _ in w))
            for n, w in windows.items()}  # fmt: skip
