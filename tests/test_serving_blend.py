"""The served blend: the in-memory mirrors of co_view_pairs and trending_by_category follow
their views' changes (and answer what the SQL reads of views.py answer), the fill table is
the co-occurrence of the index's recent sessions, the session routes answer the blend by
default (blend=false: the pure VMIS-kNN list as before), GET /v1/recommend stays pure unless
the server says otherwise, and bad settings or parameters are refused."""

from __future__ import annotations

import queue
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import wait_until
from fastapi.testclient import TestClient
from serving_support import CO_VIEWS, PRODUCTS, TRENDING, WINDOW, fill_views
from typer.testing import CliRunner

from recommender.blend import (
    DEFAULT,
    BlendWeights,
    blend,
    cooccurrence,
    popular,
    trending_lists,
)
from recommender.changefeed import ChangeBatch
from recommender.serving.app import ServingState, create_app
from recommender.serving.blender import Blender, FillTable
from recommender.serving.live_index import LiveIndex
from recommender.serving.session_store import SessionStore
from recommender.serving.view_mirrors import (
    CO_VIEW,
    CoViewMirror,
    RowDiffFeed,
    TrendingMirror,
    load_rows,
)
from recommender.serving.view_mirrors import TRENDING as TRENDING_VIEW
from recommender.serving.views import ALSO_VIEWED_SQL, TRENDING_SQL, Views
from recommender.surge import NO_SURGE

CO_COLUMNS = ["product_a", "product_a_name", "product_b", "product_b_name", "co_view_count"]
TR_COLUMNS = ["category", "rank", "product_id", "product_name", "engagement_score",
              "view_count", "cart_adds", "window_start"]  # fmt: skip


class IdleFeed:
    """A feed with no changes (the mirror keeps its snapshot)."""

    def __init__(self) -> None:
        self.batches: queue.Queue = queue.Queue()

    def poll(self, timeout: float) -> Any:
        try:
            return self.batches.get(timeout=timeout)
        except queue.Empty:
            return None


def pair(a: str, b: str, n: int) -> tuple:
    return (a, f"name {a}", b, f"name {b}", n)


def trend(category: str, rank: int, product: str, window: datetime) -> tuple:
    return (category, rank, product, f"name {product}", 10 - rank, 1, 0, window)


def _mirror(kind: Any, view: str, columns: list[str], rows: list[tuple],
            feed: IdleFeed | None) -> Any:  # fmt: skip
    """A mirror of `kind` loaded with `rows`, its feed `feed` (default: one that stays idle)."""

    def snapshot() -> ChangeBatch:
        return ChangeBatch(view, 0, columns, list(rows))

    mirror = kind(lambda: feed or IdleFeed(), snapshot)
    mirror.load(snapshot())
    return mirror


def co_view_mirror(pairs: list[tuple], feed: IdleFeed | None = None) -> CoViewMirror:
    return _mirror(CoViewMirror, CO_VIEW, CO_COLUMNS, pairs, feed)


def trending_mirror(rows: list[tuple], feed: IdleFeed | None = None) -> TrendingMirror:
    return _mirror(TrendingMirror, TRENDING_VIEW, TR_COLUMNS, rows, feed)


# --- the mirrors ------------------------------------------------------------------------------
def test_co_view_mirror_applies_inserts_updates_and_deletes() -> None:
    mirror = co_view_mirror([pair("a", "b", 3), pair("a", "c", 5), pair("b", "c", 4)])
    assert mirror.partners("a") == ["c", "b"]
    assert mirror.partners("b") == ["c", "a"]
    assert mirror.partners("a", 1) == ["c"] and mirror.partners("zz") == []
    change = ChangeBatch(CO_VIEW, 1, CO_COLUMNS)
    change.deletes = [pair("a", "b", 3), pair("b", "c", 4)]  # a-b updated, b-c gone
    change.inserts = [pair("a", "b", 9), pair("a", "d", 5)]
    assert mirror.apply(change) == 4
    assert mirror.partners("a") == ["b", "c", "d"]  # 9, then 5 and 5 by id
    assert mirror.partners("b") == ["a"]
    assert mirror.partners("c") == ["a"] and mirror.partners("d") == ["a"]
    assert mirror.pairs == 3
    again = ChangeBatch(CO_VIEW, 2, CO_COLUMNS, deletes=[pair("a", "d", 5)])
    mirror.apply(again)
    mirror.apply(again)  # a change seen twice gives the same mirror
    assert mirror.partners("d") == [] and mirror.partners("a") == ["b", "c"]


