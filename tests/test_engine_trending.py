"""The incremental trending maintainer equals the SQL of trending_by_category at every refresh:
events entering their windows (late ones too), windows leaving the hour (at exact window
boundaries), bot sessions, sessions that turn bot and back, ties and renamed products."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from engine_support import bot_mix

from recommender import sqlfiles
from recommender.engine.engine import incremental_overrides
from recommender.engine.refresh import ViewRunner
from recommender.engine.sessions import maintainers as session_maintainers
from recommender.engine.store import StateStore
from recommender.engine.trending import TrendingMaintainer

T0 = datetime(2024, 3, 15, 14, 0)
FIVE = timedelta(minutes=5)
OBJECTS = [o for o in sqlfiles.load() if o.name in ("session_features", "trending_by_category")]


def _events(n: int, seed: int) -> list[dict]:
    """Human sessions (some events up to 10 minutes late) over 3 categories, bot bursts,
    fast sessions that come back 8 minutes later (human again)."""
    return bot_mix(n, seed, T0, spacing=2.0, late=600, products=30, sessions=200,
                   actions=["view", "view", "view", "add_to_cart", "purchase"], period=500,
                   burst=25, burst_gap=0.2, comeback=timedelta(minutes=8),
                   categories=3)  # fmt: skip


def _boundary(now: datetime) -> datetime:
    """The first window boundary at or after `now` (a window starting an hour earlier
    leaves the view exactly there)."""
    step = int(FIVE.total_seconds())
    seconds = int((now - datetime(1970, 1, 1)).total_seconds())
    return datetime(1970, 1, 1) + timedelta(seconds=-(-seconds // step) * step)


@pytest.mark.parametrize("sessions", ["sql", "maintained"])
def test_incremental_equals_sql(sessions: str, monkeypatch) -> None:
    """With session_features by its SQL, flipped sessions' events come from the refresh's
    scan of touched sessions; with the session maintainer, from the store, read from the
    flipped sessions' oldest click on (which the maintainer knows)."""
    store = StateStore(None)
    sql_runner = ViewRunner(store.con, OBJECTS)
    maintainer = TrendingMaintainer(FIVE, timedelta(hours=1))
    objects, overrides = OBJECTS, {"trending_by_category": maintainer}
    if sessions == "maintained":
        objects = [o for o in sqlfiles.load() if o.name in (
            "session_features", "vmis_history", "trending_by_category")]  # fmt: skip
        overrides.update(session_maintainers(objects))
    floors: list[datetime | None] = []
    fetch = maintainer._fetch

    def spied(con, where, params, since, source="flashrec_events", ts_from=None):
        if "list_contains" in where:
            floors.append(ts_from)
        return fetch(con, where, params, since, source, ts_from)

    monkeypatch.setattr(maintainer, "_fetch", spied)
    fast = ViewRunner(store.con, objects, overrides)
    mirror: set[tuple] = set()
    events = _events(5000, seed=4)
    now = T0
    checked = flipped = unflagged = 0
    for start in range(0, len(events), 350):
        store.apply(events[start : start + 350], {})
        before = set(maintainer.bots)
        for clock in (max(now, store.max_event_time()), _boundary(now) + FIVE):
            now = max(now, clock)
            result = next(r for r in fast.refresh(now) if r.name == "trending_by_category")
            fast.commit()
            mirror -= set(result.deletes)
            mirror |= set(result.inserts)
            sql_runner.refresh(now, diff=False)
            expected = set(sql_runner.rows("trending_by_category"))
            assert mirror == expected, now
            assert result.row_count == len(expected)
            checked += len(expected)
        flipped += len(before ^ maintainer.bots)
        unflagged += len(before - maintainer.bots)
    assert checked > 1000 and flipped > 20 and unflagged > 2 and maintainer.bots
    if sessions == "sql":  # from the refresh's shared scan of touched sessions
        assert maintainer.flip_source == "__events_by_session_id"
        assert not any(floors)
    else:  # from the store, mostly from the sessions' oldest click on
        assert maintainer.flip_source == "flashrec_events"
        assert sum(f is not None for f in floors) > len(floors) / 2
    # an hour and a window later every window has left the view
    later = now + timedelta(hours=1, minutes=5)
    result = next(r for r in fast.refresh(later) if r.name == "trending_by_category")
    assert result.row_count == 0 and len(result.deletes) == len(mirror)
    assert not maintainer.groups and not maintainer.published
    store.close()


def test_first_refresh_builds_the_view() -> None:
    """The first refresh (and a restart) builds the state from the stored events."""
    store = StateStore(None)
    events = _events(3000, seed=8)
    store.apply(events, {})
    now = store.max_event_time()
    fast = ViewRunner(store.con, OBJECTS,
                      {"trending_by_category": TrendingMaintainer(FIVE, timedelta(hours=1))})
    fast.refresh(now, diff=False)
    sql_runner = ViewRunner(store.con, OBJECTS)
    sql_runner.refresh(now, diff=False)
    expected = sorted(sql_runner.rows("trending_by_category"))
    assert expected and sorted(fast.rows("trending_by_category")) == expected
    store.close()



@pytest.mark.parametrize(("view_name", "edit", "kept"), [
    ("trending_by_category", ("THEN 3", "THEN 2"), False),  # other weights
    ("trending_by_category", ("rank <= 10", "rank <= 3"), True),  # a top 3
    ("co_view_pairs", (">= 3", ">= 2"), True),  # pairs of 2 sessions
])  # fmt: skip
def test_used_only_for_the_sql_it_reproduces(view_name: str, edit: tuple[str, str],
                                              kept: bool) -> None:  # fmt: skip
    """An incremental maintainer (trending here, co-view in coview.py) serves its view while
    the view's query has the shape it reproduces, with the thresholds of the SQL; after
    another edit the engine refuses to start (the view's catalog still names it)."""
    assert view_name in incremental_overrides(sqlfiles.load())
    view = next(o for o in sqlfiles.load() if o.name == view_name)
    changed = sqlfiles.check_statement(view.file, view.sql.replace(*edit))
    changed.meta = view.meta
    assert changed.status == "ok" and changed.sql != view.sql
    if kept:
        maintainer = incremental_overrides([changed])[view_name]
        limit = maintainer.top if view_name == "trending_by_category" else maintainer.min_sessions
        assert limit == int(edit[1].split()[-1])
    else:
        with pytest.raises(ValueError, match=f"{view_name}: .*shape"):
            incremental_overrides([changed])
