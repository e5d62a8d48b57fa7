"""The Numba co-view maintainer equals the SQL of co_view_pairs at every refresh, as events
enter and leave the 30-minute window (including late events, repeated views, bot sessions and
sessions that turn bot and back)."""

from __future__ import annotations

from datetime import datetime, timedelta

from engine_support import bot_mix, click

from recommender import sqlfiles
from recommender.engine.coview import CoViewMaintainer
from recommender.engine.refresh import ViewRunner, bot_sessions
from recommender.engine.store import StateStore

T0 = datetime(2024, 3, 15, 14, 0)


def _events(n: int, seed: int) -> list[dict]:
    """Human sessions (some late), bot bursts (clicks 0.3 s apart), fast sessions that come
    back 10 minutes later (human again)."""
    return bot_mix(n, seed, T0, spacing=1.5, late=120, products=25, sessions=150,
                   actions=["view", "view", "view", "add_to_cart"], period=700, burst=30,
                   burst_gap=0.3, comeback=timedelta(minutes=10))  # fmt: skip


OBJECTS = [o for o in sqlfiles.load() if o.name in ("session_features", "co_view_pairs")]


def test_incremental_equals_sql() -> None:
    objects = OBJECTS
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
        assert expected[-1].row_count == len(expected_rows)
    # the window slid well past the first events: pairs entered and left; bots were seen
    assert checked > 100 and maintainer.chunks
    assert maintainer.bots and store.con.execute(
        "SELECT count(*) FROM session_features WHERE is_bot").fetchall()[0][0] > 0
    later = store.max_event_time() + timedelta(minutes=31)
    fast_runner.refresh(later, diff=False)
    assert fast_runner.rows("co_view_pairs") == []
    # every session left the window: none is remembered (memory follows the window)
    assert not maintainer.sessions.ids and not maintainer.bots and not len(maintainer.pairs)
    assert not any(len(items) for items in maintainer.session_products)
    assert len(maintainer.sessions.free) == len(maintainer.sessions.names)
    store.close()


def test_deltas_replay_into_the_sql_result() -> None:
    objects = OBJECTS
    store = StateStore(None)
    sql_runner = ViewRunner(store.con, objects)
    fast = ViewRunner(store.con, objects, {"co_view_pairs": CoViewMaintainer()})
    mirror: set[tuple] = set()
    events = _events(5000, seed=9)
    bot_sets = []
    for start in range(0, len(events), 500):
        store.apply(events[start : start + 500], {})
        now = store.max_event_time()
        _features, result = fast.refresh(now)
        # the bot set the runner keeps from session_features' diffs is the table's
        assert fast.bots() == bot_sessions(store.con)
        bot_sets.append(fast.bots())
        fast.commit()
        mirror -= set(result.deletes)
        mirror |= set(result.inserts)
        sql_runner.refresh(now, diff=False)
        assert mirror == set(sql_runner.rows("co_view_pairs"))
        assert result.row_count == len(mirror)
    assert "co_view_pairs" in fast.delta_ready
    assert fast._bots is not None  # kept, not read again
    assert any(a - b for a, b in zip(bot_sets, bot_sets[1:], strict=False))  # bots left
    assert any(b - a for a, b in zip(bot_sets, bot_sets[1:], strict=False))  # and came
    store.close()


def test_bot_flagged_before_its_first_view() -> None:
    """A session flagged while it has no view in the window (fast cart adds) counts for no
    pair when its views arrive later."""
    store = StateStore(None)
    maintainer = CoViewMaintainer()
    fast = ViewRunner(store.con, OBJECTS, {"co_view_pairs": maintainer})
    sql_runner = ViewRunner(store.con, OBJECTS)
    t = T0
    carts = [click(i, "cartbot", i, t + timedelta(seconds=0.2 * i), "add_to_cart")
             for i in range(6)]  # fmt: skip
    humans = [click(10 + i, f"h{i}", p, t + timedelta(seconds=i * 30 + p))
              for i in range(2) for p in (1, 2)]  # fmt: skip
    store.apply(carts + humans, {})
    fast.refresh(store.max_event_time())
    fast.commit()
    views = [click(20 + p, "cartbot", p, t + timedelta(seconds=1.5 + 0.1 * p)) for p in (1, 2)]
    store.apply(views, {})
    now = store.max_event_time()
    result = fast.refresh(now)[-1]
    sql_runner.refresh(now, diff=False)
    assert sql_runner.rows("co_view_pairs") == []  # the bot's views make no third session
    assert result.inserts == [] and result.row_count == 0
    store.close()


def test_every_kernel_is_compiled_when_the_maintainer_is_made() -> None:
    """for_view compiles (or loads) every Numba kernel of the module up front: none is left
    to compile inside a live refresh (the first expiry comes 30 minutes in). In a fresh
    interpreter: this one may have run the kernels already."""
    import subprocess
    import sys

    code = """
from numba.core.registry import CPUDispatcher
from recommender import sqlfiles
from recommender.engine import coview
view = next(v for v in sqlfiles.views(sqlfiles.load()) if v.name == "co_view_pairs")
assert coview.CoViewMaintainer.for_view(view) is not None
from recommender.engine import intmap
kernels = {f"{m.__name__.rsplit('.', 1)[-1]}.{n}": f for m in (coview, intmap)
           for n, f in vars(m).items() if isinstance(f, CPUDispatcher)}
# only called by other kernels (loaded from the cache with them)
inner = {"coview._add_pair", "intmap._home", "intmap.slot", "intmap.get", "intmap.room",
         "intmap.add", "intmap._remove_at"}
print(len(kernels), sorted(n for n, f in kernels.items() if not f.signatures
                          and n not in inner))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[0] == "15 []"
