"""Surging products against the day before, the chance a session came for them, and the
popular source that mixes both (recommender/surge.py, blend.popular), by hand and on draws."""

from __future__ import annotations

import math
import random

import pytest

from recommender import blend
from recommender.popularity import engagement
from recommender.surge import NO_SURGE, day_before, from_surge, sale_chance, surge


def test_a_surge_by_hand() -> None:
    before = day_before({"a": 50, "b": 45, "s": 5, "gone": 100})
    assert before.share["a"] == 0.25 and before.floor == 0.5 / 200
    # listed now: a, b, s (their day-before shares 0.25 + 0.225 + 0.025 = 0.5 of all)
    found = surge({"a": 100, "b": 30, "s": 60}, before)
    # expected of s: 0.025 / 0.5 * 190 = 9.5; 60 > 2 * 9.5, 2(sqrt(60.375) - sqrt(9.875)) > 4
    assert found.share == {"s": 1.0}
    assert found.mass == pytest.approx(50.5 / 190)
    # a product nobody viewed the day before: expected 0, so 7 views surge, 6 do not
    # (2(sqrt(7.375) - sqrt(0.375)) = 4.21, 2(sqrt(6.375) - sqrt(0.375)) = 3.83)
    assert surge({"a": 100, "new": 7}, before).share == {"new": 1.0}
    assert surge({"a": 100, "new": 6}, before) is NO_SURGE
    # nothing to compare with
    assert surge({"a": 1}, day_before({})) is NO_SURGE
    assert surge({}, before) is NO_SURGE


def test_draws_from_the_day_before_do_not_surge_and_a_planted_surge_is_found() -> None:
    rng = random.Random(11)
    products = [f"p{i}" for i in range(500)]
    weights = [1 / (r + 1) ** 1.05 for r in range(500)]
    before = day_before(dict(zip(products, (w * 100_000 for w in weights), strict=True)))
    false_alarms, found = 0, 0
    for _ in range(30):
        now: dict[str, float] = {}
        for p in rng.choices(products, weights, k=5000):
            now[p] = now.get(p, 0) + 1
        false_alarms += len(surge(now, before).share)
        planted = rng.sample(products[50:], 10)
        for p in planted:
            now[p] = now.get(p, 0) + 100
        got = surge(now, before)
        found += len(set(got.share) & set(planted))
        assert set(got.share) <= set(planted)
    assert false_alarms == 0 and found == 300


def test_sale_chance_by_hand() -> None:
    before = day_before({"a": 50, "b": 45, "s": 5, "gone": 100})
    found = surge({"a": 100, "b": 30, "s": 60}, before)
    prior = found.mass / 0.8
    odds = prior / (1 - prior)
    # one view of s: (0.8 * 1 + 0.2 * 0.025) / 0.025; one of a: (0.2 * 0.25) / 0.25
    with_s = odds * (0.8 + 0.2 * 0.025) / 0.025
    assert sale_chance(found, ["s"], 0.8) == pytest.approx(with_s / (1 + with_s))
    with_a = odds * 0.2
    assert sale_chance(found, ["a"], 0.8) == pytest.approx(with_a / (1 + with_a))
    # an item unseen the day before counts at the floor; no items: the prior
    unseen = odds * (0.2 * before.floor) / before.floor
    assert sale_chance(found, ["zz"], 0.8) == pytest.approx(unseen / (1 + unseen))
    assert sale_chance(found, [], 0.8) == pytest.approx(prior)
    # off, no surge, or an all-surge session model with an item outside it
    assert sale_chance(found, ["s"], 0.0) == 0.0 == sale_chance(NO_SURGE, ["s"], 0.8)
    assert sale_chance(found, ["a"], 1.0) == 0.0
    assert sale_chance(found, ["s"] * 200, 0.8) == pytest.approx(1.0)


