"""The incremental session views equal the SQL of session_features and vmis_history at every
refresh: clicks arriving late (older than a session's last), clicks with equal times, bots
at the rule's edge (exactly one second apart), sessions crossing the 7-day edge, sessions
idle long enough to leave memory and coming back, the clock going back, and either view
refreshed without the other."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from engine_support import fed_in_steps

from recommender import sqlfiles
from recommender.engine.engine import EngineConfig, _apart, incremental_overrides
from recommender.engine.refresh import ViewRunner
from recommender.engine.sessions import VIEWS, SessionView, maintainers
from recommender.engine.store import StateStore

T0 = datetime(2024, 3, 1, 0, 0)
OBJECTS = [o for o in sqlfiles.load() if o.name in VIEWS]


def _events(n_sessions: int, seed: int) -> list[dict]:
    """Sessions over 20 days: human (minutes apart, some days apart), bot-like (under a
    second), exactly one second apart, and clicks with equal times; 5% arrive late."""
    rng = random.Random(seed)
    events = []
    for s in range(n_sessions):
        start = T0 + timedelta(seconds=rng.uniform(0, 20 * 86400))
        kind = rng.choice(["human", "human", "fast", "second", "same"])
        t = start
        for _ in range(rng.randint(1, 12)):
            if kind == "human":
                step = rng.expovariate(1 / 900) if rng.random() > 0.1 else rng.uniform(0, 4e5)
            elif kind == "fast":
                step = rng.uniform(0.1, 0.9)
            elif kind == "second":
                step = 1.0
            else:
                step = rng.choice([0.0, 0.0, 2.5])
            t += timedelta(seconds=step)
            late = rng.random() < 0.05
            ts = t - timedelta(seconds=rng.uniform(0, 7200)) if late else t
            events.append({
                "event_id": f"e{rng.randrange(10**6):06d}-{len(events)}", "session_id": f"s{s}",
                "user_id": f"u{rng.randrange(3)}", "product_id": f"p{rng.randrange(15)}",
                "product_name": "x", "category": f"c{rng.randrange(4)}",
                "action": rng.choice(["view", "view", "view", "add_to_cart", "purchase"]),
                "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "device": rng.choice(["mobile", "desktop", None]),
            })  # fmt: skip
    events.sort(key=lambda e: e["ts"])
    # arrival order: mostly by time, some events a few places later
    for i in range(len(events) - 1):
        if rng.random() < 0.1:
            j = min(len(events) - 1, i + rng.randint(1, 30))
            events[i], events[j] = events[j], events[i]
    return events


def _key(row: Any) -> tuple:
    return tuple(tuple(v) if isinstance(v, list) else v for v in row)


def _expected(reference: ViewRunner, now: datetime) -> dict[str, set]:
    reference.refresh(now, diff=False)
    return {name: {_key(r) for r in reference.rows(name)} for name in VIEWS}


@pytest.mark.parametrize("idle_minutes", [30, 100_000])
def test_incremental_equals_sql(idle_minutes: int) -> None:
    store = StateStore(None)
    overrides = maintainers(sqlfiles.views(OBJECTS), idle=timedelta(minutes=idle_minutes))
    assert set(overrides) == set(VIEWS)
    state = overrides[VIEWS[0]].state
    runner = ViewRunner(store.con, OBJECTS, overrides)
    reference = ViewRunner(store.con.cursor(), OBJECTS)
    mirrors: dict[str, set] = {name: set() for name in VIEWS}
    events = _events(500, seed=11)
    saw_bots = False
    now, steps = T0, 0
    for steps, now in fed_in_steps(store, events, random.Random(5), T0, T0 + timedelta(days=30),
                                   most=40, hours=[0, 0, 0.2, 1, 9, 30], back_at=50):
        only = set(VIEWS) if steps % 5 or steps < 2 else {VIEWS[steps // 5 % 2]}
        results = runner.refresh(now, only=only)
        runner.commit([r.name for r in results])
        expected = _expected(reference, now)
        for result in results:
            mirror = mirrors[result.name]
            for row in result.deletes:
                assert _key(row) in mirror, (steps, result.name, row)
                mirror.discard(_key(row))
            mirror |= {_key(r) for r in result.inserts}
            assert mirror == expected[result.name], (steps, now, result.name)
            assert result.row_count == len(expected[result.name])
        if VIEWS[0] in only:  # the bot set the runner keeps from the changes
            assert runner.bots() == {r[0] for r in expected[VIEWS[0]] if r[-1]}
        saw_bots = saw_bots or bool(runner.bots())
    assert steps >= 80
    assert state.rebuilt  # late clicks, the edge, idle sessions coming back
    assert not expected[VIEWS[0]]  # at the end every click has left the horizon
    assert saw_bots


def test_types_and_first_rows_are_the_sqls() -> None:
    store = StateStore(None)
    store.apply(_events(60, seed=2), {})
    now = T0 + timedelta(days=10)
    fast = ViewRunner(store.con, OBJECTS, maintainers(sqlfiles.views(OBJECTS)))
    fast.refresh(now)
    fast.commit()
    more = _events(80, seed=3)
    store.apply([dict(e, event_id="n" + e["event_id"]) for e in more], {})
    results = {r.name: r for r in fast.refresh(now + timedelta(hours=1))}
    reference = ViewRunner(store.con.cursor(), OBJECTS)
    reference.refresh(now + timedelta(hours=1))
    for name in VIEWS:
        assert results[name].inserts
        assert results[name].types == reference._describe(name)[1]
        assert results[name].columns == reference._describe(name)[0]


def test_used_only_for_the_sql_it_reproduces() -> None:
    found = incremental_overrides(sqlfiles.load())
    assert all(isinstance(found[v], SessionView) for v in VIEWS)
    changed = []
    for obj in OBJECTS:  # the bot rule's threshold changes: read from the SQL
        text = obj.sql.replace("event_count >= 5", "event_count >= 6")
        changed.append(sqlfiles.check_statement(obj.file, text))
    found = maintainers(sqlfiles.views(changed))
    assert found[VIEWS[0]].state.bot_rule[0] == 6
    changed = []
    for obj in OBJECTS:  # the bot rule's form changes: not the query the maintainer keeps
        text = obj.sql.replace("event_count >= 5", "distinct_products >= 5")
        changed.append(sqlfiles.check_statement(obj.file, text))
    with pytest.raises(sqlfiles.ShapeError, match="its shape is"):
        maintainers(sqlfiles.views(changed))
    # a view that reads session_features by SQL would read a table no longer kept
    trending = next(o for o in sqlfiles.load() if o.name == "trending_by_category")
    edited = sqlfiles.check_statement(trending.file, trending.sql.replace("THEN 3", "THEN 4"))
    assert edited.sql != trending.sql
    found = incremental_overrides([*OBJECTS, edited])
    assert "trending_by_category" not in found
    assert not set(found) & set(VIEWS)


def test_session_views_apart_are_refreshed_by_their_sql() -> None:
    """The session views share one state: with one of them on a cadence or in a tier of
    its own, their SQL maintains all of them; other views apart change nothing."""
    found = incremental_overrides(sqlfiles.load(), frozenset({"vmis_history"}))
    assert not set(found) & set(VIEWS)
    assert "co_view_pairs" in found
    found = incremental_overrides(sqlfiles.load(), frozenset({"customer_features"}))
    assert all(isinstance(found[v], SessionView) for v in VIEWS)
    config = EngineConfig.of(pg_dsn="", state_path=None,
                             view_intervals={"session_features": 5.0})  # fmt: skip
    assert _apart(config) == {"session_features", *config.background.views}
    # the background views refreshed with the others
    config.background = replace(config.background, interval=0)
    assert _apart(config) == {"session_features"}


def test_built_on_an_empty_store_then_fed() -> None:
    store = StateStore(None)
    fast = ViewRunner(store.con, OBJECTS, maintainers(sqlfiles.views(OBJECTS)))
    assert all(not r.inserts for r in fast.refresh(T0))
    fast.commit()
    store.apply(_events(30, seed=6), {})
    now = T0 + timedelta(days=21)
    results = {r.name: r for r in fast.refresh(now)}
    reference = ViewRunner(store.con.cursor(), OBJECTS)
    expected = _expected(reference, now)
    for name in VIEWS:
        assert {_key(r) for r in results[name].inserts} == expected[name] != set()


def test_vmis_history_alone_first_is_refused() -> None:
    store = StateStore(None)
    store.apply(_events(10, seed=4), {})
    fast = ViewRunner(store.con, OBJECTS, maintainers(sqlfiles.views(OBJECTS)))
    fast.refresh(T0 + timedelta(days=5))
    fast.commit()
    fast.refresh(T0 + timedelta(days=6))
    with pytest.raises(RuntimeError, match="same refresh"):
        fast.overrides[VIEWS[1]].override(store.con, T0 + timedelta(days=6))


def test_clicks_out_of_order_need_no_scan() -> None:
    """A topic whose producer does not key by session: its partitions are read unevenly, so
    a session's clicks arrive out of order (earlier than its last, before its first, between
    two, on an equal time, a product's first view moving earlier). They are placed in
    memory, not rebuilt from the store, and the views equal the SQL at every refresh."""
    rng = random.Random(8)
    events = []
    for s in range(120):
        t = T0 + timedelta(seconds=rng.uniform(0, 3600))
        fast = s % 4 == 0  # bot-like: the rule's outcome changes as clicks fill in
        for _ in range(rng.randint(2, 14)):
            t += timedelta(seconds=rng.uniform(0.05, 0.95) if fast else rng.expovariate(1 / 60))
            if rng.random() < 0.1:
                t -= timedelta(seconds=rng.choice([0, 0.5]))  # an equal or earlier time
            events.append({
                "event_id": f"e{len(events):05d}", "session_id": f"s{s}", "user_id": f"u{s}",
                "product_id": f"p{rng.randrange(8)}", "product_name": "x",
                "category": f"c{rng.randrange(3)}",
                "action": rng.choice(["view", "view", "add_to_cart", "purchase"]),
                "ts": t.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "device": "mobile",
            })  # fmt: skip
    events.sort(key=lambda e: e["ts"])
    partitions = [events[p::3] for p in range(3)]  # each in time order, read unevenly
    store = StateStore(None)
    overrides = maintainers(sqlfiles.views(OBJECTS), idle=timedelta(days=1))
    state = overrides[VIEWS[0]].state
    runner = ViewRunner(store.con, OBJECTS, overrides)
    reference = ViewRunner(store.con.cursor(), OBJECTS)
    mirrors: dict[str, set] = {name: set() for name in VIEWS}
    now = T0 + timedelta(hours=2)  # fixed: no click crosses the 7-day edge
    late = 0
    while any(partitions):
        p = rng.choice([i for i, part in enumerate(partitions) if part])
        take = rng.randint(1, 60)
        batch, partitions[p] = partitions[p][:take], partitions[p][take:]
        stored_last = {s: state.sessions[s].last for s in state.sessions}
        late += sum(1 for e in batch if e["session_id"] in stored_last
                    and _micros(e["ts"]) < stored_last[e["session_id"]])  # fmt: skip
        store.apply(batch, {})
        results = runner.refresh(now)
        runner.commit([r.name for r in results])
        expected = _expected(reference, now)
        for result in results:
            mirror = mirrors[result.name]
            for row in result.deletes:
                assert _key(row) in mirror, (result.name, row)
                mirror.discard(_key(row))
            mirror |= {_key(r) for r in result.inserts}
            assert mirror == expected[result.name], result.name
    assert late > 50  # clicks older than their session's last one did arrive
    assert state.rebuilt == 0


def _micros(ts: str) -> int:
    t = datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ")
    return (t - datetime(1970, 1, 1)) // timedelta(microseconds=1)
