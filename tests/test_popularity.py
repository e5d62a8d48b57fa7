"""The popular source's engagement from session counts (recommender/popularity.py), by hand."""

from __future__ import annotations

import pytest

from recommender.popularity import EMPTY, engagement, popularity
from recommender.surge import day_before

CATEGORY = {"a": "shoes", "b": "shoes", "c": "bags", "s": "bags"}.get


def totals(table) -> dict:
    return {p: e for p, _c, e in table.overall}


def test_engagement_is_the_last_hour_plus_the_day_before_as_a_prior() -> None:
    before = day_before({"a": 5, "c": 5})  # shares 0.5 / 0.5
    # 6 product-sessions lately; the day before weighs as 2 hours of them: 12 at its shares;
    # "zz" counts in those 6 but has no known category, so it is not in the table
    table = engagement({"a": 3, "b": 1, "zz": 2}, before, CATEGORY, prior=2.0)
    assert totals(table) == pytest.approx({"a": 3 + 12 * 0.5, "b": 1.0, "c": 12 * 0.5})
    assert table.category_total == pytest.approx({"shoes": 10.0, "bags": 6.0})
    assert [p for p, _ in table.by_category["shoes"]] == ["a", "b"]
    # no sessions lately: the day before alone
    assert totals(engagement({}, before, CATEGORY)) == pytest.approx({"a": 0.5, "c": 0.5})
    # nothing at all
    assert engagement({}, day_before({}), CATEGORY).total == 0


def test_kept_scales_only_the_last_hour() -> None:
    before = day_before({"a": 5, "c": 5})
    table = engagement({"a": 4, "b": 2}, before, CATEGORY, kept={"a": 0.5}, prior=1.0)
    # lately 4·0.5 + 2 = 4 usual sessions; the day before as 1 hour of them
    assert totals(table) == pytest.approx({"a": 2 + 2.0, "b": 2.0, "c": 2.0})


def test_popularity_takes_the_surge_out_of_its_usual_table_only() -> None:
    before = day_before({"a": 50, "b": 40, "c": 10})
    quiet = popularity({"a": 5, "b": 4, "c": 1}, before, CATEGORY)
    assert not quiet.surge.share and quiet.usual is quiet.plain
    assert quiet.table(True) is quiet.table(False)
    lately = {"a": 5, "b": 4, "c": 1, "s": 40}  # "s": unseen the day before, 40 sessions
    found = popularity(lately, before, CATEGORY, prior=1.0)
    assert set(found.surge.share) == {"s"} and found.surge.kept == {"s": 0.0}
    assert totals(found.plain) == pytest.approx(totals(engagement(lately, before, CATEGORY,
                                                                  prior=1.0)))  # fmt: skip
    assert "s" in totals(found.plain) and "s" not in totals(found.usual)
    assert found.table(True) is found.usual and found.table(False) is found.plain
    assert EMPTY.plain.total == 0 and not EMPTY.surge.share