def test_trending_mirror_serves_each_categorys_latest_window() -> None:
    old, new = WINDOW - timedelta(minutes=5), WINDOW
    mirror = trending_mirror([trend("shoes", 1, "p3", old), trend("shoes", 2, "p1", old),
                              trend("shoes", 2, "p2", new), trend("shoes", 1, "p1", new),
                              trend("socks", 1, "p6", old)])  # fmt: skip
    assert mirror.latest() == {"shoes": ["p1", "p2"], "socks": ["p6"]}
    # over both windows: p1 9 + 8, p3 9, p2 8
    assert mirror.lists() == {"shoes": ["p1", "p3", "p2"], "socks": ["p6"]}
    # the engine's naive UTC timestamps and PostgreSQL's aware ones are the same key
    naive = new.astimezone(UTC).replace(tzinfo=None)
    change = ChangeBatch(TRENDING_VIEW, 1, TR_COLUMNS)
    change.deletes = [trend("shoes", 1, "p1", naive), trend("shoes", 2, "p2", naive)]
    change.inserts = [trend("jackets", 1, "p5", new)]
    mirror.apply(change)
    assert mirror.latest() == {"shoes": ["p3", "p1"], "socks": ["p6"], "jackets": ["p5"]}
    assert mirror.lists()["shoes"] == ["p3", "p1"]
    assert mirror.rows == 4
    mirror.apply(ChangeBatch(TRENDING_VIEW, 2, TR_COLUMNS, deletes=[trend("socks", 1, "p6", old)]))
    assert "socks" not in mirror.latest()


@pytest.fixture(scope="module")
def views_dsn(postgres) -> str:
    """The module's server, its view tables filled, with ties of co_view_count."""
    fill_views(postgres.dsn)
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        for a, b, n in [("p1", "p10", 5), ("p1", "p9", 4), ("p10", "p2", 5), ("p2", "p4", 7)]:
            conn.execute("INSERT INTO co_view_pairs VALUES (%s, %s, %s, %s, %s)",
                         (a, b, a, b, n))  # fmt: skip
    return postgres.dsn


def test_mirrors_answer_what_the_views_sql_answers(views_dsn: str) -> None:
    """Partners in ALSO_VIEWED_SQL's order (ties by id), trending as TRENDING_SQL's latest
    windows, both loaded from the tables as `flashrec serve` loads them."""
    co_view = CoViewMirror(IdleFeed, lambda: load_rows(views_dsn, CO_VIEW))
    co_view.load(load_rows(views_dsn, CO_VIEW))
    trending = TrendingMirror(IdleFeed, lambda: load_rows(views_dsn, TRENDING_VIEW))
    trending.load(load_rows(views_dsn, TRENDING_VIEW))
    with psycopg.connect(views_dsn) as conn:
        for product in [*PRODUCTS, "p9", "p10", "none"]:
            rows = conn.execute(ALSO_VIEWED_SQL, {"p": product, "n": 50}).fetchall()
            assert co_view.partners(product) == [r[0] for r in rows], product
        latest: dict[str, list[str]] = {}
        for row in conn.execute(TRENDING_SQL):
            latest.setdefault(row[0], []).append(row[2])
        summed = trending_lists(conn.execute(
            "SELECT category, product_id, engagement_score, window_start "
            "FROM trending_by_category").fetchall())  # fmt: skip
    assert co_view.partners("p2") == ["p1", "p4", "p10", "p3"]  # 7 and 7 by id, 5, 3
    assert co_view.partners("p1") == ["p2", "p10", "p6", "p3", "p9"]
    assert trending.latest() == latest
    assert trending.lists() == summed
    assert latest["shoes"] == TRENDING[1][2]


