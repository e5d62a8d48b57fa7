"""The served blend (recommender/blend.py): its candidate lists for a session, read from
memory only.

- vmis: the live index's scored list, twice as long as the answer;
- coview: the newest item's partners in the co_view_pairs mirror (by count, then id), filled
  with the nightly fill table (`FillTable`);
- trending: the products of the session's categories (newest item's first) by engagement over
  trending_by_category's windows (the last hour), from the trending mirror; categories come
  from the views' catalog;
- popular: the fill table's popularity (recommender/popularity.py: the index's sessions of
  the last hour and of the day before per product) mixed by the categories of the session's
  items and, for a session that came for a surge, by the surging products (`blend.popular`,
  recommender/surge.py; only when its weight is above 0);
- session: the session's items.

`FillTable` is `blend.cooccurrence` over the index's sessions of the last day (measured back
from the newest session applied), rebuilt in a background thread at start (once the index is
built) and then every `every_s` seconds (every `retry_empty_s` while it is empty), and
swapped whole; with it the day before's sessions per item. The same thread builds the popular
source's tables and finds the surge (the index's sessions of the last hour against the day
before) every `surge_every_s` seconds (every `retry_popular_s` while the popular table is
empty: at a start the catalog may not know the categories yet).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from recommender.blend import (
    DEFAULT,
    BlendWeights,
    blend,
    cooccurrence,
    side_lists,
)
from recommender.popularity import EMPTY, popularity
from recommender.serving.live_index import LiveIndex
from recommender.serving.view_mirrors import CoViewMirror, TrendingMirror
from recommender.serving.views import Views
from recommender.surge import RECENT_S, DayBefore, Surge, day_before

log = logging.getLogger(__name__)


class FillTable:
    """The co-occurrence table of the index's recent sessions, rebuilt now and then."""

    def __init__(
        self,
        index: LiveIndex,
        every_s: float = 3600.0,
        window_s: float = 24 * 3600.0,
        max_sessions: int = 100_000,
        min_sessions: int = 3,
        retry_empty_s: float = 300.0,
        surge_every_s: float = 60.0,
        category_of: Callable[[str], str | None] | None = None,
        retry_popular_s: float = 5.0,
    ) -> None:
        self.index = index
        self.category_of = category_of or (lambda _item: None)  # None: no popular source
        self.retry_empty_s = retry_empty_s
        self.every_s = every_s
        self.window_s = window_s
        self.max_sessions = max_sessions
        self.min_sessions = min_sessions
        self.table: dict[str, list[str]] = {}
        self.before = DayBefore()  # the day before's sessions per item
        self.popularity = EMPTY  # the popular source's tables and the surge
        self.surge_every_s = surge_every_s
        self.retry_popular_s = retry_popular_s
        self.sessions = 0  # sessions the table was built from
        self.built_at: float | None = None  # epoch seconds
        self.build_s: float | None = None
        self.errors: dict[str, str] = {}  # what failed last time: the error
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="blend-fill", daemon=True)

    def rebuild(self) -> None:
        started = time.perf_counter()
        sessions = self.index.recent_sessions(self.window_s, self.max_sessions)
        table = cooccurrence(sessions, min_sessions=self.min_sessions)
        self.table = table  # one assignment: readers see the old table or the new one
        self.before = day_before(self.index.day_before_counts())
        self.sessions, self.built_at = len(sessions), time.time()
        self.build_s = time.perf_counter() - started
        log.info("blend fill table built from %d sessions: %d items in %.2f s",
                 len(sessions), len(table), self.build_s)  # fmt: skip

    @property
    def surge(self) -> Surge:
        return self.popularity.surge

    def find_surge(self) -> Surge:
        """The popular source's tables and the surge from the index's sessions of the last
        RECENT_S against the day before; returns the surge."""
        found = popularity(self.index.recent_counts(RECENT_S), self.before, self.category_of)
        if bool(found.surge.share) != bool(self.surge.share):  # a surge began or ended
            log.info("surge: %d products, %.0f%% of the last hour's views",
                     len(found.surge.share), 100 * found.surge.mass)  # fmt: skip
        self.popularity = found
        return found.surge

    def get(self, item: str, default: Sequence[str] | None = None) -> Sequence[str]:
        """The item's fill list (a dict's `get`: the table read once, swapped whole)."""
        return self.table.get(item, [] if default is None else default)

    def start(self) -> FillTable:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self.index.ready:  # built from the view's snapshot first
            if self._stop.wait(0.5):
                return
        due = time.monotonic()
        while True:
            if time.monotonic() >= due:
                self._attempt("fill table", self.rebuild)
                # an empty table (a fresh start, no sessions yet) is tried again soon
                due = time.monotonic() + (
                    self.every_s if self.table else min(self.every_s, self.retry_empty_s))
            self._attempt("surge", self.find_surge)
            # an empty popular table (no sessions or no categories known yet) is tried again soon
            every = self.surge_every_s if self.popularity.plain.total > 0 else min(
                self.surge_every_s, self.retry_popular_s)  # fmt: skip
            if self._stop.wait(max(0.0, min(every, due - time.monotonic()))):
                return

    def _attempt(self, what: str, step: Callable[[], object]) -> None:
        """Run a step; on failure keep what it built last time and note the error."""
        try:
            step()
            self.errors.pop(what, None)
        except Exception as exc:  # tried again next time
            self.errors[what] = f"{type(exc).__name__}: {exc}"
            log.exception("building the blend's %s failed", what)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def status(self) -> dict[str, Any]:
        return {"items": len(self.table), "sessions": self.sessions, "built_at": self.built_at,
                "build_s": self.build_s,
                "error": "; ".join(f"{k}: {v}" for k, v in self.errors.items()) or None,
                "day_before_items": len(self.before.share),
                "surge_products": len(self.surge.share),
                "popular_products": len(self.popularity.plain.overall)}  # fmt: skip