def test_popular_mixes_the_surge_by_the_sessions_chance() -> None:
    """score = (1 - c·sf)·(popular over the engagement without the surge's part, each item's
    category weighed by its chance of not being a surge view) + c·sf·share in the surge."""
    before = day_before({"s1": 300, "s2": 100, "b1": 200, "sale": 10, "tail": 1})
    recent = {"s1": 30, "s2": 10, "b1": 20, "sale": 40, "tail": 12}
    found = surge(recent, before)
    assert set(found.share) == {"sale", "tail"}
    # the sessions that did not come for it, the last hour only (no day-before prior);
    # "tail" surges too, though its category is not known, so it is not in the table
    category = {"s1": "shoes", "s2": "shoes", "b1": "bags", "sale": "bags"}.get
    table = engagement(recent, before, category, found.kept, prior=0.0)
    # of its 40 sessions, "sale" would have had 10/611 of 112 without the surge
    kept = 10 / 611 * 112 / 40
    assert found.kept == pytest.approx({"sale": kept, "tail": 1 / 611 * 112 / 12})
    items = ["sale", "s1"]
    sale = 0.8 * sale_chance(found, items, 0.8)
    # engagement without the surge: bags b1 20, sale 40·kept; shoes s1 30, s2 10
    bags, shoes = 20 + 40 * kept, 40.0
    total = bags + shoes
    # the view of "sale" is a surge view with chance x, so it tells the home category 1 - x
    x = sale * found.share["sale"] / (sale * found.share["sale"] + (1 - sale) * 10 / 611)
    odds_bags = bags / total * (1 + 0.5 / (0.5 * bags / total)) ** (1 - x)
    odds_shoes = shoes / total * (1 + 0.5 / (0.5 * shoes / total))
    home_bags = odds_bags / (odds_bags + odds_shoes)
    usual = {"s1": 0.5 * 30 / total + 0.5 * (1 - home_bags) * 30 / shoes,
             "s2": 0.5 * 10 / total + 0.5 * (1 - home_bags) * 10 / shoes,
             "b1": 0.5 * 20 / total + 0.5 * home_bags * 20 / bags,
             "sale": 0.5 * 40 * kept / total + 0.5 * home_bags * 40 * kept / bags}  # fmt: skip
    want = {p: (1 - sale) * usual.get(p, 0.0) + sale * found.share.get(p, 0.0)
            for p in {*usual, *found.share}}  # fmt: skip
    mixed = dict(blend.popular(table, ["bags", "shoes"], 10, 0.5, items=items, surge=found,
                               sale_focus=0.8))  # fmt: skip
    assert mixed == pytest.approx(want)
    assert math.isclose(sum(mixed.values()), 1.0)  # a chance over every product
    # sale_home 0: a surge session's other views go anywhere by engagement, and its views
    # tell the home category only as far as the session did not come for the surge
    away = sale / 0.8 * 0.2
    keep = 1 - away / (1 - sale)
    odds_bags = bags / total * (1 + 0.5 / (0.5 * bags / total)) ** ((1 - x) * keep)
    odds_shoes = shoes / total * (1 + 0.5 / (0.5 * shoes / total)) ** keep
    home_bags = odds_bags / (odds_bags + odds_shoes)
    engaged = {"s1": 30, "s2": 10, "b1": 20, "sale": 40 * kept}
    usual = {p: 0.5 * e / total + 0.5 * (home_bags * e / bags if p in ("b1", "sale")
                                         else (1 - home_bags) * e / shoes)
             for p, e in engaged.items()}  # fmt: skip
    want = {p: (1 - sale - away) * usual.get(p, 0.0) + away * engaged.get(p, 0.0) / total
            + sale * found.share.get(p, 0.0) for p in {*usual, *found.share}}  # fmt: skip
    elsewhere = dict(blend.popular(table, ["bags", "shoes"], 10, 0.5, items=items, surge=found,
                                   sale_focus=0.8, sale_home=0.0))  # fmt: skip
    assert elsewhere == pytest.approx(want)
    assert math.isclose(sum(elsewhere.values()), 1.0)
    # every product of a known category new with the surge: no usual part, the surge alone
    lately = {"old": 100, "fresh": 30}
    new = surge(lately, day_before({"old": 100}))
    assert new.kept == {"fresh": 0.0}
    fresh = engagement(lately, day_before({"old": 100}), {"fresh": "bags"}.get, new.kept,
                       prior=0.0)  # fmt: skip
    assert fresh.total == 0
    assert [p for p, _ in blend.popular(fresh, ["bags"], 10, 0.5, items=["fresh"], surge=new,
                                        sale_focus=0.8)] == ["fresh"]  # fmt: skip
    assert blend.popular(fresh, ["bags"], 10, 0.5, items=["fresh"]) == []  # no surge: nothing
    # with a surge, the categories follow the items one for one
    with pytest.raises(ValueError, match="one per item"):
        blend.popular(table, ["bags"], 10, 0.5, items=items, surge=found, sale_focus=0.8)
    # sale_focus 0 or no surge: the popular source as before
    assert blend.popular(table, ["bags"], 10, 0.5, items=items, surge=found) == blend.popular(
        table, ["bags"], 10, 0.5)  # fmt: skip


def test_from_surge_by_hand() -> None:
    before = day_before({"a": 50, "b": 45, "s": 5, "gone": 100})
    found = surge({"a": 100, "b": 30, "s": 60}, before)
    # "s": 0.5·1 / (0.5·1 + 0.5·0.025); "a" is not in the surge; "zz" neither
    assert from_surge(found, ["s", "a", "zz"], 0.5) == pytest.approx([1 / 1.025, 0.0, 0.0])
    assert from_surge(found, ["s"], 0.0) == [0.0]
    assert from_surge(found, ["s"], 1.0) == [1.0]
