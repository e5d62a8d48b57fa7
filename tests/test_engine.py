"""The engine's refresh core against PostgreSQL (no broker): the views it publishes equal a
batch run of the same SQL over the same events at the same clock, refresh after refresh;
restarts resume; malformed and repeated events are dead-lettered; the change feed replays
into the view."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port, wait_until
from engine_support import Msg, pg_meta, pg_rows, raw, valid_events

from producers.flash_sale import FlashSaleConfig, generate
from producers.replay import read_dataset
from recommender.engine import Engine, EngineConfig, PgSubscription, evaluate
from recommender.postgres.local import LocalPostgres
from recommender.postgres.publisher import DEFAULT_FEED_VIEWS


def make_engine(dsn: str, state: Path, letters: list[bytes]) -> Engine:
    engine = Engine(EngineConfig.of(pg_dsn=dsn, state_path=state, clock="event"))
    engine._send_dead_letters = letters.extend  # no broker here: collect the dead letters
    return engine


def assert_views_equal(engine: Engine, dsn: str, items: list) -> None:
    expected = evaluate(valid_events(items), engine.clock())
    assert set(expected) == set(engine.view_names)
    for view, rows in expected.items():
        assert pg_rows(dsn, view) == rows, view


def flash_sale(n: int, **kw) -> list:
    cfg = FlashSaleConfig(seed=7, events=n, rate=20.0, bot_share=0.05, **kw)
    return list(generate(cfg))


def test_flash_sale_refreshes_equal_batch_sql(dsn: str, tmp_path: Path) -> None:
    items = flash_sale(6000, malformed_share=0.02)
    items += [items[10], items[11]]  # repeated event_ids
    letters: list[bytes] = []
    engine = make_engine(dsn, tmp_path / "state.duckdb", letters)
    msgs = [Msg(raw(x), i) for i, x in enumerate(items)]
    for start in range(0, len(msgs), 1500):
        engine.ingest(msgs[start : start + 1500])
        engine.refresh()
        seen = [x for x in items[: start + 1500]]
        assert_views_equal(engine, dsn, seen)
    rows = {v: len(pg_rows(dsn, v)) for v in engine.view_names}
    assert rows["co_view_pairs"] > 0 and rows["trending_by_category"] > 0
    counts = engine.store.counters()
    valid = valid_events(items)
    assert counts["accepted"] == len(valid)
    assert counts["accepted"] + counts["rejected"] == len(items)
    assert len(letters) == counts["rejected"] >= 2
    assert any(b"duplicate event_id" in x for x in letters)
    meta = pg_meta(dsn)
    assert int(meta["accepted"]) == len(valid)
    engine.stop()


def test_partitions_read_unevenly_equal_batch_sql(dsn: str, tmp_path: Path) -> None:
    """A producer that does not key by session spreads each session's clicks over the
    partitions (in blocks, as librdkafka's sticky partitioner does), and the engine reads
    them unevenly: sessions get clicks older than their last one. PostgreSQL still equals
    the batch SQL after every refresh."""
    items = [x for x in flash_sale(6000) if isinstance(x, dict)]
    blocks = [items[i : i + 40] for i in range(0, len(items), 40)]
    partitions = [sum(blocks[p::3], []) for p in range(3)]
    engine = make_engine(dsn, tmp_path / "state.duckdb", [])
    seen: list = []
    read = [0, 0, 0]  # next offset per partition
    step = 0
    while any(partitions):
        for p, part in enumerate(partitions):  # one partition runs up to 700 events ahead
            take = [700, 150, 300][(p + step) % 3]
            batch, partitions[p] = part[:take], part[take:]
            engine.ingest([Msg(raw(x), read[p] + i, partition=p) for i, x in enumerate(batch)])
            read[p] += len(batch)
            seen += batch
        engine.refresh()
        assert_views_equal(engine, dsn, seen)
        step += 1
    engine.stop()
    last: dict[str, str] = {}  # session -> its latest click read so far
    late = 0
    for x in seen:
        late += x["ts"] < last.get(x["session_id"], x["ts"])
        last[x["session_id"]] = max(x["ts"], last.get(x["session_id"], x["ts"]))
    assert late > 100  # sessions did get clicks older than their last one


@pytest.mark.parametrize(
    ("where", "rel"),
    [("sample_data", "sessions_train.tsv"),
     ("shared_data", "yoochoose_rsc15/yoochoose-clicks-100k_test.txt")],
    ids=["sample", "shared"],
)
def test_real_data_and_restart(
    dsn: str, tmp_path: Path, request: pytest.FixtureRequest, where: str, rel: str
) -> None:
    found = request.getfixturevalue(where)  # shared_data skips where the data is absent
    path = (found.root if where == "sample_data" else found) / rel
    items = list(itertools.islice(read_dataset(path, "yoochoose"), 5000))
    letters: list[bytes] = []
    msgs = [Msg(raw(x), i) for i, x in enumerate(items)]
    first, second = len(items) * 2 // 5, len(items) * 3 // 5
    engine = make_engine(dsn, tmp_path / "state.duckdb", letters)
    engine.ingest(msgs[:first])
    engine.refresh()
    engine.ingest(msgs[first:second])  # stored, not yet published: then the process dies
    engine.store.close()
    engine.publisher.close()
    again = make_engine(dsn, tmp_path / "state.duckdb", letters)
    assert again.store.offsets()[("clickstream", 0)] == second
    again.ingest(msgs[second:])
    again.refresh()
    assert_views_equal(again, dsn, items)
    assert len(pg_rows(dsn, "vmis_history")) > 100
    again.stop()


@pytest.mark.parametrize("logged", [False, True], ids=["unlogged", "logged"])
def test_views_come_back_after_a_postgres_crash(tmp_path: Path, logged: bool) -> None:
    """With unlogged_views, views without a change feed are UNLOGGED tables: a crash of
    PostgreSQL empties them, and the engine's next start republishes them. Followed views
    (and by default all of them) are logged and keep their rows."""
    import psycopg

    items = flash_sale(6000)
    msgs = [Msg(raw(x), i) for i, x in enumerate(items)]
    with LocalPostgres(tmp_path / "pg", free_port()) as pg:
        config = EngineConfig.of(pg_dsn=pg.dsn, state_path=tmp_path / "state.duckdb",
                                 clock="event", unlogged_views=not logged)  # fmt: skip
        engine = Engine(config)
        engine.ingest(msgs[:4000])
        engine.refresh()
        engine.stop()
        views = engine.view_names
        assert all(pg_rows(pg.dsn, v) for v in views)
        with psycopg.connect(pg.dsn) as conn:
            kinds = dict(conn.execute(  # the views' tables (public holds SQL views over them)
                "SELECT relname, relpersistence FROM pg_class WHERE relname = ANY(%s) "
                "AND relkind = 'r' AND relnamespace = 'flashrec'::regnamespace",
                (views,)).fetchall())  # fmt: skip
            # the server commits asynchronously (synchronous_commit=off): a crash may also
            # lose its last commits, which the engine's next start republishes as well;
            # here only the unlogged tables may lose rows
            conn.execute("CHECKPOINT")
        unlogged = set() if logged else set(views) - set(DEFAULT_FEED_VIEWS)
        assert {"co_view_pairs", "customer_features"} <= unlogged or logged
        assert kinds == {v: "u" if v in unlogged else "p" for v in views}
        pg._run("pg_ctl", "-w", "-D", str(pg.data_dir), "-m", "immediate", "stop")  # a crash
        pg.start()
        assert {v for v in views if not pg_rows(pg.dsn, v)} == unlogged
        again = Engine(config)
        again.ingest(msgs[4000:])
        again.refresh()
        assert_views_equal(again, pg.dsn, items)
        again.stop()


def test_change_feed_replays_into_the_view(dsn: str, tmp_path: Path) -> None:
    items = flash_sale(4000)
    engine = make_engine(dsn, tmp_path / "state.duckdb", [])
    # customer_features (background tier) and session_features: changes as ArrowRows
    followed = ("co_view_pairs", "vmis_history", "customer_features", "session_features")
    subs = {v: engine.subscribe(v) for v in followed}
    mirror: dict[str, set] = {v: set() for v in subs}
    msgs = [Msg(raw(x), i) for i, x in enumerate(items)]
    remote = None
    for start in range(0, len(msgs), 800):
        engine.ingest(msgs[start : start + 800])
        engine.refresh()
        if remote is None:  # another process: opens the feed, then reads the table
            remote = PgSubscription(dsn, "vmis_history")
            remote_mirror = {r[0]: tuple(r[1]) for r in pg_rows(dsn, "vmis_history")}
        for view, sub in subs.items():
            for batch in sub.poll(0.1):
                assert batch.view == view
                for row in batch.deletes:
                    mirror[view].remove(_key(row))
                for row in batch.inserts:
                    mirror[view].add(_key(row))
        for batch in remote.poll(0.5):
            for row in batch.deletes:
                remote_mirror.pop(row[batch.columns.index("session_id")], None)
            for row in batch.inserts:
                at = batch.columns.index
                remote_mirror[row[at("session_id")]] = tuple(row[at("items")])
    for view in subs:
        assert mirror[view] == {_key(r) for r in pg_rows(dsn, view)}, view
    assert remote_mirror == {r[0]: tuple(r[1]) for r in pg_rows(dsn, "vmis_history")}
    assert remote_mirror
    remote.close()
    # co_view_pairs changes stay in process: PostgreSQL's feed has only the followed views
    import psycopg

    with psycopg.connect(dsn) as conn:
        logged = {v for (v,) in conn.execute("SELECT DISTINCT view FROM flashrec_changes")}
    assert "vmis_history" in logged and logged <= set(DEFAULT_FEED_VIEWS)
    engine.stop()


def _key(row) -> tuple:
    return tuple(tuple(v) if isinstance(v, list) else v for v in row)


def test_windows_expire_as_the_clock_jumps(dsn: str, tmp_path: Path) -> None:
    """Partial (per-session/user) recompute and the co-view maintainer retract rows whose
    events leave the 30-minute, 1-hour, 1-day and 7-day windows."""
    from datetime import timedelta

    from recommender.engine.store import parse_naive
    from recommender.events import format_ts

    items = flash_sale(2000)
    last = parse_naive(items[-1]["ts"])
    for k, jump in enumerate([timedelta(minutes=20), timedelta(hours=2), timedelta(days=2),
                              timedelta(days=9)]):  # fmt: skip
        late = dict(items[-1], event_id=f"late-{k}", ts=format_ts(last + jump))
        items.append(late)
    engine = make_engine(dsn, tmp_path / "state.duckdb", [])
    msgs = [Msg(raw(x), i) for i, x in enumerate(items)]
    engine.ingest(msgs[:2000])
    engine.refresh()
    for i in range(2000, len(msgs)):
        engine.ingest([msgs[i]])
        engine.refresh()
        assert_views_equal(engine, dsn, items[: i + 1])
    assert len(pg_rows(dsn, "session_features")) == 1
    engine.stop()


def test_session_turning_bot_leaves_earlier_windows(dsn: str, tmp_path: Path) -> None:
    """Trending is recomputed per 5-minute window: a session whose fast clicks began in an
    earlier window and that is flagged a bot later must leave that window too, and the
    co-view pairs it made must go."""
    from datetime import datetime, timedelta

    from recommender.events import format_ts

    t0 = datetime(2026, 3, 1, 14, 4, 57)

    def click(i: int, session: str, product: str, at: datetime) -> dict:
        return {"event_id": f"b{i}", "session_id": session, "user_id": session,
                "product_id": product, "product_name": product, "category": "shoes",
                "action": "view", "ts": format_ts(at)}  # fmt: skip

    humans = [click(100 + i, f"h{i % 3}", f"p{i % 2}", t0 - timedelta(minutes=3, seconds=i * 20))
              for i in range(9)]  # fmt: skip
    fast = [click(i, "crawler", f"p{5 + i}", t0 + timedelta(seconds=0.6 * i)) for i in range(4)]
    later = [click(10 + i, "crawler", f"p{5 + i}", t0 + timedelta(seconds=3 + 0.4 * i))
             for i in range(4)]  # fmt: skip
    items = humans + fast + [dict(h, event_id=f"x{i}", session_id=f"y{i}")
                             for i, h in enumerate(fast * 3)]  # fmt: skip
    engine = make_engine(dsn, tmp_path / "state.duckdb", [])
    engine.ingest([Msg(raw(x), i) for i, x in enumerate(items)])
    engine.refresh()
    assert_views_equal(engine, dsn, items)
    window = datetime(2026, 3, 1, 14, 0)
    before = {r[2] for r in pg_rows(dsn, "trending_by_category") if r[7].replace(tzinfo=None)
              == window}  # fmt: skip
    assert "p5" in before  # 4 clicks in 1.8 s: not yet a bot (5 events needed)
    engine.ingest([Msg(raw(x), len(items) + i) for i, x in enumerate(later)])
    engine.refresh()
    assert_views_equal(engine, dsn, items + later)
    flags = {r[0]: r[-1] for r in pg_rows(dsn, "session_features")}
    assert flags["crawler"] is True
    views = {r[2]: r[5] for r in pg_rows(dsn, "trending_by_category")
             if r[7].replace(tzinfo=None) == window}  # fmt: skip
    assert views["p5"] == 3  # the crawler's view left the 14:00 window; the three others stay
    engine.stop()


def test_views_are_computed_without_automatic_gc(dsn: str, tmp_path: Path) -> None:
    """The automatic GC is off while the main views are computed and back on after; a
    thread still inside keeps it off; a GC the process turned off stays off."""
    import gc

    from recommender.engine.engine import gc_paused

    items = [i for i in flash_sale(100) if isinstance(i, dict)]
    engine = make_engine(dsn, tmp_path / "state.duckdb", [])
    seen: list[bool] = []
    refresh = engine.runner.refresh

    def watched(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(gc.isenabled())
        return refresh(*args, **kwargs)

    engine.runner.refresh = watched  # type: ignore[method-assign]
    try:
        engine.ingest([Msg(raw(e), n) for n, e in enumerate(items)])
        assert gc.isenabled()
        engine.refresh()
        assert seen == [False] and gc.isenabled()
        with gc_paused():
            engine.refresh()  # another thread's pause is still on when this one ends
            assert not gc.isenabled()
        assert gc.isenabled()
        gc.disable()
        try:
            engine.refresh()
            assert not gc.isenabled()
        finally:
            gc.enable()
    finally:
        engine.stop()


def test_gc_freezes_after_refresh_and_collects_each_interval(dsn: str, tmp_path: Path) -> None:
    """Objects alive after a refresh are frozen (no full GC walks them); cycles frozen that
    way are freed at the next full collection, once per gc_full_interval."""
    import gc
    import weakref

    items = [i for i in flash_sale(300) if isinstance(i, dict)]
    engine = make_engine(dsn, tmp_path / "state.duckdb", [])
    try:
        engine.ingest([Msg(raw(e), n) for n, e in enumerate(items[:200])])

        class Node:
            pass

        cycle = Node()
        cycle.me = cycle  # type: ignore[attr-defined]
        alive = weakref.ref(cycle)
        engine.refresh()
        assert gc.get_freeze_count() > 0
        del cycle
        gc.collect()
        assert alive() is not None  # frozen: left alone by collections
        engine._gc_full_due = 0.0  # the interval has passed
        engine.ingest([Msg(raw(e), 200 + n) for n, e in enumerate(items[200:])])
        engine.refresh()
        assert alive() is None
    finally:
        engine.stop()
    assert gc.get_freeze_count() == 0


def test_publish_in_its_own_thread(dsn: str, tmp_path: Path) -> None:
    """The loop publishes while it goes on: the views land after wait_published(), in epoch
    order; a lost connection is reconnected; a publish that fails otherwise is raised by the
    next wait."""
    items = [i for i in flash_sale(600) if isinstance(i, dict)]
    engine = make_engine(dsn, tmp_path / "state.duckdb", [])
    try:
        for start in (0, 300):
            chunk = items[start : start + 300]
            engine.ingest([Msg(raw(e), start + n) for n, e in enumerate(chunk)])
            assert engine._refresh_main(wait=False) == []
        engine.wait_published()
        assert pg_meta(dsn)["epoch"] == str(engine.epoch) == "2"
        if engine.tier is not None:  # the customer views: their own tier
            engine.tier.refresh()
        assert_views_equal(engine, dsn, items)
        engine.publisher.conn.close()  # the connection lost: reconnected, published once
        engine.ingest([Msg(raw(items[0] | {"event_id": "late"}), 600)])
        engine._refresh_main(wait=False)
        engine.wait_published()
        assert pg_meta(dsn)["epoch"] == str(engine.epoch) == "3"

        def refused(*args: Any, **kwargs: Any) -> None:
            raise ValueError("refused by PostgreSQL")

        engine.publisher._publish_once = refused  # not a connection failure: not retried
        engine.ingest([Msg(raw(items[1] | {"event_id": "later"}), 601)])
        engine._refresh_main(wait=False)
        with pytest.raises(ValueError, match="refused"):
            engine.wait_published()
    finally:
        engine.stop()


def test_background_tier_runs_nicer(dsn: str, tmp_path: Path) -> None:
    """The background tier's thread and its PostgreSQL backend run at background_nice above
    the engine (the main tier gets the CPU first); the main tier's backend does not."""
    import os

    def nice(pid: int) -> int:
        return os.getpriority(os.PRIO_PROCESS, pid)

    def backend(conn) -> int:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        conn.commit()
        return pid

    engine = Engine(EngineConfig.of(pg_dsn=dsn, state_path=tmp_path / "state.duckdb",
                                    background_nice=7))  # fmt: skip
    try:
        assert engine.tier is not None
        base = nice(os.getpid())
        assert nice(backend(engine.tier.publisher.conn)) == nice(
            backend(engine.publisher.conn)) + 7  # fmt: skip
        engine.tier.start()
        thread = engine.tier._thread
        assert thread is not None and thread.native_id is not None
        deadline = time.monotonic() + 10
        while nice(thread.native_id) != base + 7 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert nice(thread.native_id) == base + 7
        assert nice(threading.get_native_id()) == base  # the caller's thread unchanged
    finally:
        engine.stop()


@pytest.mark.parametrize("interval", [0.0, 0.2])
def test_the_engine_keeps_the_indexes_up(dsn: str, tmp_path: Path, interval: float) -> None:
    """The main engine checks the view tables' indexes every reindex_interval s, in a
    thread at background_nice (none at interval 0)."""
    import os

    engine = Engine(EngineConfig.of(pg_dsn=dsn, state_path=tmp_path / "state.duckdb",
                                    reindex_interval=interval, background_nice=3))  # fmt: skip
    try:
        engine.start_upkeep()
        if not interval:
            assert engine.upkeep is None
            return
        assert engine.upkeep is not None
        wait_until(lambda: engine.upkeep.upkeep.checks >= 2, timeout=30)
        thread = engine.upkeep._thread
        assert thread is not None and thread.native_id is not None
        assert os.getpriority(os.PRIO_PROCESS, thread.native_id) == os.getpriority(
            os.PRIO_PROCESS, os.getpid()) + 3  # fmt: skip
        assert engine.upkeep.last_error is None
    finally:
        engine.stop()


@pytest.mark.parametrize("share", [1.0, 0.25])
def test_background_tier_keeps_to_its_share_of_the_time(dsn: str, tmp_path: Path,
                                                        share: float) -> None:  # fmt: skip
    """After a refresh of D s the background thread waits max(interval, D (1 - share) /
    share): with share 1 it refreshes back to back when D outlasts the interval, with 0.25
    it spends at most a quarter of the time refreshing."""
    engine = Engine(EngineConfig.of(pg_dsn=dsn, state_path=tmp_path / "state.duckdb",
                                    background_interval=0.05, background_share=share))  # fmt: skip
    try:
        tier = engine.tier
        assert tier is not None
        assert tier.pause_after(0.01) == 0.05  # the interval when refreshes are short
        compute = tier.runner.refresh
        spent: list[float] = []

        def slow_compute(*args, **kwargs):  # a refresh of 0.2 s or more
            started = time.perf_counter()
            time.sleep(0.2)
            out = compute(*args, **kwargs)
            spent.append(time.perf_counter() - started)
            return out

        tier.runner.refresh = slow_compute  # type: ignore[method-assign]
        started = time.perf_counter()
        tier.start()
        time.sleep(2.5)
        tier._stop.set()
        tier._thread.join(timeout=30)
        busy = sum(spent) / (time.perf_counter() - started)
        if share == 1.0:
            assert busy > 0.6, busy  # back to back but for the 0.05 s interval
        else:
            assert busy < 0.25 + 0.1, busy  # the last refresh may end the run
            assert len(spent) >= 2
    finally:
        engine.stop()


@pytest.mark.parametrize("setting", [
    {"background_share": 0.0}, {"background_share": 1.5}, {"refresh_interval": 0},
    {"background_interval": -1}, {"view_intervals": {"co_view_pairs": 0}},
    {"clock": "moon"}, {"max_batch": 0}, {"duckdb_threads": 0}, {"reindex_interval": -1},
])  # fmt: skip
def test_settings_out_of_range_are_refused_before_anything_opens(
        setting: dict[str, Any], tmp_path: Path) -> None:  # fmt: skip
    """A setting out of range is refused, naming it, before the state file or PostgreSQL
    is opened (the DSN here reaches no server)."""
    state = tmp_path / "state.duckdb"
    name = next(iter(setting))
    with pytest.raises(ValueError, match=name if name != "clock" else "unknown clock"):
        Engine(EngineConfig.of(pg_dsn="postgresql://nobody@127.0.0.1:1/none",
                               state_path=state, **setting))  # fmt: skip
    assert not state.exists()


def test_bag_diff_equals_except_all() -> None:
    """The partial refresh's diff equals DuckDB's EXCEPT ALL both ways (duplicates, NULLs,
    list columns), on random bags of rows."""
    import random

    import duckdb

    from recommender.engine.refresh import bag_diff

    rng = random.Random(3)
    con = duckdb.connect()

    def bag() -> list[tuple]:
        return [(rng.choice([1, 2, None]), rng.choice(["a", "b"]),
                 rng.choice([[1], [1, 2], None])) for _ in range(rng.randint(0, 12))]  # fmt: skip

    for _ in range(30):
        new, old = bag(), bag()
        for table, rows in (("n", new), ("o", old)):
            con.execute(f"CREATE OR REPLACE TABLE {table} (x INT, y VARCHAR, z INT[])")
            if rows:
                con.executemany(f"INSERT INTO {table} VALUES (?, ?, ?)", rows)
        inserts, deletes = bag_diff(new, old, lists=True)
        want_ins = con.execute("SELECT * FROM n EXCEPT ALL SELECT * FROM o").fetchall()
        want_del = con.execute("SELECT * FROM o EXCEPT ALL SELECT * FROM n").fetchall()
        assert sorted(inserts, key=repr) == sorted(want_ins, key=repr)
        assert sorted(deletes, key=repr) == sorted(want_del, key=repr)


@pytest.mark.parametrize("maintained", [False, True])
def test_events_stored_during_a_refresh_are_read_by_the_next(maintained: bool) -> None:
    """The background tier refreshes while the loop keeps storing events: events stored
    while a view is computed (after the refresh began) are read by the next refresh, not
    marked as done (they were lost to the customer views until their users came back);
    by the SQL and by the incremental customer views."""
    from recommender import sqlfiles
    from recommender.engine.customer import maintainers
    from recommender.engine.refresh import ViewRunner
    from recommender.engine.store import StateStore, parse_naive

    events = valid_events(flash_sale(1200))
    first, later = events[:400], events[400:]
    store = StateStore(None)
    objects = [o for o in sqlfiles.load() if o.name == "customer_features"]
    overrides = maintainers(sqlfiles.views(objects)) if maintained else {}
    assert len(overrides) == int(maintained)
    runner = ViewRunner(store.con, objects, overrides)
    store.apply(first, {})
    clock = parse_naive(max(e["ts"] for e in events))
    compute = runner.compute

    def compute_then_store(at, name):  # another thread's ingest lands meanwhile
        out = compute(at, name)
        store.apply(later, {})
        return out

    runner.compute = compute_then_store  # type: ignore[method-assign]
    runner.refresh(clock)
    runner.commit()
    runner.compute = compute  # type: ignore[method-assign]
    runner.refresh(clock)
    runner.commit()
    expected = evaluate(events, clock)["customer_features"]
    assert sorted(runner.rows("customer_features"), key=repr) == expected
    store.close()


def test_prune_waits_for_the_background_tier(dsn: str, tmp_path: Path) -> None:
    """Events are pruned a horizon behind the older clock of the two tiers: the customer
    views take out the events leaving their 30-day window at their own next refresh."""
    from datetime import datetime, timedelta

    engine = make_engine(dsn, tmp_path / "state.duckdb", [])
    assert engine.tier is not None and engine.horizon >= timedelta(days=30)
    now = datetime(2024, 5, 1, 12, 0)
    margin = engine.horizon + timedelta(minutes=1)
    assert engine._prune_before(now) == now - margin  # no background refresh yet
    engine.tier.last_now = now - timedelta(minutes=5)
    assert engine._prune_before(now) == now - timedelta(minutes=5) - margin
    engine.stop()


def test_duckdb_threads_follow_the_config(dsn: str) -> None:
    """One DuckDB thread by default (measured fresher on 2 busy cores); None leaves DuckDB's
    own default of one per core."""
    import os

    def threads(**kw) -> int:
        engine = Engine(EngineConfig.of(pg_dsn=dsn, state_path=None, **kw))
        try:
            return int(engine.store.con.execute(
                "SELECT current_setting('threads')").fetchall()[0][0])  # fmt: skip
        finally:
            engine.stop()

    assert threads() == 1
    assert threads(duckdb_threads=None) == os.cpu_count()


def test_raw_clickstream_table_holds_the_stored_events(dsn: str, tmp_path: Path) -> None:
    """PostgreSQL's clickstream table holds every accepted event as stored (awkward strings,
    missing optional fields included), refresh after refresh."""
    from recommender.engine.store import parse_naive

    items = flash_sale(1200, malformed_share=0.02)
    awkward = dict(valid_events(items)[0], event_id="e-awkward", product_name='a, "b"\nc',
                   device=None, price=None)  # fmt: skip
    items.append(awkward)
    engine = make_engine(dsn, tmp_path / "state.duckdb", [])
    msgs = [Msg(raw(x), i) for i, x in enumerate(items)]
    for start in range(0, len(msgs), 500):
        engine.ingest(msgs[start : start + 500])
        engine.refresh()
    engine.stop()
    names = ("event_id", "session_id", "user_id", "product_id", "product_name", "category",
             "action")  # fmt: skip
    expected = sorted(((*(e[n] for n in names), parse_naive(e["ts"]), e.get("device"),
                        e.get("price")) for e in valid_events(items)), key=repr)  # fmt: skip
    assert pg_rows(dsn, "clickstream") == expected
    assert any(r[0] == "e-awkward" for r in expected)



def test_publish_parts_are_timed_and_logged(dsn: str, tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    """Each publish records its parts' times (every view, the raw events, the commit); a
    slow refresh's log line names them."""
    engine = make_engine(dsn, tmp_path / "state.duckdb", [])
    engine.ingest([Msg(raw(x), i) for i, x in enumerate(flash_sale(600))])
    engine.refresh()
    timings = dict(engine.publisher.timings)
    assert set(engine.runner.names) | {"clickstream", "meta", "commit"} <= set(timings)
    assert all(v >= 0 for v in timings.values())
    publish = engine.publisher.publish

    def slow_publish(*args, **kwargs) -> None:  # past the slow mark: 2 refresh intervals
        time.sleep(2 * engine.config.refresh.interval + 0.1)
        publish(*args, **kwargs)

    engine.publisher.publish = slow_publish
    with caplog.at_level("WARNING", logger="recommender.engine.engine"):
        engine.ingest([Msg(raw(x), 10_000 + i) for i, x in enumerate(flash_sale(50))])
        engine.refresh()
    engine.stop()
    line = next(r.getMessage() for r in caplog.records if "slow refresh" in r.getMessage())
    assert "clickstream" in line and "commit" in line and "vmis_history" in line