def test_row_diff_feed_finds_changes_of_a_view(views_dsn: str) -> None:
    feed = RowDiffFeed(views_dsn, CO_VIEW, interval=0.05)
    try:
        mirror = co_view_mirror([])
        mirror.load(feed.read_snapshot())
        assert mirror.pairs == len(CO_VIEWS) + 4
        with psycopg.connect(views_dsn, autocommit=True) as conn:
            conn.execute("UPDATE co_view_pairs SET co_view_count = 1 WHERE product_b = 'p10'")
            conn.execute("INSERT INTO co_view_pairs VALUES ('p5', 'p6', 'x', 'y', 3)")
            conn.execute("DELETE FROM co_view_pairs WHERE product_a = 'p4'")
        batch = feed.poll(1.0)
        while batch is None:
            batch = feed.poll(1.0)
        assert (len(batch.inserts), len(batch.deletes)) == (2, 2)  # an update, +1, -1
        mirror.apply(batch)
        assert mirror.partners("p10") == ["p2", "p1"]  # 5, then 1
        assert mirror.partners("p5") == ["p6"] and mirror.partners("p4") == ["p2"]
        empty = feed.poll(1.0)
        assert empty is None or not (empty.inserts or empty.deletes)
    finally:
        feed.close()
        with psycopg.connect(views_dsn, autocommit=True) as conn:
            conn.execute("UPDATE co_view_pairs SET co_view_count = 5 WHERE product_b = 'p10'")
            conn.execute("DELETE FROM co_view_pairs WHERE product_a = 'p5'")
            conn.execute("INSERT INTO co_view_pairs VALUES ('p4', 'p5', 'Rain Jacket', "
                         "'Down Jacket', 6)")  # fmt: skip


def test_a_mirror_follows_its_feed_in_a_thread() -> None:
    feed = IdleFeed()
    mirror = co_view_mirror([pair("a", "b", 3)], feed)
    mirror.load(ChangeBatch(CO_VIEW, 0, CO_COLUMNS))  # empty until the thread loads it
    assert mirror.partners("a") == []
    mirror.start()
    try:
        wait_until(lambda: mirror.following and mirror.partners("a") == ["b"])
        feed.batches.put([ChangeBatch(CO_VIEW, 1, CO_COLUMNS, [pair("a", "c", 4)])])
        wait_until(lambda: mirror.partners("a") == ["c", "b"])
        status = mirror.status()
        assert status["state"] == "following" and status["pairs"] == 2
    finally:
        mirror.stop()
    assert mirror.state == "stopped"


# --- the fill table ---------------------------------------------------------------------------
def test_fill_table_is_the_cooccurrence_of_the_last_day() -> None:
    now = 1_700_000_000.0
    old = [(f"o{n}", ["x", "y"], now - 2 * 86400) for n in range(5)]  # too old to count
    recent = [(f"r{n}", ["a", "b", "c"][: 2 + n % 2], now - 3600 * n) for n in range(6)]
    index = LiveIndex()
    index.build(old + recent)
    sessions = index.recent_sessions(86400, 100)
    assert sorted(map(sorted, sessions)) == sorted(sorted(items) for _, items, _ in recent)
    newest = index.recent_sessions(86400, 2)
    assert sorted(map(sorted, newest)) == [["a", "b"], ["a", "b", "c"]]  # r0 and r1
    table = FillTable(index, min_sessions=3)
    table.rebuild()
    assert table.table == cooccurrence([items for _, items, _ in recent], min_sessions=3)
    assert table.get("a") == ["b", "c"] and table.get("x") == [] and table.sessions == 6


