"""The served blend in the replay: its live sources and its questions.

As the serving layer does (recommender/blend.py): co_view_pairs' partners of the newest
item filled with a co-occurrence table over the last `fill_window_h` hours of vmis_history
sessions (rebuilt every `fill_every_h` of event time), trending_by_category in the session's
categories, popularity (recommender/popularity.py: the last hour's vmis_history sessions and
the day before's, the day before taken with the fill table, the tables and the surge every
`surge_every_s` of event time) mixed by the session's categories and by the surge, and the
session's own recent items. Each source alone is also asked, so the report shows the blend
beside its parts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from recommender import blend, popularity, surge
from recommender.blend_tuning import CandidateLog

NAMES = ("coview_fill", "trending_live", "popular_mix", "session_items", "blend")
SESSION_ITEMS = 20  # the session's newest views the blend sees
FILL_SESSIONS = 100_000  # newest sessions the fill table is built from
DAY_S = 86_400


@dataclass(frozen=True)
class BlendParams:
    weights: blend.BlendWeights = blend.DEFAULT
    fill_every_h: float = 1.0
    fill_window_h: float = 24.0
    fill_min_sessions: int = 3
    surge_every_s: float = 60.0


class BlendSources:
    """The blend's live sources besides VMIS-kNN: the fill table and trending."""

    def __init__(self, params: BlendParams, categories: list[str]) -> None:
        self.params = params
        self.categories = categories
        self.fill: dict[int, list[int]] = {}
        self.table = blend.trending_table(())
        self.before = surge.DayBefore()
        self.popularity = popularity.EMPTY  # the popular source's tables and the surge
        self.next_fill = -1
        self.next_surge = -1
        self.rebuilds = 0

    def maybe_rebuild(self, history: Any, now_ms: int, cutoff: int) -> None:
        """Rebuild the fill table from the history's rows when it is due."""
        if now_ms < self.next_fill:
            return
        since = now_ms / 1000.0 - self.params.fill_window_h * 3600
        day = now_ms // 1000 // DAY_S * DAY_S  # the day before: [day - DAY_S, day)
        rows, day_before = [], []
        for _s, items, t in history.rows():
            if t >= since:
                rows.append((t, items))
            if day - DAY_S <= t < day:
                day_before.append(items)
        rows.sort(key=lambda r: r[0])
        sessions = [items for _t, items in rows[-FILL_SESSIONS:]]
        self.fill = blend.cooccurrence(sessions, self.params.fill_min_sessions, cutoff)
        self.before = surge.day_before(sessions_per_item(day_before))
        self.next_surge = -1  # found again against the new baseline
        every = max(1, int(self.params.fill_every_h * 3_600_000))
        self.next_fill = (now_ms // every + 1) * every
        self.rebuilds += 1

    def update_trending(self, table: blend.Trending) -> None:
        self.table = table

    def maybe_find_surge(self, history: Any, now_ms: int) -> None:
        """The popular source's tables and the surge from the history's sessions of the last
        RECENT_S, when they are due."""
        if now_ms < self.next_surge:
            return
        self.popularity = popularity.popularity(recent_counts(history, now_ms), self.before,
                                                self.categories.__getitem__)  # fmt: skip
        every = max(1, int(self.params.surge_every_s * 1000))
        self.next_surge = (now_ms // every + 1) * every


def recent_counts(history: Any, now_ms: int) -> dict[int, int]:
    """{item: sessions holding it} over the history's sessions (LiveHistory) whose last event
    is at most RECENT_S before `now_ms` (as LiveIndex.recent_counts)."""
    rows = (history.row(s) for s in history.recent(now_ms - int(surge.RECENT_S * 1000)))
    return sessions_per_item(row[0] for row in rows if row is not None)


def sessions_per_item(sessions: Iterable[Sequence[int]]) -> dict[int, int]:
    """{item: sessions holding it}, each session's items distinct, in the order first met."""
    return dict(Counter(item for items in sessions for item in items))


def ask(
    sources: BlendSources,
    vmis: list[tuple[int, float]],
    live_also: list[int],
    recent: list[int],
    cutoff: int,
    log: CandidateLog | None = None,
    target: int | None = None,
) -> dict[str, list[int]]:
    """The top lists of the blend and of each of its sources for a session whose views
    (consecutive repeats dropped) are `recent`, oldest first."""
    newest = recent[-1]
    of_items = [sources.categories[p] for p in recent]
    categories = list(dict.fromkeys(reversed(of_items)))  # newest item's first
    coview, trending = blend.side_lists(live_also, sources.fill, sources.table.lists,
                                        categories, newest, cutoff)  # fmt: skip
    own = [p for p in dict.fromkeys(reversed(recent)) if p != newest]
    weights = sources.params.weights
    popular = sources.popularity.ranked(weights, of_items, recent, cutoff, newest)
    if log is not None:
        log.add(vmis, coview, trending, recent, target, popular)
    mixed = blend.blend(vmis, coview, trending, recent, cutoff, weights, popular=popular)
    return {
        "coview_fill": coview,
        "trending_live": trending[:cutoff],
        "popular_mix": [item for item, _ in popular],
        "session_items": own[:cutoff],
        "blend": [item for item, _ in mixed],
    }
