"""co_view_pairs maintained incrementally (Numba), equal to the SQL of sql/045_co_view_pairs.sql.

State: the view events inside the window, in chunks sorted by time; per (session, product)
the number of those events; per session the products it viewed; per product pair the number
of human sessions that viewed both. A (session, product) entering the window adds one to its
pair with every other product of the session; leaving removes it. Work per refresh is
proportional to the events that enter or leave the window, not to the window's size.
Bots: the sessions `session_features.is_bot` flags (as of that view's last refresh) count for
no pair; a session that turns bot (or back) removes (or adds) all its pairs at once.
Product names: the greatest name among the window's view events of the product (as the SQL).
The window and the least number of sessions of a pair are read from the view's SQL.
"""

from __future__ import annotations

import logging
import math
import time
from datetime import datetime, timedelta

import numba as nb
import numpy as np
import pyarrow as pa
from numba import types
from numba.typed import Dict, List

from recommender import sqlfiles
from recommender.engine import intmap
from recommender.engine.maintainers import BotsOf, Defaults
from recommender.engine.refresh import bot_sessions, rows_table

log = logging.getLogger(__name__)

PAIR_SHIFT = np.int64(1 << 31)
VIEW = "co_view_pairs"
# sqlfiles.shape of the sql/045 query this module reproduces; its parameters, in query order
SHAPE = "4f0b0fd537fce150"
PARAMETERS = "the window's INTERVAL, the HAVING threshold"


@nb.njit(cache=True)
def _apply(sessions, products, sign, session_products, session_counts, cells, meta, changed,
           bots, emptied, start):
    """Add (sign=+1) or remove (-1) view events from `start` on; pair keys touched go to
    `changed`. Returns the index of the first event not applied: events.size when done, less
    when the pair table needs room first (grow it and call again from there).

    Per session (a dense id), its products in the window and their view events. Sessions in
    `bots` keep their products but count for no pair. Sessions left with no event in the
    window go to `emptied`."""
    for i in range(start, sessions.shape[0]):
        s = sessions[i]
        p = products[i]
        while s >= len(session_products):
            session_products.append(List.empty_list(types.int64))
            session_counts.append(List.empty_list(types.int64))
        items = session_products[s]
        counts = session_counts[s]
        if not intmap.room(cells, meta, len(items) + 1):
            return i
        at = -1
        for j in range(len(items)):
            if items[j] == p:
                at = j
                break
        if at < 0:  # product p enters session s (only a view can be new)
            if s not in bots:
                for q in items:
                    _add_pair(cells, meta, changed, p, q, 1)
            items.append(p)
            counts.append(sign[i])
            continue
        counts[at] += sign[i]
        if counts[at] == 0:  # product p leaves session s
            last = len(items) - 1
            items[at] = items[last]
            counts[at] = counts[last]
            items.pop()
            counts.pop()
            if s not in bots:
                for q in items:
                    _add_pair(cells, meta, changed, p, q, -1)
            if len(items) == 0:
                emptied[s] = True
    return sessions.shape[0]


@nb.njit(cache=True)
def _add_pair(cells, meta, changed, p, q, sign):
    key = min(p, q) * PAIR_SHIFT + max(p, q)
    intmap.add(cells, meta, key, sign)
    changed[key] = True