def test_fill_table_keeps_the_day_before_for_the_surge() -> None:
    """The surge's baseline: per item, the indexed sessions whose last event lies in the UTC
    day before the newest one's."""
    day = 1_700_006_400.0  # a UTC midnight
    rows = [("today", ["a", "s"], day + 3600), ("y1", ["a", "b"], day - 3600),
            ("y2", ["a"], day - 80_000), ("y3", ["b", "c"], day - 1.0),
            ("older", ["a", "z"], day - 90_000)]  # fmt: skip
    index = LiveIndex()
    index.build(rows)
    assert index.day_before_counts() == {"a": 2, "b": 2, "c": 1}
    table = FillTable(index, min_sessions=3)
    table.rebuild()
    assert table.before.share == {"a": 0.4, "b": 0.4, "c": 0.2}
    assert table.status()["day_before_items"] == 3
    assert LiveIndex().day_before_counts() == {}
    # the surge's counts: the sessions of the last stretch back from the newest one
    assert index.recent_counts(3600) == {"a": 1, "s": 1}
    assert index.recent_counts(7200) == {"a": 2, "s": 1, "b": 2, "c": 1}  # today, y1, y3
    assert LiveIndex().recent_counts(3600) == {}


def test_served_popular_source_follows_a_surge() -> None:
    """The fill table finds the surge in the index's sessions of the last hour; a session
    that views the surging product is offered it first, one that does not is offered what
    popularity gives; both as `blend.popular` with that surge."""
    day = 1_700_006_400.0
    history = [(f"y{n}", ["a", "b"] if n % 2 else ["a", "c"], day - 3600 - n) for n in range(40)]
    history += [(f"s{n}", ["s"], day - 7200 - n) for n in range(2)]
    history += [(f"now{n}", ["s"], day + n) for n in range(12)] + [("now", ["a"], day + 60)]
    index = LiveIndex()
    index.build(history)
    views = Views(None, cache_s=0)
    views.catalog = {"a": ("A", "cat1"), "b": ("B", "cat1"), "c": ("C", "cat2"),
                     "s": ("S", "cat2")}  # fmt: skip
    rows = [("cat1", 1, "a", "A", 60, 60, 0, WINDOW), ("cat1", 2, "b", "B", 20, 20, 0, WINDOW),
            ("cat2", 1, "c", "C", 20, 20, 0, WINDOW)]  # "s" is not among the listed
    only = BlendWeights(vmis=0.0, coview=0.0, trending=0.0, popular=1.0, repeat=0.0)
    fill = FillTable(index, category_of=views.category)
    fill.rebuild()
    assert fill.surge is NO_SURGE  # found by its own step
    found = fill.find_surge()
    assert set(found.share) == {"s"} and fill.surge is found
    assert fill.status()["surge_products"] == 1 and fill.status()["popular_products"] == 4
    blender = Blender(index, views, only, trending=trending_mirror(rows), fill_table=fill)
    # the sessions that did not come for it: "s" at its usual level, nothing new
    table = fill.popularity.usual
    assert table is not fill.popularity.plain and table.total > 0
    for session, first in ((["s", "c"], "s"), (["c", "b"], "a")):
        want = popular(table, blender.item_categories(session), 10, only.focus,
                       leave_out=session[-1], items=session, surge=found,
                       sale_focus=only.sale_focus)  # fmt: skip
        got = blender.recommend(session, 10)
        assert [i for i, _ in got] == [i for i, _ in want] and got[0][0] == first


