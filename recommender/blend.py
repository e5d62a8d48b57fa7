"""The blended next-item recommender: one ranked list from five candidate sources.

Sources, each a list for the evolving session:
- vmis: VMIS-kNN's scored items (score divided by the list's best, so 1 at the top);
- coview: "customers also viewed" of the session's newest item: the live co_view_pairs
  partners by count, filled with a longer-window co-occurrence table (`cooccurrence`);
- trending: trending_by_category's products in the session's categories, newest category
  first, each category's products by their engagement summed over the view's windows (the
  last hour) (`trending_lists`);
- popular: each product's chance to be the next view if the session browses a home category
  (a share `focus` of its views) and otherwise anywhere, from the history's sessions per
  product (recommender/popularity.py) and the categories of the session's items, mixed with
  a surge's products by the session's chance of having come for them (`popular`,
  recommender/surge.py);
- session: the session's own items (oldest first), worth `decay ** age` where age 0 is the
  newest item.

score(item) = vmis·vmis_score + coview/(1 + rank) + trending/(1 + rank) + popular·popular_score
+ repeat·decay**age, ranks counted from 0, vmis and popular scores divided by their list's
best. Ties keep the order in which items were first met (vmis, coview, trending, popular,
session). The newest item is never recommended unless `repeat_newest` is set. The
weights are chosen on validation data (docs/evaluation.md); `DEFAULT` holds the ones chosen
for the flash-sale replay.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from functools import cached_property
from operator import itemgetter
from typing import Any, TypeVar

import numpy as np

from recommender.surge import NO_SURGE, Surge, from_surge, sale_chance

T = TypeVar("T", bound=Hashable)
SOURCES = ("vmis", "coview", "trending", "popular", "repeat")
POPULAR_GLOBAL = 200  # products of the popular source's overall part
POPULAR_PER_CATEGORY = 40  # products per category of its category part
HOME_CATEGORIES = 5  # most likely home categories whose products it adds
ROUND = 12  # scores are rounded to this many decimals before ranking


@dataclass(frozen=True)
class BlendWeights:
    """The blend's weights and its session-item rule."""

    vmis: float = 1.0
    coview: float = 0.0
    trending: float = 0.0
    popular: float = 32.0
    repeat: float = 0.0
    decay: float = 0.8  # worth of a session item per step of age
    repeat_newest: bool = False  # may the newest item itself be recommended
    focus: float = 0.5  # the popular source's share of the session's categories
    # the popular source's share of a surge session's views on the surge (0: no surge)
    sale_focus: float = 0.8
    # the share of a surge session's other views that follow its home categories as anyone's
    # do; the rest go to the best sellers anywhere
    sale_home: float = 0.0

    @classmethod
    def parse(cls, text: str, base: BlendWeights | None = None) -> BlendWeights:
        """Weights from "name=value,..." (names of the fields); unnamed ones keep `base`'s."""
        out = base or cls()
        names = {f.name for f in fields(cls)}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, eq, value = part.partition("=")
            name = name.strip()
            if not eq or name not in names:
                raise ValueError(f"blend weights: {part!r} is not one of "
                                 f"{', '.join(sorted(names))} = value")  # fmt: skip
            try:
                parsed: float | bool = (
                    value.strip().lower() in ("1", "true", "yes", "on")
                    if name == "repeat_newest" else float(value)
                )  # fmt: skip
            except ValueError:
                raise ValueError(f"blend weights: {name} needs a number, got {value!r}") from None
            if not isinstance(parsed, bool) and (parsed < 0 or not np.isfinite(parsed)):
                raise ValueError(f"blend weights: {name} must be a finite number >= 0")
            if name in ("focus", "sale_focus", "sale_home") and parsed > 1:
                raise ValueError(f"blend weights: {name} is a share, between 0 and 1")
            out = replace(out, **{name: parsed})
        return out

    def text(self) -> str:
        """The "name=value,..." form that `parse` reads."""
        return ",".join(f"{k}={v}" for k, v in asdict(self).items())


DEFAULT = BlendWeights()


