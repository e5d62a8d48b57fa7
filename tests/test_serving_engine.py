"""The API on the real embedded engine: clicks ingested by the engine reach the index through
its change feed (in process, and from another process through flashrec_changes), the blend's
co-view and trending candidates follow the views in both, the popular source answers from
the trending view as PostgreSQL holds it, and the also-viewed and trending answers equal the
engine's PostgreSQL tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import orjson
import psycopg
import pytest
from conftest import free_port, wait_until
from engine_support import Msg
from serving_support import api_process

from recommender.blend import DEFAULT, BlendWeights, popular, trending_table
from recommender.engine import Engine, EngineConfig
from recommender.serving.runtime import start_api
from recommender.surge import NO_SURGE

pytestmark = pytest.mark.e2e

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=9)  # event clock: 8 days fit
NAMES = {"a": ("Alpha Lamp", "lights"), "b": ("Beta Lamp", "lights"),
         "c": ("Gamma Rug", "rugs"), "d": ("Delta Lamp", "lights"),
         "z": ("Zeta Chair", "chairs")}  # fmt: skip


class Clicks:
    """Valid clickstream events as Kafka messages, one offset after the other."""

    def __init__(self) -> None:
        self.offset = 0

    def __call__(self, session: str, product: str, minute: float) -> Msg:
        name, category = NAMES[product]
        ts = T0 + timedelta(minutes=minute)
        event = {
            "event_id": f"e{self.offset}", "session_id": session, "user_id": f"u-{session}",
            "product_id": product, "product_name": name, "category": category,
            "action": "view", "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        }  # fmt: skip
        self.offset += 1
        return Msg(orjson.dumps(event), self.offset - 1)


def _recs(url: str, item: str) -> list[str]:
    got = httpx.get(f"{url}/v1/recommend", params={"session_id": "probe", "item_id": item},
                    timeout=30.0)  # the first call may load the kernel on a busy machine
    assert got.status_code == 200
    return got.json()


def _blend(url: str, item: str, blend: bool = True) -> tuple[str, dict[str, float]]:
    """The source and scores of a session route's answer to one click (not stored)."""
    got = httpx.post(f"{url}/v1/sessions/probe-{item}/clicks", timeout=30.0,
                     json={"item_id": item, "user_consent": False, "blend": blend})  # fmt: skip
    assert got.status_code == 200
    body = got.json()
    return body["source"], {r["product_id"]: r["score"] for r in body["recommendations"]}


WEIGHTS = "vmis=1,coview=0.5,trending=0.25,popular=0,repeat=0"  # the API's blend weights


def _check_blend(url: str, engine: Engine, click: Clicks) -> None:
    """Three sessions view c, then d, after the API started: d becomes c's co-view partner
    and enters the lights category's trending (engagement over the windows: b 4, a 3, d 3).
    The blend (weights WEIGHTS) serves both from its mirrors: d for c scores VMIS-kNN's top
    (1) plus the co-view weight (0.5); for a (lights), which VMIS-kNN never pairs with d, the
    trending weight at rank 2 (a itself left out): 0.25 / 2."""
    engine.ingest([click(f"t{n}", p, 20 + n / 10 + m / 100) for n in range(3)
                   for m, p in enumerate("cd")])  # fmt: skip
    engine.refresh()
    wait_until(lambda: _blend(url, "c")[1].get("d") == 1.5, timeout=30)
    wait_until(lambda: _blend(url, "a")[1].get("d") == 0.125, timeout=30)
    source, scores = _blend(url, "a")
    # VMIS-kNN's top, a's co-view partner, lights' most engaging product
    assert source == "blend" and scores["b"] == 1.75
    source, pure = _blend(url, "a", blend=False)
    assert source == "vmis" and "d" not in pure and pure["b"] == max(pure.values())


@pytest.fixture
def pipeline(dsn: str):
    engine = Engine(EngineConfig.of(pg_dsn=dsn, state_path=None, clock="event"))
    click = Clicks()
    # three sessions view a and b (a co-view pair), one views b and c
    engine.ingest([click(s, p, m) for s, m0 in (("s1", 0), ("s2", 1), ("s3", 2))
                   for p, m in (("a", m0), ("b", m0 + 0.5))])  # fmt: skip
    engine.ingest([click("s4", "b", 3), click("s4", "c", 3.5)])
    engine.refresh()
    try:
        yield engine, dsn, click
    finally:
        engine.stop()