def test_fill_thread_finds_the_surge_as_sessions_arrive() -> None:
    """The fill table's thread looks for a surge every `surge_every_s` between its hourly
    rebuilds; a step that fails is shown in the status and tried again."""
    day = 1_700_006_400.0
    index = LiveIndex()
    index.build([(f"y{n}", ["a", f"b{n % 5}"], day - 3600 - n) for n in range(40)]
                + [("today", ["a"], day + 1)])  # fmt: skip
    fill = FillTable(index, surge_every_s=0.05)
    broken = {"on": True}
    counts = index.recent_counts

    def flaky(within_s: float) -> dict[str, int]:
        if broken["on"]:
            raise RuntimeError("index gone")
        return counts(within_s)

    index.recent_counts = flaky  # type: ignore[method-assign]
    fill.start()
    try:
        failed = "surge: RuntimeError: index gone"
        assert wait_until(lambda: failed in (fill.status()["error"] or ""))
        assert fill.table and fill.surge is NO_SURGE  # the table was built all the same
        broken["on"] = False
        for n in range(15):
            index.upsert(f"now{n}", ["fresh"], day + n)
        assert wait_until(lambda: set(fill.surge.share) == {"fresh"})
        assert fill.status()["error"] is None
    finally:
        fill.stop()


def test_an_empty_popular_table_is_built_again_soon() -> None:
    """At a start the catalog may not know the categories yet: the fill thread builds the
    popular table again every `retry_popular_s` until it holds products, not only with the
    minute's surge step."""
    day = 1_700_006_400.0
    index = LiveIndex()
    index.build([(f"n{n}", ["a", "b"], day + n) for n in range(5)])
    views = Views(None, cache_s=0)
    fill = FillTable(index, surge_every_s=60.0, retry_popular_s=0.05,
                     category_of=views.category)  # fmt: skip
    fill.start()
    try:
        wait_until(lambda: fill.built_at is not None)
        assert fill.status()["popular_products"] == 0  # no category known
        views.catalog = {"a": ("A", "cat1"), "b": ("B", "cat1")}
        wait_until(lambda: fill.status()["popular_products"] == 2, timeout=10.0)
    finally:
        fill.stop()


# --- the blend over the routes ------------------------------------------------------------------
HISTORY = [("h1", ["a", "b"], 1.0), ("h2", ["a", "b"], 2.0), ("h3", ["c", "d"], 3.0)]
WEIGHTS = BlendWeights(vmis=1.0, coview=0.5, trending=0.25, popular=0.0, repeat=0.0)  # fixed
CATALOG = {"a": ("A", "cat1"), "b": ("B", "cat1"), "c": ("C", "cat2"), "x": ("X", "cat3")}


def blended_state(tmp_path: Path, recommend_blend: bool = False) -> ServingState:
    """"a" pairs with "b" in the history, with "x" in co_view_pairs; cat1 trends t1, t2."""
    index = LiveIndex()
    index.build(HISTORY)
    views = Views(None, cache_s=0)
    views.catalog = dict(CATALOG)
    blender = Blender(index, views, WEIGHTS, co_view_mirror([pair("a", "x", 9)]),
                      trending_mirror([trend("cat1", 1, "t1", WINDOW),
                                       trend("cat1", 2, "t2", WINDOW)]))  # fmt: skip
    return ServingState(index, SessionStore(tmp_path / "sessions"), views, blender=blender,
                        recommend_blend=recommend_blend)  # fmt: skip


def ids(body: dict) -> list[str]:
    return [r["product_id"] for r in body["recommendations"]]