def features(
    vmis: Sequence[tuple[T, float]],
    coview: Sequence[T],
    trending: Sequence[T],
    session: Sequence[T],
    decay: float,
    repeat_newest: bool,
    popular: Sequence[tuple[T, float]] = (),
) -> tuple[list[T], np.ndarray]:
    """The candidates in first-met order and their per-source values (candidates x SOURCES)."""
    newest = session[-1] if session else None
    pos: dict[T, int] = {}
    rows: list[list[float]] = []

    def row(item: T) -> list[float]:
        j = pos.get(item)
        if j is None:
            j = pos[item] = len(rows)
            rows.append([0.0] * len(SOURCES))
        return rows[j]

    top = vmis[0][1] if vmis else 0.0
    for item, score in vmis:
        row(item)[0] = score / top if top > 0 else 0.0
    for r, item in enumerate(coview):
        cell = row(item)
        cell[1] = max(cell[1], 1.0 / (1 + r))
    for r, item in enumerate(trending):
        cell = row(item)
        cell[2] = max(cell[2], 1.0 / (1 + r))
    best = popular[0][1] if popular else 0.0
    for item, score in popular:
        cell = row(item)
        cell[3] = max(cell[3], score / best if best > 0 else 0.0)
    age = 0
    seen: set[T] = set()
    for item in reversed(session):
        if item in seen:
            continue
        seen.add(item)
        if item != newest or repeat_newest:
            row(item)[4] = decay**age
        age += 1
    items = list(pos)
    values = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(SOURCES))
    if newest is not None and not repeat_newest and newest in pos:
        keep = [i for i, item in enumerate(items) if item != newest]
        items = [items[i] for i in keep]
        values = values[keep]
    return items, values


def weight_vector(w: BlendWeights) -> np.ndarray:
    return np.asarray([w.vmis, w.coview, w.trending, w.popular, w.repeat], dtype=np.float64)


def blend(
    vmis: Sequence[tuple[T, float]],
    coview: Sequence[T],
    trending: Sequence[T],
    session: Sequence[T],
    how_many: int,
    weights: BlendWeights = DEFAULT,
    exclude: Iterable[T] = (),
    popular: Sequence[tuple[T, float]] = (),
) -> list[tuple[T, float]]:
    """The blended top `how_many` (item, score), leaving out `exclude`."""
    items, values = features(vmis, coview, trending, session, weights.decay,
                             weights.repeat_newest, popular)  # fmt: skip
    if not items:
        return []
    scores = np.round(values @ weight_vector(weights), ROUND)  # equal sums tie exactly
    order = np.lexsort((np.arange(len(items)), -scores))
    banned = set(exclude)
    out: list[tuple[T, float]] = []
    for i in order.tolist():
        if scores[i] <= 0:
            break
        if items[i] not in banned:
            out.append((items[i], float(scores[i])))
            if len(out) == how_many:
                break
    return out


def cooccurrence(
    sessions: Iterable[Sequence[T]], min_sessions: int = 3, how_many: int = 20,
    max_items: int = 50,
) -> dict[T, list[T]]:  # fmt: skip
    """Per item, the items that share at least `min_sessions` sessions with it, most shared
    first (ties by first appearance): co_view_pairs' rule over a longer stretch of sessions.
    Each session counts once per pair; only its newest `max_items` distinct items count."""
    sess, item, names = _distinct_newest(sessions, max_items)
    keys = []
    for d in range(1, max_items):  # the pairs of items d places apart in one session
        same = sess[:-d] == sess[d:]
        if not same.any():
            break
        a, b = item[:-d][same], item[d:][same]
        keys.append(np.minimum(a, b) << 32 | np.maximum(a, b))
    if not keys:
        return {}
    pairs, counts = np.unique(np.concatenate(keys), return_counts=True)
    keep = counts >= min_sessions
    pairs, counts = pairs[keep], counts[keep]
    a, b = pairs >> 32, pairs & 0xFFFFFFFF
    first, second = np.concatenate([a, b]), np.concatenate([b, a])
    n = np.concatenate([counts, counts])
    order = np.lexsort((second, -n, first))
    first, second = first[order], second[order]
    starts = np.flatnonzero(np.r_[True, first[1:] != first[:-1]])
    rank = np.arange(len(first)) - np.repeat(starts, np.diff(np.r_[starts, len(first)]))
    top = rank < how_many
    out: dict[T, list[T]] = {}
    for f, s in zip(first[top].tolist(), second[top].tolist(), strict=True):
        out.setdefault(names[f], []).append(names[s])
    return out


def _distinct_newest(
    sessions: Iterable[Sequence[T]], max_items: int
) -> tuple[np.ndarray, np.ndarray, list[T]]:
    """Each session's distinct items in first-click order, its newest `max_items` of them, as
    (session number, item code) arrays; codes in order of first appearance among them."""
    lists = [s for s in sessions if len(s) > 1]
    flat: list[T] = [i for s in lists for i in s]
    raw: dict[T, int] = {}
    codes = np.fromiter((raw.setdefault(i, len(raw)) for i in flat), np.int64, len(flat))
    sess = np.repeat(np.arange(len(lists), dtype=np.int64), [len(s) for s in lists])
    _, firsts = np.unique(sess * max(1, len(raw)) + codes, return_index=True)
    firsts.sort()  # each (session, item) once, at its first click, in click order
    sess, codes = sess[firsts], codes[firsts]
    starts = np.flatnonzero(np.r_[True, sess[1:] != sess[:-1]]) if len(sess) else sess
    sizes = np.diff(np.r_[starts, len(sess)])
    left = np.repeat(starts + sizes, sizes) - np.arange(len(sess))  # distinct items from here
    big = np.repeat(sizes, sizes) >= 2
    keep = (left <= max_items) & big
    sess, codes = sess[keep], codes[keep]
    seen, first_at = np.unique(codes, return_index=True)  # recode by first appearance
    order = np.argsort(first_at, kind="stable")
    recode = np.empty(len(raw), dtype=np.int64)
    recode[seen[order]] = np.arange(len(seen))
    names = list(raw)
    return sess, recode[codes], [names[c] for c in seen[order]]


