"""trending_by_category maintained incrementally, equal to the SQL of
sql/040_trending_by_category.sql.

State: per (category, window) group and product, the human events' counts per action and per
product name, for the windows that start within the horizon. A refresh adds the events
stored since the last one (sessions that session_features flags bot now left out), moves the
earlier events of sessions whose bot flag flipped out of (or back into) the counts, drops the
windows that left the horizon, and ranks again only the groups that changed. Its work follows
the events that arrived; the SQL path aggregates every event of each touched window again.

The weights and tie order are those of the SQL this was written for: the view's query must
have that shape (`SHAPE`); the window size, the horizon and the number of products per group
are read from it.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import duckdb
import pyarrow as pa

from recommender import sqlfiles
from recommender.engine.maintainers import BotsOf, Defaults, FirstClick
from recommender.engine.refresh import bot_sessions, rows_table
from recommender.engine.store import newest_seq

VIEW = "trending_by_category"
# sqlfiles.shape of the sql/040 query this class reproduces; its parameters, in query order
SHAPE = "9a7d89c49532d7ed"
PARAMETERS = "the TUMBLE size, the horizon's INTERVAL, the highest rank"

Group = tuple[str, datetime]  # (category, window_start)
# product -> [views, cart adds, purchases, {product_name: events}]
Products = dict[str, list[Any]]


def _unknown(_sessions: Iterable[str], _seq: int) -> datetime | None:
    return None


class TrendingMaintainer(Defaults):
    """The trending_by_category view over the engine's stored events, updated per refresh."""

    COLUMNS = ["category", "rank", "product_id", "product_name", "engagement_score",
               "view_count", "cart_adds", "window_start"]  # fmt: skip
    TYPES = ["VARCHAR", "BIGINT", "VARCHAR", "VARCHAR", "HUGEINT", "HUGEINT", "HUGEINT",
             "TIMESTAMP"]  # fmt: skip

    def __init__(self, window: timedelta, horizon: timedelta, top: int = 10) -> None:
        self.window_us = int(window / timedelta(microseconds=1))
        self.horizon = horizon
        self.top = top  # products per group
        self.groups: dict[Group, Products] = {}
        self.published: dict[Group, list[tuple[Any, ...]]] = {}
        self.bots: frozenset[str] = frozenset()  # session_features' bots at the last refresh
        self.last_seq = 0
        self.row_count = 0
        # where the events of sessions whose bot flag flipped are read (set by the runner:
        # its shared scan of the touched sessions when it holds them all)
        self.flip_source = "flashrec_events"
        self.bots_of: BotsOf = bot_sessions  # the runner's kept set once it refreshes this view
        # the oldest click of these sessions among the events up to seq (None: not known),
        # so a flip's events are read from there on instead of from the horizon's start
        self.first_click: FirstClick = _unknown

    @classmethod
    def for_view(cls, view: sqlfiles.SqlObject) -> TrendingMaintainer:
        """A maintainer for the view, with the parameters of its SQL (ShapeError when its
        query is not the one this class reproduces)."""
        return cls(*parameters(view))

    def _fetch(self, con: duckdb.DuckDBPyConnection, where: str, params: list[Any],
               since: datetime, source: str = "flashrec_events",
               ts_from: datetime | None = None) -> list[tuple[Any, ...]]:  # fmt: skip
        """Events of `source` matching `where` in windows starting after `since` (none
        older than `ts_from`, where given), counted per session, group, product and name."""
        start = sqlfiles.window_start_sql("ts", self.window_us)
        lowest = since if ts_from is None else max(since, ts_from)
        return con.execute(
            f"SELECT session_id, category, {start} AS window_start, product_id, product_name, "
            "count(*) FILTER (WHERE action = 'view'), "
            "count(*) FILTER (WHERE action = 'add_to_cart'), "
            "count(*) FILTER (WHERE action = 'purchase') "
            f"FROM {source} WHERE {where} AND ts >= ? AND {start} > ? "
            "GROUP BY ALL", [*params, lowest, since],
        ).fetchall()  # fmt: skip

    def _add(self, rows: list[tuple[Any, ...]], sign: int, touched: set[Group]) -> None:
        for _session, category, start, product, name, views, carts, buys in rows:
            group = (category, start)
            products = self.groups.setdefault(group, {})
            counts = products.get(product)
            if counts is None:
                counts = products[product] = [0, 0, 0, {}]
            counts[0] += sign * views
            counts[1] += sign * carts
            counts[2] += sign * buys
            names = counts[3]
            left = names.get(name, 0) + sign * (views + carts + buys)
            if left:
                names[name] = left
            else:
                names.pop(name, None)
            if not names:
                del products[product]
                if not products:
                    del self.groups[group]
            touched.add(group)

    def advance(self, con: duckdb.DuckDBPyConnection, now: datetime) -> set[Group]:
        """Bring the counts to clock `now`; returns the groups whose counts changed."""
        seq = newest_seq(con, self.last_seq)
        since = now - self.horizon
        touched = {g for g in self.published if g[1] <= since}
        for group in [g for g in self.groups if g[1] <= since]:
            del self.groups[group]
        bots = self.bots_of(con)
        flips = bots ^ self.bots
        if flips and self.last_seq:  # their counted events move out of / into the counts
            rows = self._fetch(con, f"seq <= {self.last_seq} AND list_contains(?, session_id)",
                               [sorted(flips)], since, self.flip_source,
                               self.first_click(flips, self.last_seq))  # fmt: skip
            for to_bot in (True, False):
                part = [r for r in rows if (r[0] in bots) == to_bot]
                self._add(part, -1 if to_bot else 1, touched)
        rows = self._fetch(con, f"seq > {self.last_seq} AND seq <= {seq}", [], since)
        self._add([r for r in rows if r[0] not in bots], 1, touched)
        self.bots, self.last_seq = bots, seq
        return touched

    def _top(self, group: Group) -> list[tuple[Any, ...]]:
        """The group's rows: its `top` products by engagement, ties by product_id."""
        products = self.groups.get(group)
        if not products:
            return []

        def order(item: tuple[str, list[Any]]) -> tuple[int, str]:
            c = item[1]
            return (-(c[0] + 3 * c[1] + 5 * c[2]), item[0])

        category, start = group
        return [(category, rank, product, max(c[3]), c[0] + 3 * c[1] + 5 * c[2], c[0], c[1],
                 start)
                for rank, (product, c) in enumerate(heapq.nsmallest(self.top, products.items(),
                                                                    key=order), 1)]  # fmt: skip

    def delta(self, con: duckdb.DuckDBPyConnection,
              now: datetime) -> tuple[list[tuple], list[tuple], int]:  # fmt: skip
        """Advance, then (inserts, deletes, rows) against the rows published last time."""
        inserts: list[tuple[Any, ...]] = []
        deletes: list[tuple[Any, ...]] = []
        for group in self.advance(con, now):
            new = self._top(group)
            old = self.published.pop(group, [])
            if new:
                self.published[group] = new
            kept = set(old) & set(new)
            deletes += [r for r in old if r not in kept]
            inserts += [r for r in new if r not in kept]
            self.row_count += len(new) - len(old)
        return inserts, deletes, self.row_count

    def override(self, con: duckdb.DuckDBPyConnection, now: datetime) -> str:
        """ViewRunner override: the view built from scratch, as a registered Arrow table."""
        self.groups, self.published, self.bots = {}, {}, frozenset()
        self.last_seq, self.row_count = 0, 0
        self.delta(con, now)
        rows = [r for group in sorted(self.published) for r in self.published[group]]
        arrow = [pa.string(), pa.int64(), pa.string(), pa.string(), pa.int64(), pa.int64(),
                 pa.int64(), pa.timestamp("us")]  # fmt: skip
        con.register("__trending_arrow", rows_table(self.COLUMNS, arrow, rows))
        casts = ", ".join(f"CAST({c} AS {t}) AS {c}"
                          for c, t in zip(self.COLUMNS, self.TYPES, strict=True))  # fmt: skip
        return f"SELECT {casts} FROM __trending_arrow"

    # the rest of the Maintainer protocol: maintainers.Defaults
    @property
    def reports_changes(self) -> bool:
        return True

    def read_first_clicks(self, first_click: FirstClick) -> None:
        self.first_click = first_click

    def read_bots(self, bots_of: BotsOf) -> None:
        self.bots_of = bots_of

    def read_flips_from(self, table: str) -> None:
        self.flip_source = table


def parameters(view: sqlfiles.SqlObject) -> tuple[timedelta, timedelta, int]:
    """(window size, horizon, products per group) of the view's SQL; ShapeError when its
    query is not the one this module reproduces."""
    if view.name != VIEW:
        raise sqlfiles.ShapeError(f"the trending maintainer reproduces {VIEW} only")
    size, horizon, rank = sqlfiles.match(sqlfiles.view_query(view), SHAPE, PARAMETERS)
    if size.value <= 0:
        raise sqlfiles.ShapeError(f"its TUMBLE size ({size.sql}) must be longer than 0")
    # `rank <= x` keeps the ranks 1 .. floor(x)
    return timedelta(seconds=size.value), timedelta(seconds=horizon.value), max(0, int(rank.value))


def maintainers(views: list[sqlfiles.SqlObject]) -> dict[str, TrendingMaintainer]:
    """The maintainer of the trending view among these (ShapeError: its SQL differs)."""
    return {v.name: TrendingMaintainer.for_view(v) for v in views if v.name == VIEW}
