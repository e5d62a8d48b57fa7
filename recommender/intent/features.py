"""Purchase-intent features of a live session, from the views of sql/.

The features are the rows of three views at one clock: `session_features` (the session so
far), `customer_features` and `customer_hours` (the customer's look-back windows of
1, 7, 14 and 30 days). `feature_matrix` turns those rows into model inputs; the live scorer
feeds it rows read from PostgreSQL, training feeds it the same views computed by DuckDB from
the same SQL text (`SqlSnapshots`), so training and serving share one definition.

A session is scored while it is open (an event in the last 30 minutes), not yet bought, and
not a bot (`is_bot`, or more than MAX_SESSION_EVENTS events: absurd volume for one id).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from recommender.events import SESSION_GAP

WINDOWS = (1, 7, 14, 30)
VIEWS = ("session_features", "customer_features", "customer_hours")
MAX_SESSION_EVENTS = 1000
DEVICES = ("mobile", "desktop", "tablet")
NEVER_S = 31 * 86_400.0  # "time since" when nothing happened in the 30-day window

SESSION_NAMES = [
    "event_count", "view_count", "cart_add_count", "distinct_products",
    "distinct_categories", "mean_gap_s", "min_gap_s", "duration_s", "idle_s",
    "start_hour", "start_hour_sin", "start_hour_cos", "weekday",
    *(f"device_{d}" for d in DEVICES),
]  # fmt: skip
CUSTOMER_NAMES = [
    f"{name}_{w}d"
    for w in WINDOWS
    for name in ("sessions", "product_views", "cart_adds", "purchases", "mobile_view_share",
                 "desktop_purchase_share", "visit_hour_share", "purchase_hour_share")
] + ["since_last_cart_s", "since_last_purchase_days", "device_purchase_share"]
FEATURE_NAMES = SESSION_NAMES + CUSTOMER_NAMES

Row = dict[str, Any]


@dataclass
class Snapshot:
    """The three views' rows at one clock."""

    clock: datetime
    sessions: list[Row]
    customers: list[Row]
    hours: list[Row]


def scorable(row: Row, clock: datetime) -> bool:
    """Whether a session_features row is an open, human, not yet bought session at `clock`."""
    return (
        not row["is_bot"]
        and row["event_count"] <= MAX_SESSION_EVENTS
        and (row["purchase_count"] or 0) == 0
        and _naive(row["last_event_at"]) > clock - SESSION_GAP
    )


def _naive(value: datetime) -> datetime:
    """Naive UTC (PostgreSQL gives aware timestamps, DuckDB naive ones)."""
    if value.tzinfo is not None:
        offset = value.utcoffset() or timedelta(0)
        return value.replace(tzinfo=None) - offset
    return value