@nb.njit(cache=True)
def _set_bots(sessions, to_bot, start, bots, session_products, cells, meta, changed):
    """Mark sessions as bots (to_bot) or humans again from `start` on, removing or adding
    all their pairs. Returns the index of the first session not done (as `_apply`)."""
    sign = -1 if to_bot else 1
    for i in range(start, sessions.shape[0]):
        s = sessions[i]
        n = len(session_products[s]) if s < len(session_products) else 0
        if not to_bot and not intmap.room(cells, meta, n * (n - 1) // 2):
            return i
        if to_bot:
            bots[s] = True
        else:
            del bots[s]
        if n:
            items = session_products[s]
            for a in range(n):
                for b in range(a + 1, n):
                    _add_pair(cells, meta, changed, items[a], items[b], sign)
    return sessions.shape[0]


@nb.njit(cache=True)
def _drain_keys(changed):
    out = np.empty(len(changed), np.int64)
    i = 0
    for k in changed.keys():
        out[i] = k
        i += 1
    changed.clear()
    return out


@nb.njit(cache=True)
def _member(d, keys):
    """keys[i] in d, for each i (typed-dict lookups from Python compile on first use and
    cost microseconds each)."""
    out = np.zeros(keys.shape[0], np.bool_)
    for i in range(keys.shape[0]):
        out[i] = keys[i] in d
    return out


@nb.njit(cache=True)
def _release_emptied(emptied, session_products, bots):
    """The sessions of `emptied` left with no product (unmarked as bots); clears `emptied`."""
    out = np.empty(len(emptied), np.int64)
    n = 0
    for s in emptied.keys():
        if len(session_products[s]) == 0:
            if s in bots:
                del bots[s]
            out[n] = s
            n += 1
    emptied.clear()
    return out[:n]


def _drain(changed) -> np.ndarray:
    """The pair keys touched since the last call (and forget them)."""
    return _drain_keys(changed) if len(changed) else np.empty(0, np.int64)


class Interner:
    """Strings to dense int ids and back; released ids are given out again."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.names: list[str | None] = []
        self.free: list[int] = []

    def __call__(self, values: list[str]) -> np.ndarray:
        ids, names, free = self.ids, self.names, self.free
        out = np.empty(len(values), np.int64)
        for i, v in enumerate(values):
            x = ids.get(v)
            if x is None:
                if free:
                    x = free.pop()
                    names[x] = v
                else:
                    x = len(names)
                    names.append(v)
                ids[v] = x
            out[i] = x
        return out

    def release(self, x: int) -> None:
        name = self.names[x]
        if name is not None:
            del self.ids[name]
            self.names[x] = None
            self.free.append(x)


class CoViewMaintainer(Defaults):
    """The co_view_pairs view over the engine's stored events, updated per refresh."""

    def __init__(self, window: timedelta = timedelta(minutes=30), min_sessions: int = 3) -> None:
        self.window = window
        self.min_sessions = min_sessions  # pairs viewed by fewer human sessions have no row
        self.sessions = Interner()
        self.products = Interner()  # product_id strings
        self.name_keys = Interner()  # "product_id\x00product_name"
        self.name_count: dict[int, int] = {}  # name key -> view events in window
        self.product_names: dict[int, set[int]] = {}
        self.name_product: dict[int, int] = {}  # name key -> product
        self.live_name: dict[int, str] = {}  # product -> its greatest name in the window
        self.renamed: set[int] = set()  # products whose live name changed since delta()
        self._names_touched: set[int] = set()  # products whose names entered or left
        # per session id: its products in the window and their view events
        self.session_products = List.empty_list(types.ListType(types.int64))
        self.session_counts = List.empty_list(types.ListType(types.int64))
        self.pairs = intmap.IntCounts()  # pair key -> human sessions that viewed both
        self.changed = Dict.empty(types.int64, types.boolean)
        self.bots = Dict.empty(types.int64, types.boolean)
        self.bot_names: frozenset[str] = frozenset()  # session_features' bots at the last sync
        self.bots_of = bot_sessions  # the runner's kept set once it refreshes this view
        self.emptied = Dict.empty(types.int64, types.boolean)
        self.chunks: list[tuple[np.ndarray, ...]] = []  # (ts_us, session, product, name) sorted
        self.last_seq = 0
        self.published: dict[int, tuple] = {}  # pair key -> row as last returned
        self.pub_by_product: dict[int, set[int]] = {}  # product -> its published pair keys

    @classmethod
    def for_view(cls, view: sqlfiles.SqlObject) -> CoViewMaintainer:
        """A maintainer for the view, with the parameters of its SQL (ShapeError when its
        query is not the one this module reproduces)."""
        window, min_sessions = parameters(view)
        warm_up()
        return cls(window, min_sessions)

    def _update(self, s: np.ndarray, p: np.ndarray, n: np.ndarray, sign: int) -> None:
        if not len(s):
            return
        signs = np.full(len(s), sign, np.int64)
        done = 0
        while True:
            pairs = self.pairs
            done = _apply(s, p, signs, self.session_products, self.session_counts, pairs.cells,
                          pairs.meta, self.changed, self.bots, self.emptied, done)
            if done == len(s):
                break
            self._grow(0)
        keys, counts = np.unique(n, return_counts=True)
        name_count, touched = self.name_count, self._names_touched
        for k, c in zip(keys.tolist(), counts.tolist(), strict=True):
            before = name_count.get(k, 0)
            left = before + sign * c
            if left:
                name_count[k] = left
            else:
                name_count.pop(k, None)
            if not before or not left:
                touched.add(self.name_product[k])

    def advance(self, con, now: datetime) -> None:
        """Take the new view events from the store, then expire those out of the window."""
        since_epoch = now - self.window - datetime(1970, 1, 1)
        cutoff_us = int(since_epoch / timedelta(microseconds=1))
        rows = con.execute(
            "SELECT seq, epoch_us(ts) AS t_us, session_id, product_id, product_name "
            f"FROM flashrec_events WHERE seq > {self.last_seq} AND action = 'view' ORDER BY seq"
        ).fetchnumpy()
        chunk, arrived = None, []
        if len(rows["seq"]):
            self.last_seq = int(rows["seq"][-1])
            ts = rows["t_us"].astype(np.int64)
            keep = ts > cutoff_us
            ts = ts[keep]
            arrived = rows["session_id"][keep].tolist()
            sessions = self.sessions(arrived)
            products = self.products(rows["product_id"][keep].tolist())
            pid, pname = rows["product_id"][keep].tolist(), rows["product_name"][keep].tolist()
            names = self.name_keys([f"{a}\x00{b}" for a, b in zip(pid, pname, strict=True)])
            for prod, name in zip(products.tolist(), names.tolist(), strict=True):
                self.product_names.setdefault(prod, set()).add(name)
                self.name_product[name] = prod
            order = np.argsort(ts, kind="stable")
            chunk = (ts[order], sessions[order], products[order], names[order])
        # bot flags first: the new views of a session already flagged make no pair at all
        self._sync_bots(con, arrived)
        if chunk is not None:
            self._update(chunk[1], chunk[2], chunk[3], +1)
            self.chunks.append(chunk)
        kept = []
        for ts, s, p, n in self.chunks:
            cut = int(np.searchsorted(ts, cutoff_us, side="right"))
            if cut:
                self._update(s[:cut], p[:cut], n[:cut], -1)
            if cut < len(ts):
                kept.append((ts[cut:], s[cut:], p[cut:], n[cut:]))
        self.chunks = kept
        self._release_sessions()
        self._follow_names()

    def _follow_names(self) -> None:
        """Update the live names of products whose name keys entered or left the window."""
        for product in self._names_touched:
            name = self._name(product)
            if name == self.live_name.get(product):
                continue
            if product in self.live_name:  # its published pairs carry the old name
                self.renamed.add(product)
            if name is None:
                del self.live_name[product]
            else:
                self.live_name[product] = name
        self._names_touched.clear()

    def _sync_bots(self, con, arrived: list[str]) -> None:
        """Follow session_features.is_bot as the runner last computed it (none: no bots).

        Checked: sessions whose flag changed since the last sync, and sessions with views
        arriving now (one flagged while it had no view in the window is not marked yet)."""
        now_bots = self.bots_of(con)
        check = (now_bots ^ self.bot_names) | (now_bots.intersection(arrived))
        self.bot_names = now_bots
        known = self.sessions.ids
        names = [n for n in check if n in known]
        xs = np.array([known[n] for n in names], np.int64)
        flagged = _member(self.bots, xs).tolist() if len(xs) else []
        flips: dict[bool, list[int]] = {True: [], False: []}
        for name, x, was in zip(names, xs.tolist(), flagged, strict=True):
            if was != (name in now_bots):
                flips[name in now_bots].append(x)
        for to_bot, flip in flips.items():
            if flip:
                self._set_bots(np.array(sorted(flip), np.int64), to_bot)

    def _set_bots(self, sessions: np.ndarray, to_bot: bool) -> None:
        done = 0
        while True:
            pairs = self.pairs
            done = _set_bots(sessions, to_bot, done, self.bots, self.session_products,
                             pairs.cells, pairs.meta, self.changed)  # fmt: skip
            if done == len(sessions):
                return
            n = len(self.session_products[int(sessions[done])])
            self._grow(n * (n - 1) // 2)

    def _grow(self, extra: int) -> None:
        started = time.perf_counter()
        self.pairs.grow(extra)
        log.info("co-view pair table grown to %d slots for %d pairs (%.0f ms)",
                 self.pairs.cells.shape[0], len(self.pairs),
                 (time.perf_counter() - started) * 1000)  # fmt: skip

    def _release_sessions(self) -> None:
        """Forget sessions with no view left in the window: memory follows the window, not
        the number of sessions ever seen."""
        if not len(self.emptied):
            return
        for s in _release_emptied(self.emptied, self.session_products, self.bots).tolist():
            self.sessions.release(s)

    def _name(self, product: int) -> str | None:
        live = [self.name_keys.names[k] for k in self.product_names.get(product, ())
                if self.name_count.get(k, 0) > 0]  # fmt: skip
        return max(x.split("\x00", 1)[1] for x in live) if live else None

    def _row(self, key: int, count: int) -> tuple[str, str | None, str, str | None, int]:
        i, j = divmod(key, int(PAIR_SHIFT))
        x, y = self.products.names[i], self.products.names[j]
        if x > y:
            i, j, x, y = j, i, y, x
        return (x, self.live_name.get(i), y, self.live_name.get(j), count)

    def _publish(self, key: int, row: tuple | None) -> None:
        """Record `row` (None: no row) as the published row of pair `key`."""
        i, j = divmod(key, int(PAIR_SHIFT))
        if row is None:
            del self.published[key]
            for p in (i, j):
                self.pub_by_product[p].discard(key)
        else:
            if key not in self.published:
                for p in (i, j):
                    self.pub_by_product.setdefault(p, set()).add(key)
            self.published[key] = row

    def delta(self, con, now: datetime) -> tuple[list[tuple], list[tuple], int]:
        """Advance, then (inserts, deletes, rows) against the rows published last time."""
        self.advance(con, now)
        keys = _drain(self.changed)
        if self.renamed:  # a product's greatest name changed: its published pairs change too
            extra = [k for p in self.renamed for k in self.pub_by_product.get(p, ())]
            keys = np.unique(np.concatenate([keys, np.array(extra, np.int64)]))
            self.renamed.clear()
        inserts, deletes = [], []
        counts = self.pairs.get(keys)
        for key, count in zip(keys.tolist(), counts.tolist(), strict=True):
            old = self.published.get(key)
            new = self._row(key, count) if count >= self.min_sessions else None
            if old == new:
                continue
            if old is not None:
                deletes.append(old)
            if new is not None:
                inserts.append(new)
            self._publish(key, new)
        return inserts, deletes, len(self.published)

    def table(self) -> pa.Table:
        """The view's rows: product_a, product_a_name, product_b, product_b_name, count."""
        keys, c = self.pairs.at_least(self.min_sessions)
        a, b = keys // PAIR_SHIFT, keys % PAIR_SHIFT
        _drain(self.changed)
        self.renamed.clear()
        self.published, self.pub_by_product = {}, {}
        for k, n in zip((a * PAIR_SHIFT + b).tolist(), c.tolist(), strict=True):
            self._publish(k, self._row(k, n))
        arrow = [pa.string(), pa.string(), pa.string(), pa.string(), pa.int64()]
        return rows_table(self.COLUMNS, arrow, list(self.published.values()))

    COLUMNS = ["product_a", "product_a_name", "product_b", "product_b_name", "co_view_count"]
    TYPES = ["VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "BIGINT"]

    def override(self, con, now: datetime) -> str:
        """ViewRunner override: the view as a registered Arrow table."""
        self.advance(con, now)
        con.register("__coview_arrow", self.table())
        return "SELECT * FROM __coview_arrow"

    # the rest of the Maintainer protocol: maintainers.Defaults
    @property
    def reports_changes(self) -> bool:
        return True

    def read_bots(self, bots_of: BotsOf) -> None:
        self.bots_of = bots_of


def parameters(view: sqlfiles.SqlObject) -> tuple[timedelta, int]:
    """(window, least sessions of a pair) of the view's SQL; ShapeError when its query is not
    the one this module reproduces."""
    if view.name != VIEW:
        raise sqlfiles.ShapeError(f"the co-view maintainer reproduces {VIEW} only")
    window, least = sqlfiles.match(sqlfiles.view_query(view), SHAPE, PARAMETERS)
    if window.value <= 0:
        raise sqlfiles.ShapeError(f"its window ({window.sql}) must be longer than 0")
    # a pair's count is a whole number of sessions, at least 1 for a pair that exists
    return timedelta(seconds=window.value), max(1, math.ceil(least.value))


def maintainers(views: list[sqlfiles.SqlObject]) -> dict[str, CoViewMaintainer]:
    """The maintainer of the co-view view among these (ShapeError: its SQL differs)."""
    return {v.name: CoViewMaintainer.for_view(v) for v in views if v.name == VIEW}


_warmed = False


def warm_up() -> None:
    """Compile (or load from Numba's cache) every kernel and typed-dict helper now, once per
    process, so that none compiles inside a live refresh (the first session to leave the
    window comes a window's length in)."""
    global _warmed
    if _warmed:
        return
    m = CoViewMaintainer()
    s = np.array([0, 0, 1, 1], np.int64)
    p = np.array([0, 1, 0, 1], np.int64)
    signs = np.ones(4, np.int64)

    def apply(sign: np.ndarray) -> None:
        pairs = m.pairs
        _apply(s, p, sign, m.session_products, m.session_counts, pairs.cells, pairs.meta,
               m.changed, m.bots, m.emptied, 0)  # fmt: skip

    apply(signs)
    m.pairs.grow()
    _member(m.bots, s)
    m.pairs.get(s)
    one = np.array([1], np.int64)
    for to_bot in (True, False):
        m._set_bots(one, to_bot)
    m.pairs.at_least(m.min_sessions)
    apply(-signs)  # every session leaves the window
    len(m.emptied)
    _release_emptied(m.emptied, m.session_products, m.bots)
    _drain(m.changed)
    _warmed = True