def test_engine_feed_in_process(pipeline, tmp_path) -> None:
    engine, dsn, click = pipeline
    port = free_port()
    api = start_api(engine, dsn, port=port, data_dir=tmp_path / "data",
                    blend_weights=BlendWeights.parse(WEIGHTS))  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(f"{url}/readyz").status_code == 200)
        assert _recs(url, "a")[:1] == ["b"]
        assert "z" not in _recs(url, "a")

        # a new session pairs z with a: after one refresh the index has it
        engine.ingest([click("s5", "z", 10), click("s5", "a", 10.5)])
        engine.refresh()
        lag = wait_until(lambda: _recs(url, "z")[:1] == ["a"])
        assert lag < 5
        _check_blend(url, engine, click)  # the mirrors follow the engine in process

        # the event clock jumps 8 days: every session leaves the 7-day history (deletes)
        engine.ingest([click("late", "c", 8 * 24 * 60)])
        engine.refresh()
        wait_until(lambda: httpx.get(f"{url}/v1/status").json()["index"]["sessions"] == 1)
        assert "a" not in _recs(url, "z")

        # also-viewed and trending equal the engine's tables
        with psycopg.connect(dsn) as conn:
            pairs = conn.execute("SELECT product_a, product_b, co_view_count FROM co_view_pairs")
            expected = {(b if a == "a" else a, n) for a, b, n in pairs if "a" in (a, b)}
            trending = conn.execute(
                "SELECT category, product_id FROM trending_by_category t WHERE window_start = "
                "(SELECT max(window_start) FROM trending_by_category u "
                " WHERE u.category = t.category) ORDER BY category, rank"
            ).fetchall()
        body = httpx.get(f"{url}/v1/products/a/also-viewed").json()
        assert {(r["product_id"], r["co_view_count"]) for r in body["also_viewed"]} == expected
        blocks = httpx.get(f"{url}/v1/trending").json()["categories"]
        assert [(b["category"], r["product_id"]) for b in blocks for r in b["trending"]] == (
            trending
        )
        status = httpx.get(f"{url}/v1/status").json()
        assert {r["view"] for r in status["views"]} >= {"vmis_history", "co_view_pairs"}
    finally:
        api.stop()


def test_change_table_from_another_process(pipeline, tmp_path) -> None:
    """`flashrec serve --pg-dsn` beside the engine follows flashrec_changes (LISTEN/NOTIFY);
    its blend follows trending_by_category's feed table and re-reads co_view_pairs."""
    engine, dsn, click = pipeline
    args = ["--pg-dsn", dsn, "--data-dir", str(tmp_path / "data"), "--blend-weights", WEIGHTS]
    with api_process(args, free_port(), tmp_path / "api.log") as url:
        assert _recs(url, "a")[:1] == ["b"]
        engine.ingest([click("s5", "z", 10), click("s5", "a", 10.5)])
        engine.refresh()
        assert wait_until(lambda: _recs(url, "z")[:1] == ["a"]) < 5
        _check_blend(url, engine, click)
        status = httpx.get(f"{url}/readyz").json()["blend"]
        assert status["co_view_pairs"]["state"] == "following"
        assert status["trending_by_category"]["state"] == "following"
    assert "by re-reading it" not in (tmp_path / "api.log").read_text()  # not the fallback


def test_popular_source_from_another_process(pipeline, tmp_path) -> None:
    """`flashrec serve` with only the popular source weighted answers `blend.popular` over
    trending_by_category as PostgreSQL holds it, for a session in rugs (c) that clicked a
    lamp (a) last: lights' products by the session's home-category chance, a left out."""
    engine, dsn, click = pipeline
    only = "vmis=0,coview=0,trending=0,popular=1,repeat=0"
    args = ["--pg-dsn", dsn, "--data-dir", str(tmp_path / "data"), "--blend-weights", only]
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT category, product_id, engagement_score, window_start "
                            "FROM trending_by_category").fetchall()  # fmt: skip
    table = trending_table(rows)
    want = popular(table, ["rugs", "lights"], 10, DEFAULT.focus, leave_out="a",
                   items=["c", "a"], surge=NO_SURGE, sale_focus=DEFAULT.sale_focus)  # fmt: skip
    best = want[0][1]
    sessions = iter(range(1000))
    with api_process(args, free_port(), tmp_path / "api.log") as url:

        def answer() -> dict[str, float]:
            session = f"rug-lamp-{next(sessions)}"  # a new session each time
            for item in ("c", "a"):
                body = {"item_id": item, "exclude_session_items": False}
                got = httpx.post(f"{url}/v1/sessions/{session}/clicks", json=body, timeout=30.0)
                assert got.status_code == 200
            return {r["product_id"]: r["score"] for r in got.json()["recommendations"]}

        wait_until(lambda: list(answer()) == [p for p, _ in want], timeout=30)
        assert answer() == pytest.approx({p: round(v / best, 6) for p, v in want}, abs=1e-6)