def _share(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


def feature_matrix(snapshot: Snapshot, only: Iterable[str] | None = None
                   ) -> tuple[list[Row], np.ndarray]:
    """(scorable session_features rows by session id, their features in FEATURE_NAMES order).

    `only` limits the result to these session ids.
    """
    clock = _naive(snapshot.clock)
    wanted = set(only) if only is not None else None
    customers = {(r["user_id"], int(r["window_days"])): r for r in snapshot.customers}
    hours: dict[tuple[str, int], dict[int, tuple[int, int]]] = {}
    for r in snapshot.hours:
        hours.setdefault((r["user_id"], int(r["window_days"])), {})[int(r["hour_of_day"])] = (
            int(r["visits"]), int(r["purchases"]))
    rows = sorted(
        (r for r in snapshot.sessions
         if scorable(r, clock) and (wanted is None or r["session_id"] in wanted)),
        key=lambda r: r["session_id"],
    )
    out = np.zeros((len(rows), len(FEATURE_NAMES)), dtype=np.float64)
    for i, r in enumerate(rows):
        out[i] = _session_part(r, clock) + _customer_part(r, clock, customers, hours)
    return rows, out


def _session_part(r: Row, clock: datetime) -> list[float]:
    start, last = _naive(r["session_start"]), _naive(r["last_event_at"])
    angle = 2 * math.pi * start.hour / 24
    device = r["device"]
    return [
        float(r["event_count"]), float(r["view_count"]), float(r["cart_add_count"]),
        float(r["distinct_products"]), float(r["distinct_categories"]),
        float(r["mean_gap_s"] or 0.0), float(r["min_gap_s"] or 0.0),
        (last - start).total_seconds(), (clock - last).total_seconds(),
        float(start.hour), math.sin(angle), math.cos(angle), float(start.weekday()),
        *(float(device == d) for d in DEVICES),
    ]  # fmt: skip


def _customer_part(r: Row, clock: datetime, customers: dict[tuple[str, int], Row],
                   hours: dict[tuple[str, int], dict[int, tuple[int, int]]]) -> list[float]:
    user, hour = r["user_id"], clock.hour
    out: list[float] = []
    for w in WINDOWS:
        c = customers.get((user, w))
        if c is None:
            out.extend([0.0] * 8)
            continue
        h = hours.get((user, w), {})
        visits = sum(v for v, _ in h.values())
        buys = sum(p for _, p in h.values())
        near_buys = sum(h.get((hour + d) % 24, (0, 0))[1] for d in (-1, 0, 1))
        out.extend([
            float(c["sessions"]), float(c["product_views"]), float(c["cart_adds"]),
            float(c["purchases"]),
            _share(c["views_mobile"], c["product_views"]),
            _share(c["purchases_desktop"], c["purchases"]),
            _share(h.get(hour, (0, 0))[0], visits),
            _share(near_buys, buys),
        ])  # fmt: skip
    month = customers.get((user, 30))
    last_cart = month and month["last_cart_at"]
    last_buy = month and month["last_purchase_at"]
    since_cart = (clock - _naive(last_cart)).total_seconds() if last_cart else NEVER_S
    since_buy = (clock - _naive(last_buy)).total_seconds() if last_buy else NEVER_S
    on_device = 0.0
    if month and month["purchases"] and r["device"] in ("mobile", "desktop"):
        on_device = _share(month[f"purchases_{r['device']}"], month["purchases"])
    return out + [since_cart, since_buy / 86_400.0, on_device]


# --- the same SQL on DuckDB, at any clock (training, tests) ---------------------------------


class SqlSnapshots:
    """The views of sql/ (VIEWS) computed by DuckDB over a fixed list of events at any clock.

    Only the events of customers with a session open at the clock are fed to the SQL: every
    view groups by customer or session, so their rows are the same as over all events.
    """

    def __init__(self, events: Sequence[Row]) -> None:
        import duckdb

        from recommender import sqlfiles
        from recommender.engine.store import events_table

        views = {v.name: v for v in sqlfiles.views()}
        missing = [n for n in VIEWS if n not in views]
        if missing:
            raise RuntimeError(f"sql/ lacks the view(s) {', '.join(missing)}")
        self._sqlfiles = sqlfiles
        self.sql = {n: sqlfiles.to_duckdb(sqlfiles.view_query(views[n])) for n in VIEWS}
        self.con = duckdb.connect()
        self.con.execute("SET threads = 1")
        if events:
            self.con.register("incoming", events_table(list(events), 1))
            self.con.execute("CREATE TABLE events AS SELECT * EXCLUDE (seq) FROM incoming "
                             "ORDER BY ts")
            self.con.unregister("incoming")
        else:
            self.con.execute(
                "CREATE TABLE events (event_id VARCHAR, session_id VARCHAR, user_id VARCHAR, "
                "product_id VARCHAR, product_name VARCHAR, category VARCHAR, action VARCHAR, "
                "ts TIMESTAMP, device VARCHAR, price DOUBLE)")

    def event_times(self) -> np.ndarray:
        """Sorted event times (datetime64[us])."""
        rows = self.con.execute("SELECT ts FROM events ORDER BY ts").fetchnumpy()
        return rows["ts"].astype("datetime64[us]")

    def at(self, clock: datetime) -> Snapshot:
        """The views at `clock` (naive UTC), over customers with a session open then."""
        c = f"TIMESTAMP '{clock:%Y-%m-%d %H:%M:%S.%f}'"
        self.con.execute(
            f"CREATE OR REPLACE TEMP TABLE clickstream AS SELECT * FROM events "
            f"WHERE ts <= {c} AND ts > {c} - INTERVAL 31 DAY AND user_id IN "
            f"(SELECT user_id FROM events WHERE ts <= {c} AND ts > {c} - INTERVAL 30 MINUTE)")
        rows = [self._rows(self._sqlfiles.bind_now(self.sql[n], clock)) for n in VIEWS]
        return Snapshot(clock, *rows)

    def _rows(self, sql: str) -> list[Row]:
        cur = self.con.execute(sql)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def close(self) -> None:
        self.con.close()
