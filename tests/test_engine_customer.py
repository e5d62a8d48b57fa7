"""The incremental customer views equal the SQL of customer_features and customer_hours at
every refresh: events entering the windows (late ones too), sessions crossing each window's
edge (their visit hour moves), kinds of events leaving a window entirely (their newest time
goes), the clock going back, and either view refreshed without the other."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest
from engine_support import fed_in_steps

from recommender import sqlfiles
from recommender.engine.customer import CustomerView, maintainers
from recommender.engine.refresh import ViewRunner
from recommender.engine.store import StateStore

T0 = datetime(2024, 3, 1, 0, 0)
VIEWS = ("customer_features", "customer_hours")
OBJECTS = [o for o in sqlfiles.load() if o.name in VIEWS]


def _events(n_sessions: int, seed: int) -> list[dict]:
    """Sessions of 12 users over 40 days, each up to 5 hours long (so many cross a window's
    edge and an hour), in time order with some events up to a day late."""
    rng = random.Random(seed)
    events = []
    for s in range(n_sessions):
        user = f"u{rng.randrange(12)}"
        start = T0 + timedelta(seconds=rng.uniform(0, 40 * 86400))
        t = start
        for _ in range(rng.randint(1, 8)):
            t += timedelta(seconds=rng.expovariate(1 / 2400))
            ts = t - timedelta(seconds=rng.uniform(0, 86400)) if rng.random() < 0.05 else t
            events.append({
                "event_id": f"e{len(events)}", "session_id": f"s{s}", "user_id": user,
                "product_id": f"p{rng.randrange(20)}", "product_name": "x", "category": "c",
                "action": rng.choice(["view", "view", "view", "add_to_cart", "purchase"]),
                "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "device": rng.choice(["mobile", "desktop", "tablet", None]),
            })  # fmt: skip
    events.sort(key=lambda e: e["ts"])
    return events


def _expected(reference: ViewRunner, now: datetime) -> dict[str, set]:
    reference.refresh(now, diff=False)
    return {name: set(reference.rows(name)) for name in VIEWS}


def test_incremental_equals_sql() -> None:
    store = StateStore(None)
    overrides = maintainers(sqlfiles.views(OBJECTS))
    assert set(overrides) == set(VIEWS)
    runner = ViewRunner(store.con, OBJECTS, overrides)
    reference = ViewRunner(store.con.cursor(), OBJECTS)
    mirrors: dict[str, set] = {name: set() for name in VIEWS}
    events = _events(700, seed=7)
    gone = 0
    now, steps = T0, 0
    for steps, now in fed_in_steps(store, events, random.Random(3), T0, T0 + timedelta(days=75),
                                   most=60, hours=[0, 0.5, 3, 11, 30, 80], back_at=40):
        only = set(VIEWS) if steps % 5 else {VIEWS[steps // 5 % 2]}
        results = runner.refresh(now, only=only)
        runner.commit([r.name for r in results])
        expected = _expected(reference, now)
        for result in results:
            mirror = mirrors[result.name]
            mirror -= set(result.deletes)
            mirror |= set(result.inserts)
            assert set(runner.rows(result.name)) == expected[result.name], (steps, now)
            assert mirror == expected[result.name], (steps, now)
            assert len(expected[result.name]) == result.row_count
            if result.name == VIEWS[0]:  # a window lost all of a user's cart adds
                carts = {r[:2]: r[4] for r in result.inserts}
                gone += sum(1 for r in result.deletes if r[4] and carts.get(r[:2]) == 0)
    assert steps >= 60
    assert gone  # and its other events stayed: last_cart_at went, the row did not
    assert not _expected(reference, now)["customer_hours"]  # at the end every event has left


def test_types_are_the_sql_types() -> None:
    store = StateStore(None)
    store.apply(_events(20, seed=1), {})
    now = T0 + timedelta(days=41)
    overrides = maintainers(sqlfiles.views(OBJECTS))
    fast = ViewRunner(store.con, OBJECTS, overrides)
    fast.refresh(now)
    reference = ViewRunner(store.con.cursor(), OBJECTS)
    reference.refresh(now)
    for name in VIEWS:
        assert fast._describe(name) == reference._describe(name)


def test_other_sql_is_refused() -> None:
    changed = []
    for obj in OBJECTS:
        text = obj.sql.replace("'purchase'", "'buy'") if obj.name == VIEWS[0] else obj.sql
        changed.append(sqlfiles.check_statement(obj.file, text))
    with pytest.raises(sqlfiles.ShapeError, match="its shape is"):
        maintainers(sqlfiles.views(changed))
    found = maintainers(sqlfiles.views(changed[1:]))
    assert list(found) == [VIEWS[1]]
    assert isinstance(found[VIEWS[1]], CustomerView)