def fill(first: Sequence[T], then: Sequence[T], how_many: int) -> list[T]:
    """`first`, filled up to `how_many` with the items of `then` it lacks."""
    out = list(first[:how_many])
    if len(out) < how_many:
        have = set(out)
        for item in then:
            if item not in have:
                out.append(item)
                have.add(item)
                if len(out) == how_many:
                    break
    return out


def side_lists(
    live_coview: Sequence[T], fill_table: Any,
    trending: dict[str, Sequence[T]],
    categories: Iterable[str], newest: T, how_many: int,
) -> tuple[list[T], list[T]]:  # fmt: skip
    """The coview and trending lists of a session whose newest item is `newest`: its live
    co-view partners filled from `fill_table` (anything with a dict's `get`), and the
    trending products of `categories` (`trending_lists`' form) without the newest item."""
    coview = fill(live_coview, fill_table.get(newest, ()), how_many)
    return coview, in_categories(trending, categories, how_many, leave_out=newest)


@dataclass(frozen=True)
class Trending:
    """Engagement per product (trending_by_category's rows summed over its windows, or the
    popular source's session counts, recommender/popularity.py): per category its products by
    engagement (ties by product) and its total; every product overall, by engagement."""

    by_category: dict[str, list[tuple[Any, float]]]
    category_total: dict[str, float]
    overall: list[tuple[Any, str, float]]  # (product, category, engagement)

    @cached_property
    def total(self) -> float:
        return sum(self.category_total.values())

    @cached_property
    def lists(self) -> dict[str, list[Any]]:
        """{category: products by engagement} (what the trending source reads)."""
        return {c: [p for p, _ in per] for c, per in self.by_category.items()}

    @cached_property
    def top_shares(self) -> list[tuple[Any, float]]:
        """The POPULAR_GLOBAL products with the most engagement, with their share of it."""
        total = self.total
        return [(p, e / total) for p, _, e in self.overall[:POPULAR_GLOBAL]]

    @cached_property
    def shares(self) -> dict[Any, float]:
        """Every product's share of all engagement."""
        total = self.total
        return {p: e / total for p, _, e in self.overall}

    @cached_property
    def category_shares(self) -> dict[str, list[tuple[Any, float, float]]]:
        """Per category its POPULAR_PER_CATEGORY first products: (product, share of the
        category's engagement, share of all engagement)."""
        total = self.total
        return {c: [(p, e / self.category_total[c], e / total)
                    for p, e in per[:POPULAR_PER_CATEGORY]]
                for c, per in self.by_category.items()}  # fmt: skip


def trending_table(rows: Iterable[tuple[Any, ...]]) -> Trending:
    """trending_by_category rows (category, product, engagement_score, window_start) summed
    over the windows."""
    totals: dict[str, dict[Any, float]] = {}
    for category, product, score, _start in rows:
        per = totals.setdefault(category, {})
        per[product] = per.get(product, 0.0) + score
    return summed(totals)


def summed(totals: dict[str, dict[Any, float]]) -> Trending:
    """A Trending from {category: {product: engagement}}."""
    by_category = {c: sorted(per.items(), key=lambda kv: (-kv[1], str(kv[0])))
                   for c, per in totals.items()}  # fmt: skip
    overall = sorted(((p, c, e) for c, per in by_category.items() for p, e in per),
                     key=lambda r: (-r[2], str(r[0])))  # fmt: skip
    return Trending(by_category, {c: sum(e for _, e in per) for c, per in by_category.items()},
                    overall)  # fmt: skip


def trending_lists(rows: Iterable[tuple[str, T, float, object]]) -> dict[str, list[T]]:
    """trending_by_category rows (category, product, engagement_score, window_start) as
    {category: products by engagement summed over the windows, ties by product}."""
    return trending_table(rows).lists


