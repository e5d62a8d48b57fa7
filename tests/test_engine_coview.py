"""The Numba co-view maintainer equals the SQL of co_view_pairs at every refresh, as events
enter and leave the 30-minute window (including late events and repeated views)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from recommender import sqlfiles
from recommender.engine.coview import CoViewMaintainer
from recommender.engine.refresh import ViewRunner
from recommender.engine.store import StateStore

T0 = datetime(2024, 3, 15, 14, 0)


def _events(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        t = T0 + timedelta(seconds=i * 1.5 + rng.uniform(-120, 0))  # some arrive late
        p = rng.randrange(25)
        out.append({
            "event_id": f"e{i}", "session_id": f"s{rng.randrange(150)}", "user_id": "u",
            "product_id": f"p{p}", "product_name": f"name {p}" + ("!" if rng.random() < 0.05
                                                                  else ""),
            "category": "c", "action": rng.choice(["view", "view", "view", "add_to_cart"]),
            "ts": t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z", "device": None, "price": None,
        })  # fmt: skip
    return out


def test_incremental_equals_sql() -> None:
    objects = [o for o in sqlfiles.load() if o.name == "co_view_pairs"]
    store = StateStore(None)
    sql_runner = ViewRunner(store.con, objects)
    maintainer = CoViewMaintainer(timedelta(minutes=30))
    fast_runner = ViewRunner(store.con, objects, {"co_view_pairs": maintainer.override})
    events = _events(6000, seed=5)
    checked = 0
    for start in range(0, len(events), 400):
        store.apply(events[start : start + 400], {})
        now = store.max_event_time()
        expected = sql_runner.refresh(now, diff=False)
        expected_rows = sorted(sql_runner.rows("co_view_pairs"))
        fast_runner.refresh(now, diff=False)
        assert sorted(fast_runner.rows("co_view_pairs")) == expected_rows
        checked += len(expected_rows)
        assert expected[0].row_count == len(expected_rows)
    # the window slid well past the first events: pairs entered and left
    assert checked > 100 and maintainer.chunks
    later = store.max_event_time() + timedelta(minutes=31)
    fast_runner.refresh(later, diff=False)
    assert fast_runner.rows("co_view_pairs") == []
    store.close()


def test_deltas_replay_into_the_sql_result() -> None:
    objects = [o for o in sqlfiles.load() if o.name == "co_view_pairs"]
    store = StateStore(None)
    sql_runner = ViewRunner(store.con, objects)
    fast = ViewRunner(store.con, objects, {"co_view_pairs": CoViewMaintainer()})
    mirror: set[tuple] = set()
    events = _events(5000, seed=9)
    for start in range(0, len(events), 500):
        store.apply(events[start : start + 500], {})
        now = store.max_event_time()
        (result,) = fast.refresh(now)
        fast.commit()
        mirror -= set(result.deletes)
        mirror |= set(result.inserts)
        sql_runner.refresh(now, diff=False)
        assert mirror == set(sql_runner.rows("co_view_pairs"))
        assert result.row_count == len(mirror)
    assert "co_view_pairs" in fast.delta_ready
    store.close()
