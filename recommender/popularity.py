"""The popular source's engagement (recommender/blend.py `popular`), from the history both
runtimes keep for VMIS-kNN (vmis_history: each session counted once per product).

A product's engagement is its sessions of the last hour (surge.RECENT_S) plus PRIOR hours'
worth of the last hour's sessions at its share of the day before's (`surge.DayBefore`), so
that every product viewed lately or the day before is ranked, the day before steadying the
last hour's small counts. While a surge lasts, the table of the sessions that did not come
for it counts each surging product's last-hour sessions only at its usual level (times
`Surge.kept`); the day before holds no surge. Products whose category is not known are left
out (the source mixes by category).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from recommender.blend import BlendWeights, Trending, popular, summed
from recommender.surge import NO_SURGE, DayBefore, Surge, surge

PRIOR = 6.0  # the day before weighs as much as this many hours of the last hour's sessions


@dataclass(frozen=True)
class Popularity:
    """The popular source's tables at one moment and the surge found then."""

    surge: Surge
    plain: Trending  # every product's sessions as counted
    usual: Trending  # the surge's part taken out: how the other sessions browse

    def table(self, with_surge: bool) -> Trending:
        """`usual` when the surge is mixed in, else `plain`."""
        return self.usual if with_surge else self.plain

    def ranked(self, weights: BlendWeights, categories: Sequence[str | None],
               items: Sequence[Any], how_many: int,
               leave_out: Any) -> list[tuple[Any, float]]:  # fmt: skip
        """The popular source's list for a session (`blend.popular`, `categories` one per
        item of `items`): the surge mixed in over `usual`, or `plain` with sale_focus 0."""
        found = self.surge if weights.sale_focus > 0 else NO_SURGE
        return popular(self.table(bool(found.share)), categories, how_many, weights.focus,
                       leave_out=leave_out, items=items, surge=found,
                       sale_focus=weights.sale_focus, sale_home=weights.sale_home)  # fmt: skip


EMPTY = Popularity(NO_SURGE, summed({}), summed({}))


def engagement(recent: Mapping[Any, float], before: DayBefore,
               category_of: Callable[[Any], str | None], kept: Mapping[Any, float] | None = None,
               prior: float = PRIOR) -> Trending:  # fmt: skip
    """The table of `recent` ({product: sessions of the last hour}) and `before`, each
    product's recent sessions times its `kept` share (1 where absent)."""
    kept = kept or {}
    now = {p: n * kept.get(p, 1.0) for p, n in recent.items()}
    total = sum(now.values())
    weight = prior * total if total > 0 else 1.0  # nothing lately: the day before alone
    totals: dict[str, dict[Any, float]] = {}
    for product in now.keys() | before.share.keys():
        e = now.get(product, 0.0) + weight * before.share.get(product, 0.0)
        category = category_of(product) if e > 0 else None
        if category is not None:
            totals.setdefault(category, {})[product] = e
    return summed(totals)


def popularity(recent: Mapping[Any, float], before: DayBefore,
               category_of: Callable[[Any], str | None],
               prior: float = PRIOR) -> Popularity:  # fmt: skip
    """The surge in `recent` against `before`, and both tables."""
    found = surge(recent, before)
    plain = engagement(recent, before, category_of, prior=prior)
    if not found.share:
        return Popularity(found, plain, plain)
    return Popularity(found, plain, engagement(recent, before, category_of, found.kept, prior))
