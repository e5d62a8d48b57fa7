"""State the replay keeps up to date click by click, and lookup tables of view results.

`LiveHistory` is the vmis_history view (sql/050_vmis_history.sql with session_features'
bot rule, sql/030) kept incrementally: per session its distinct viewed items in first-view
order, the time of its last event, and whether it looks like a bot (at least 5 events, mean
gap under 1 s). Fed the same events, `rows()` equals the SQL view (tests check it); the
7-day horizon is not applied (replays here are shorter than 7 days).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Iterator

from recommender.experiment.clicks import VIEW

BOT_MIN_EVENTS = 5
BOT_MEAN_GAP_S = 1.0


class LiveHistory:
    """Per session: distinct viewed items, first and last event time, event count."""

    def __init__(self) -> None:
        self.items: dict[int, list[int]] = {}
        self.seen: dict[int, set[int]] = {}
        self.first_ms: dict[int, int] = {}
        self.last_ms: dict[int, int] = {}
        self.events: dict[int, int] = {}
        self.by_last: dict[int, None] = {}  # sessions in the order of their last event

    def add(self, session: int, product: int, action: int, ts_ms: int) -> bool:
        """Apply one event; True when the session's row in the view changed its items."""
        n = self.events.get(session, 0)
        if n == 0:
            self.first_ms[session] = ts_ms
        self.events[session] = n + 1
        self.last_ms[session] = max(ts_ms, self.last_ms.get(session, ts_ms))
        self.by_last.pop(session, None)
        self.by_last[session] = None
        if action != VIEW:
            return False
        seen = self.seen.setdefault(session, set())
        if product in seen:
            return False
        seen.add(product)
        self.items.setdefault(session, []).append(product)
        return True

    def is_bot(self, session: int) -> bool:
        n = self.events.get(session, 0)
        if n < BOT_MIN_EVENTS:
            return False
        return (self.last_ms[session] - self.first_ms[session]) / 1000.0 < BOT_MEAN_GAP_S * (n - 1)

    def row(self, session: int) -> tuple[list[int], float] | None:
        """(items, last event epoch s) of a session in the view, None if not in it."""
        items = self.items.get(session)
        if not items or self.is_bot(session):
            return None
        return items, self.last_ms[session] / 1000.0

    def recent(self, since_ms: int) -> Iterator[int]:
        """Sessions whose last event is at `since_ms` or later, newest first (events are
        fed in time order)."""
        for session in reversed(self.by_last):
            if self.last_ms[session] < since_ms:
                return
            yield session

    def rows(self) -> list[tuple[int, list[int], float]]:
        """The whole view, sorted by session code (as SqlViews.vmis_history)."""
        out = []
        for s in sorted(self.items):
            row = self.row(s)
            if row is not None:
                out.append((s, list(row[0]), row[1]))
        return out


class RollingPopularity:
    """The most viewed products of the last `window_ms` of event time."""

    def __init__(self, window_ms: int, how_many: int = 20) -> None:
        self.window_ms = window_ms
        self.how_many = how_many
        self.counts: Counter[int] = Counter()
        self.recent: deque[tuple[int, int]] = deque()

    def add(self, product: int, ts_ms: int) -> None:
        self.counts[product] += 1
        self.recent.append((ts_ms, product))

    def top(self, now_ms: int) -> list[int]:
        """Top products (ties: lower code) over (now - window, now]."""
        while self.recent and self.recent[0][0] <= now_ms - self.window_ms:
            _, p = self.recent.popleft()
            self.counts[p] -= 1
            if not self.counts[p]:
                del self.counts[p]
        ranked = sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))
        return [p for p, _ in ranked[: self.how_many]]


def also_viewed_table(
    pairs: Iterable[tuple[int, int, int]], product_ids: list[str], how_many: int = 20
) -> dict[int, list[int]]:
    """"Customers also viewed" per product from co_view_pairs rows (a, b, count) in product
    codes: partners by count, ties by product id (the order of the API's query)."""
    partners: dict[int, list[tuple[int, str, int]]] = {}
    for a, b, n in pairs:
        partners.setdefault(a, []).append((-n, product_ids[b], b))
        partners.setdefault(b, []).append((-n, product_ids[a], a))
    return {p: [q for _, _, q in sorted(lst)[:how_many]] for p, lst in partners.items()}