def test_served_popular_source_mixes_the_sessions_categories() -> None:
    """With the popular weight on, the served blend ranks by `blend.popular` over the fill
    table's popularity (the index's sessions of the last hour and of the day before, per
    product) and the categories of the session's items (the catalog's)."""
    day = 1_700_006_400.0  # a UTC midnight
    history = [("y1", ["t1", "u1"], day - 5000), ("y2", ["t1"], day - 4000),
               ("n1", ["u1", "c"], day + 60), ("n2", ["u1"], day + 70),
               ("n3", ["t1", "a"], day + 80)]  # fmt: skip
    index = LiveIndex()
    index.build(history)
    views = Views(None, cache_s=0)
    views.catalog = {**CATALOG, "t1": ("T1", "cat1"), "u1": ("U1", "cat2")}
    only = BlendWeights(vmis=0.0, coview=0.0, trending=0.0, popular=1.0, repeat=0.0, focus=0.9)
    blender = Blender(index, views, only)
    assert blender.recommend(["a", "x", "u1", "c"], 10) == []  # not built yet: nothing
    blender.fill_table.rebuild()
    blender.fill_table.find_surge()
    table = blender.fill_table.popularity.plain
    # lately (all of today): t1 1, u1 2, c 1, a 1; the day before t1 2/3, u1 1/3 of its
    # sessions, weighing as 6 hours of today's 5 product-sessions
    assert {p: e for p, _, e in table.overall} == pytest.approx(
        {"t1": 1 + 20, "u1": 2 + 10, "c": 1.0, "a": 1.0})  # fmt: skip
    want = popular(table, ["cat1", "cat3", "cat2", "cat2"], 10, 0.9, leave_out="c")
    got = blender.recommend(["a", "x", "u1", "c"], 10)  # nothing of cat3 is known
    # P(home): cat2 (two items) over cat1 (one): u1 before t1, though t1 is viewed more
    assert [i for i, _ in got] == [i for i, _ in want] == ["u1", "t1", "a"]
    # weight 0 (the default until chosen): the list is not even built
    assert Blender(index, views, WEIGHTS).candidates(["a"], 10).popular == []


def test_session_routes_answer_the_blend_by_default(tmp_path: Path) -> None:
    state = blended_state(tmp_path)
    with TestClient(create_app(state)) as c:
        body = c.post("/v1/sessions/s/clicks", json={"item_id": "a"}).json()
        assert body["source"] == "blend"
        assert ids(body) == ["b", "x", "t1", "t2"]
        assert [r["score"] for r in body["recommendations"]] == [1.0, 0.5, 0.25, 0.125]
        assert body["recommendations"][1]["category"] == "cat3"  # described as before
        expected = blend(state.index.recommend(["a"], 2 * 21), ["x"], ["t1", "t2"], ["a"], 21,
                         WEIGHTS, ["a"])  # fmt: skip
        assert [(i, round(s, 6)) for i, s in expected] == [
            (r["product_id"], r["score"]) for r in body["recommendations"]]
        stored = c.get("/v1/sessions/s/recommendations").json()
        assert stored["source"] == "blend" and ids(stored) == ids(body)
        assert ids(c.get("/v1/sessions/s/recommendations", params={"how_many": 2}).json()) == [
            "b", "x"]
        # blend=false: the pure VMIS-kNN list, as before the blend
        pure = c.get("/v1/sessions/s/recommendations", params={"blend": "false"}).json()
        assert pure["source"] == "vmis"
        assert [(r["product_id"], r["score"]) for r in pure["recommendations"]] == [
            (i, round(s, 6)) for i, s in state.index.recommend(["a"], how_many=22) if i != "a"]
        clicked = c.post("/v1/sessions/s2/clicks", json={"item_id": "a", "blend": False}).json()
        assert clicked["source"] == "vmis" and ids(clicked) == ["b"]
        # no candidate at all: the popular items, as before
        assert c.post("/v1/sessions/u/clicks", json={"item_id": "zz"}).json()["source"] == (
            "popular")
        status = c.get("/readyz").json()["blend"]
        assert status["weights"] == WEIGHTS.text()
        assert status["co_view_pairs"]["pairs"] == 1
        assert status["trending_by_category"]["categories"] == 1


def test_the_blend_keeps_the_session_items_rule(tmp_path: Path) -> None:
    with TestClient(create_app(blended_state(tmp_path))) as c:
        c.post("/v1/sessions/s/clicks", json={"item_id": "b"})
        body = c.post("/v1/sessions/s/clicks", json={"item_id": "a"}).json()
        assert "b" not in ids(body) and "a" not in ids(body)
        every = c.get("/v1/sessions/s/recommendations",
                      params={"exclude_session_items": "false"}).json()  # fmt: skip
        assert "b" in ids(every) and "a" not in ids(every)  # the newest item never


