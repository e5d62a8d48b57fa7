"""Surging products and the chance that a session came for them (a sale, a campaign).

A product surges when the sessions that viewed it in the last hour (RECENT_S; vmis_history's
sessions, each counted once per product) are well above what its share of the day before's
sessions gives: at least SURGE_RATIO times the expected and SURGE_Z standard deviations
above it, counts taken as Poisson and compared on Anscombe's square-root scale,
2·(sqrt(n + 3/8) - sqrt(expected + 3/8)), whose tail stays normal for the small counts of
rarely viewed products. The expected count of a product is its share of the day before
among the products viewed now, times their count now.

The surge's products share its excess views (`Surge.share`), and the excess is a share
`mass` of all views; of each surging product's views now, a share `kept` is its usual level
(expected / count), the rest is the surge's. A session that came for the surge views its
products a share `sale_focus` of the time and otherwise browses as the sessions that did not
come for it; its chance is a posterior:
prior odds from the share of sessions the surge accounts for (mass / sale_focus, at most
MAX_PRIOR), and each of the session's items multiplies them by
(sale_focus·share(item) + (1 - sale_focus)·before(item)) / before(item).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

RECENT_S = 3600.0  # the stretch a surge is counted over, back from the newest session
SURGE_RATIO = 2.0
SURGE_Z = 4.0
MAX_PRIOR = 0.9


@dataclass(frozen=True)
class DayBefore:
    """Each product's share of the views of the day before (sessions counted once per
    product), and the share taken for a product not seen then (half a view)."""

    share: dict[Any, float] = field(default_factory=dict)
    floor: float = 0.0

    def of(self, product: Any) -> float:
        return max(self.share.get(product, 0.0), self.floor)


def day_before(counts: Mapping[Any, float]) -> DayBefore:
    """A DayBefore from {product: sessions of the day before that viewed it}."""
    total = float(sum(counts.values()))
    if total <= 0:
        return DayBefore()
    return DayBefore({p: n / total for p, n in counts.items()}, 0.5 / total)


@dataclass(frozen=True)
class Surge:
    share: dict[Any, float]  # each surging product's share of the excess views
    mass: float  # the excess's share of all views now
    before: DayBefore
    kept: dict[Any, float] = field(default_factory=dict)  # each one's usual share of its views


NO_SURGE = Surge({}, 0.0, DayBefore())


def surge(views: Mapping[Any, float], before: DayBefore) -> Surge:
    """The surge in `views` ({product: sessions of the last RECENT_S that viewed it}) against
    `before`."""
    total = float(sum(views.values()))
    known = sum(before.share.get(p, 0.0) for p in views)
    if total <= 0 or known <= 0:
        return NO_SURGE
    excess: dict[Any, float] = {}
    kept: dict[Any, float] = {}
    for product, n in views.items():
        expected = before.share.get(product, 0.0) / known * total
        if n > SURGE_RATIO * expected and _deviations(n, expected) > SURGE_Z:
            excess[product] = n - expected
            kept[product] = expected / n
    over = sum(excess.values())
    if over <= 0:
        return NO_SURGE
    return Surge({p: x / over for p, x in excess.items()}, over / total, before, kept)


def _deviations(n: float, expected: float) -> float:
    """Standard deviations of a Poisson count `n` above `expected` (Anscombe)."""
    return 2.0 * (math.sqrt(n + 0.375) - math.sqrt(expected + 0.375))


def sale_chance(s: Surge, items: Sequence[Any], sale_focus: float) -> float:
    """P(the session came for the surge | its items), `items` one per view (repeats count)."""
    if not s.share or sale_focus <= 0:
        return 0.0
    prior = min(MAX_PRIOR, s.mass / sale_focus)
    log_odds = math.log(prior / (1 - prior))
    for item in items:
        base = s.before.of(item)
        chance = sale_focus * s.share.get(item, 0.0) + (1 - sale_focus) * base
        if chance <= 0:  # only the surge is viewed, and this item is not in it
            return 0.0
        log_odds += math.log(chance / base)
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, log_odds))))


def from_surge(s: Surge, items: Sequence[Any], sale: float) -> list[float]:
    """Per item, the chance that its view was one of the surge's, for a session that views the
    surge a share `sale` of the time (its chance times sale_focus):
    sale·share(item) / (sale·share(item) + (1 - sale)·before(item))."""
    out = []
    for item in items:
        surged = sale * s.share.get(item, 0.0)
        usual = (1 - sale) * s.before.of(item)
        out.append(surged / (surged + usual) if surged > 0 else 0.0)
    return out