def home_categories(
    table: Trending, categories: Sequence[str | None], focus: float,
    evidence: Sequence[float] | None = None,
) -> list[tuple[str, float]]:  # fmt: skip
    """P(home category = c | the session's items' categories), most likely first: prior the
    category's share w of the engagement; each item in c multiplies it by
    1 + focus / ((1 - focus)·w) (an item's chance under home c over its chance anywhere),
    raised to the item's `evidence` (one per item, default 1: a view the surge explains
    says less about the home category). None: an item of unknown category."""
    total = table.total
    if total <= 0 or focus <= 0:
        return []
    log_odds = {c: math.log(t / total) for c, t in table.category_total.items() if t > 0}
    weights = [1.0] * len(categories) if evidence is None else evidence
    if focus < 1:
        for category, weight in zip(categories, weights, strict=True):
            if category in log_odds:
                share = table.category_total[category] / total
                log_odds[category] += weight * math.log1p(focus / ((1 - focus) * share))
    elif categories:  # every view in the home category: only the session's categories
        seen = set(categories)
        log_odds = {c: v for c, v in log_odds.items() if c in seen} or log_odds
    top = max(log_odds.values())
    odds = {c: math.exp(v - top) for c, v in log_odds.items()}
    norm = sum(odds.values())
    return sorted(((c, o / norm) for c, o in odds.items()), key=lambda kv: (-kv[1], kv[0]))


def popular(
    table: Trending, categories: Sequence[str], how_many: int, focus: float,
    leave_out: Any = None, items: Sequence[Any] = (), surge: Surge = NO_SURGE,
    sale_focus: float = 0.0, sale_home: float = 1.0,
) -> list[tuple[Any, float]]:  # fmt: skip
    """The popular source: the chance that the next view is each product, if a session
    browses one home category (a share `focus` of its views, the rest anywhere):
    (1 - focus)·share(product) + focus·P(home = its category)·share in its category. The
    home category's chance comes from the categories of the session's items (`categories`,
    one per item, repeats counted, None where unknown) and each category's share of the
    engagement.
    With a `surge` (recommender/surge.py) and `sale_focus` above 0, a session that came for
    it (chance c from its `items`, which `categories` then follows one for one) views the
    surge's products a share `sale_focus` of the time; of its other views a share
    `sale_home` browse as the sessions that did not come for it, the rest go to the best
    sellers anywhere. With away = c·(1 - sale_focus)·(1 - sale_home): score =
    (1 - c·sale_focus - away)·the above + away·share(product) + c·sale_focus·share in the
    surge, `table` then holding the engagement without the surge's part
    (`recommender.popularity`), and each item's category weighed by its chance of being a
    view that follows the home category (not one of the surge's, `surge.from_surge`, nor a
    surge session's view elsewhere). The top `how_many` (product, score), without
    `leave_out`; equal scores in the order met (the products by engagement, the likeliest
    categories' products, the surge's)."""
    mixing = bool(surge.share) and sale_focus > 0
    if table.total <= 0 and not mixing:
        return []
    evidence = None
    sale = away = 0.0
    if mixing:
        if len(items) != len(categories):
            raise ValueError("popular: with a surge, `categories` holds one per item of `items`")
        came = sale_chance(surge, items, sale_focus)
        sale = sale_focus * came
        away = came * (1 - sale_focus) * (1 - sale_home)
        homeward = 1.0 - away / (1.0 - sale) if sale < 1 else 0.0
        evidence = [(1.0 - x) * homeward for x in from_surge(surge, items, sale)]
    home = 1 - sale - away  # the share of views that browse as anyone does
    base = (1 - focus) * home + away
    # beyond the first how_many + 1 by share, a product outside the likely categories and
    # the surge ranks below all of those: it never makes the list
    score = {p: base * share for p, share in table.top_shares[: how_many + 1]}
    homes = home_categories(table, categories, focus, evidence)[:HOME_CATEGORIES]
    for category, chance in homes:
        weight = focus * chance * home
        for p, in_category, share in table.category_shares[category]:
            score[p] = score.get(p, base * share) + weight * in_category
    if sale > 0:
        shares = table.shares
        for p, in_surge in surge.share.items():
            score[p] = score.get(p, base * shares.get(p, 0.0)) + sale * in_surge
    ranked = sorted(score.items(), key=itemgetter(1), reverse=True)[: how_many + 1]
    return [(p, round(v, ROUND)) for p, v in ranked if p != leave_out and v > 0][:how_many]


def in_categories(
    trending: dict[str, Sequence[T]], categories: Iterable[str], how_many: int,
    leave_out: T | None = None,
) -> list[T]:
    """Trending products of `categories` (newest first), one list of at most `how_many`,
    without `leave_out` (the session's newest item, which the blend never offers)."""
    out: list[T] = []
    for category in categories:
        out.extend(p for p in trending.get(category, ()) if p != leave_out)
        if len(out) >= how_many:
            break
    return list(dict.fromkeys(out))[:how_many]