class Candidates(NamedTuple):
    """The sources' lists for one session (recommender/blend.py)."""

    vmis: list[tuple[str, float]]
    coview: list[str]
    trending: list[str]
    popular: list[tuple[str, float]]


class Blender:
    """The blended recommendations of the serving layer."""

    def __init__(
        self,
        index: LiveIndex,
        views: Views,
        weights: BlendWeights = DEFAULT,
        co_view: CoViewMirror | None = None,
        trending: TrendingMirror | None = None,
        fill_table: FillTable | None = None,
    ) -> None:
        self.index = index
        self.views = views
        self.weights = weights
        self.co_view = co_view
        self.trending = trending
        self.fill_table = fill_table or FillTable(index, category_of=views.category)

    def item_categories(self, items: Sequence[str]) -> list[str | None]:
        """The category of each of the session's items, oldest first (None: not known)."""
        return [self.views.category(i) for i in items]

    def candidates(self, items: Sequence[str], how_many: int) -> Candidates:
        """The sources' lists for a session holding `items` (oldest first)."""
        vmis = self.index.recommend(items, how_many=2 * how_many)
        newest = items[-1]
        live = self.co_view.partners(newest, how_many) if self.co_view is not None else []
        table = self.trending.table() if self.trending is not None else None
        of_items = self.item_categories(items)
        # newest item's first, once each
        categories = [c for c in dict.fromkeys(reversed(of_items)) if c is not None]
        coview, trending = side_lists(live, self.fill_table, table.lists if table else {},
                                      categories, newest, how_many)  # fmt: skip
        mixed: list[tuple[str, float]] = []
        w = self.weights
        if w.popular > 0:  # the fill table's popularity, swapped whole
            mixed = self.fill_table.popularity.ranked(w, of_items, items, how_many, newest)
        return Candidates(vmis, coview, trending, mixed)

    def recommend(
        self, items: Sequence[str], how_many: int, exclude_session: bool = False
    ) -> list[tuple[str, float]]:
        """The blend's top `how_many` (item, score); without the session's items when
        `exclude_session`."""
        if not items:
            return []
        c = self.candidates(items, how_many)
        exclude = items if exclude_session else ()
        return blend(c.vmis, c.coview, c.trending, items, how_many, self.weights, exclude,
                     popular=c.popular)  # fmt: skip

    def followers(self) -> list[Any]:
        return [m for m in (self.co_view, self.trending) if m is not None]

    def start(self) -> None:
        for mirror in self.followers():
            mirror.start()
        self.fill_table.start()

    def stop(self) -> None:
        for mirror in self.followers():
            mirror.stop()
        self.fill_table.stop()

    def status(self) -> dict[str, Any]:
        """The weights, the fill table and the mirrors (None: no views to follow)."""
        return {
            "weights": self.weights.text(),
            "fill": self.fill_table.status(),
            "co_view_pairs": self.co_view.status() if self.co_view is not None else None,
            "trending_by_category": self.trending.status() if self.trending is not None else None,
        }