def test_recommend_stays_pure_unless_the_server_blends(tmp_path: Path) -> None:
    params = {"session_id": "r", "item_id": "a"}
    with TestClient(create_app(blended_state(tmp_path / "pure"))) as c:
        assert c.get("/v1/recommend", params=params).json() == ["b"]
        assert c.get("/v1/recommend", params={**params, "x": "1"}).json() == ["b"]  # the route
        assert c.get("/v1/recommend", params={**params, "blend": "true"}).json() == [
            "b", "x", "t1", "t2"]
    with TestClient(create_app(blended_state(tmp_path / "blend", recommend_blend=True))) as c:
        fast = c.get("/v1/recommend", params=params).json()
        route = c.get("/v1/recommend", params={**params, "x": "1"}).json()
        assert fast == route == ["b", "x", "t1", "t2"]
        assert c.get("/v1/recommend", params={**params, "blend": "false"}).json() == ["b"]
        assert c.get("/readyz").json()["recommend_blend"] is True


@pytest.mark.parametrize(
    ("method", "url", "kwargs"),
    [
        ("GET", "/v1/recommend?session_id=s&item_id=a&blend=maybe", {}),
        ("GET", "/v1/sessions/s/recommendations?blend=2", {}),
        ("POST", "/v1/sessions/s/clicks", {"json": {"item_id": "a", "blend": "maybe"}}),
    ],
)
def test_bad_blend_parameter_is_4xx(tmp_path: Path, method: str, url: str, kwargs: dict) -> None:
    with TestClient(create_app(blended_state(tmp_path))) as c:
        got = c.request(method, url, **kwargs)
        assert got.status_code == 422 and "blend" in got.json()["detail"]


# --- settings ---------------------------------------------------------------------------------
def test_weights_setting_parses_over_the_defaults() -> None:
    assert BlendWeights.parse("") == DEFAULT
    assert BlendWeights.parse("coview=1,repeat_newest=true") == BlendWeights(
        coview=1.0, repeat_newest=True)


@pytest.mark.parametrize("command", ["serve", "up"])
def test_bad_weights_are_a_startup_error(command: str, tmp_path: Path) -> None:
    from recommender.cli import app

    args = [command, "--data-dir", str(tmp_path)] + (
        ["--history", str(Path(__file__).parent / "data" / "sessions_train.tsv")]
        if command == "serve" else [])  # fmt: skip
    started = time.monotonic()
    flag = CliRunner().invoke(app, [*args, "--blend-weights", "vmis=1,cowiew=2"])
    assert flag.exit_code == 2, flag.output
    assert "'cowiew=2' is not one of" in flag.output and "--blend-weights" in flag.output
    env = CliRunner().invoke(app, args, env={"FLASHREC_BLEND_WEIGHTS": "coview=-1"})
    assert env.exit_code == 2 and "coview must be a finite number >= 0" in env.output
    assert time.monotonic() - started < 60  # refused before anything started


def test_weights_and_recommend_blend_reach_the_serving_state(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from recommender.cli import app
    from recommender.serving import runtime

    seen: dict[str, Any] = {}

    def fake_build_state(**kwargs: Any) -> None:
        seen.update(kwargs)
        raise ValueError("stop here")

    monkeypatch.setattr(runtime, "build_state", fake_build_state)
    train = str(Path(__file__).parent / "data" / "sessions_train.tsv")
    result = CliRunner().invoke(app, ["serve", "--history", train, "--recommend-blend"],
                                env={"FLASHREC_BLEND_WEIGHTS": "trending=1"})  # fmt: skip
    assert result.exit_code == 2 and "stop here" in result.output
    assert seen["blend_weights"] == BlendWeights(trending=1.0)
    assert seen["recommend_blend"] is True
    result = CliRunner().invoke(app, ["serve", "--history", train, "--blend-weights", "vmis=2"],
                                env={"FLASHREC_BLEND_WEIGHTS": "trending=1"})  # fmt: skip
    assert seen["blend_weights"] == BlendWeights(vmis=2.0)  # the flag beats the environment
    assert seen["recommend_blend"] is False
