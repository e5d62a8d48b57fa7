"""The API answers with the kernel's recommendations, keeps Serenade's session rules, rejects
bad parameters with 4xx and never answers 5xx under fuzzing (hypothesis over the OpenAPI)."""

from __future__ import annotations

from urllib.parse import quote

import httpx
import numpy as np
import pytest
from conftest import ClickData, free_port
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serving_support import api_process, fill_views

from recommender.serving.app import ServingState, create_app
from recommender.serving.live_index import LiveIndex
from recommender.serving.session_store import SessionStore
from recommender.serving.views import Views
from recommender.sessions_io import read_sessions
from udfs.vmisknn import VMISIndex


@pytest.fixture(scope="module")
def train(sample_data: ClickData):
    return sample_data["train"]


@pytest.fixture(scope="module")
def index(train) -> LiveIndex:
    idx = LiveIndex()
    idx.build_from_tsv(train)
    return idx


@pytest.fixture(scope="module")
def dsn(postgres) -> str:
    """The module's server, its view tables filled."""
    fill_views(postgres.dsn)
    return postgres.dsn


@pytest.fixture
def client(index, dsn, tmp_path):
    state = ServingState(index, SessionStore(tmp_path / "sessions"), Views(dsn, cache_s=0))
    with TestClient(create_app(state), raise_server_exceptions=False) as c:
        yield c


def _test_sessions(click_data: ClickData, count: int) -> list[tuple[str, list[str]]]:
    data = read_sessions(click_data["test"])
    order = np.lexsort((data.timestamps, data.session_ids))
    sessions: dict[str, list[str]] = {}
    for n in order.tolist():
        sessions.setdefault(str(data.session_ids[n]), []).append(str(data.item_ids[n]))
    return list(sessions.items())[:count]


@pytest.fixture
def data_client(click_data: ClickData, dsn, tmp_path):
    """A client over an index of `click_data` (the sample, and the public data where present)."""
    idx = LiveIndex()
    idx.build_from_tsv(click_data["train"])
    state = ServingState(idx, SessionStore(tmp_path / "sessions"), Views(dsn, cache_s=0))
    with TestClient(create_app(state), raise_server_exceptions=False) as c:
        yield c


def test_recommend_equals_kernel_for_each_click(data_client, click_data) -> None:
    """Kernel built independently from the same file, fed the stored session's last 2 clicks."""
    client = data_client
    data = read_sessions(click_data["train"])
    kernel = VMISIndex.build(data.session_ids, data.item_ids, data.timestamps, m=500)
    checked = nonempty = 0
    for session_id, items in _test_sessions(click_data, 60):
        clicks: list[str] = []
        for item in items:
            if not clicks or clicks[-1] != item:
                clicks.append(item)
            got = client.get(
                "/v1/recommend",
                params={"session_id": session_id, "item_id": item, "user_consent": "true"},
            )
            assert got.status_code == 200
            evolving = [int(i) for i in clicks[-2:]]
            expected = [str(i) for i, _ in kernel.recommend(evolving, k=500, how_many=21)]
            if expected:
                assert got.json() == expected, (session_id, clicks)
                nonempty += 1
            checked += 1
    assert checked > 100 and nonempty > checked // 2


def test_a_built_index_has_its_kernels_loaded() -> None:
    """Building the index loads the compiled kernels (so /readyz waits for them), in a fresh
    process where nothing else has called them."""
    import subprocess
    import sys

    from recommender.config import PROJECT_ROOT

    code = ("from recommender.serving.live_index import LiveIndex\n"
            "from udfs import kernel\n"
            "LiveIndex().build([('h1', ['a', 'b'], 1.0)])\n"
            "print(len(kernel.recommend_one.signatures), len(kernel.recommend_batch.signatures),"
            " len(kernel.upsert.signatures))\n")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert [int(n) > 0 for n in out.stdout.split()] == [True, True, True], out.stdout


def test_session_items_are_left_out_where_a_shop_wants(tmp_path) -> None:
    index = LiveIndex()
    index.build([("h1", ["a", "b", "c"], 1.0), ("h2", ["a", "b", "c"], 2.0)])
    state = ServingState(index, SessionStore(tmp_path / "sessions"), Views(None, cache_s=0))
    with TestClient(create_app(state), raise_server_exceptions=False) as c:
        c.post("/v1/sessions/s/clicks", json={"item_id": "a"})
        body = c.post("/v1/sessions/s/clicks", json={"item_id": "b"}).json()
        assert [r["product_id"] for r in body["recommendations"]] == ["c"]
        stored = c.get("/v1/sessions/s/recommendations").json()
        assert [r["product_id"] for r in stored["recommendations"]] == ["c"]
        every = c.get("/v1/sessions/s/recommendations",
                      params={"exclude_session_items": "false"}).json()  # fmt: skip
        assert {r["product_id"] for r in every["recommendations"]} == {"a", "c"}
        # the Serenade-compatible route answers as Serenade does unless asked
        params = {"session_id": "t", "item_id": "a", "user_consent": "true"}
        c.get("/v1/recommend", params=params)
        assert set(c.get("/v1/recommend", params={**params, "item_id": "b"}).json()) == {"a", "c"}
        c.get("/v1/recommend", params={**params, "session_id": "u"})
        only_new = c.get("/v1/recommend", params={**params, "session_id": "u", "item_id": "b",
                                                  "exclude_session_items": "true"})  # fmt: skip
        assert only_new.json() == ["c"]


def test_scored_api_matches_serenade_endpoint(client, index) -> None:
    """With blend=false the session routes answer the Serenade route's pure VMIS-kNN list."""
    item = index.popular(1)[0][0]
    ids = client.get("/v1/recommend", params={"session_id": "a", "item_id": item}).json()
    body = client.post("/v1/sessions/b/clicks", json={"item_id": item, "blend": False}).json()
    assert body["source"] == "vmis"
    assert [r["product_id"] for r in body["recommendations"]] == ids
    scores = [r["score"] for r in body["recommendations"]]
    assert scores == sorted(scores, reverse=True)
    stored = client.get("/v1/sessions/b/recommendations", params={"blend": "false"}).json()
    assert [p["product_id"] for p in stored["items"]] == [item]
    assert stored["recommendations"] == body["recommendations"]
    blended = client.get("/v1/sessions/b/recommendations").json()  # the default: the blend
    assert blended["source"] == "blend" and blended["recommendations"]


def test_fast_path_and_route_agree(client, index) -> None:
    """Plain requests take the fast path; unusual spellings the FastAPI route: same answers."""
    for n, (item, _) in enumerate(index.popular(5)):
        fast = client.get(f"/v1/recommend?session_id=f{n}&item_id={item}&user_consent=true")
        slow = client.get(f"/v1/recommend?item_id={item}&session_id=g{n}&user_consent=True&x=1")
        assert fast.status_code == slow.status_code == 200
        assert fast.json() == slow.json() and fast.json()
        assert fast.headers["content-type"] == slow.headers["content-type"]
    assert client.get("/v1/sessions/g0/recommendations").json()["items"]  # consent honoured
    text = client.get("/metrics").text
    assert 'flashrec_requests_total{route="/v1/recommend",status="200"} 10.0' in text


def test_consent_false_stores_nothing(client, index) -> None:
    a, b = (i for i, _ in index.popular(2))
    client.get("/v1/recommend", params={"session_id": "c", "item_id": a, "user_consent": "false"})
    client.get("/v1/recommend", params={"session_id": "c", "item_id": b})  # default: no consent
    assert client.get("/v1/sessions/c/recommendations").json()["items"] == []
    client.post("/v1/sessions/c/clicks", json={"item_id": a, "user_consent": False})
    assert client.get("/v1/sessions/c/recommendations").json()["items"] == []


def test_unknown_item_gets_popular_items(client, index) -> None:
    got = client.get("/v1/recommend", params={"session_id": "u", "item_id": "no-such-item"})
    assert got.status_code == 200
    assert got.json() == [i for i, _ in index.popular(21)]
    body = client.post("/v1/sessions/u2/clicks", json={"item_id": "no-such-item"}).json()
    assert body["source"] == "popular"


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"session_id": "s"},
        {"item_id": "1"},
        {"session_id": "", "item_id": "1"},
        {"session_id": "s", "item_id": "x" * 129},
        {"session_id": "s", "item_id": "1", "user_consent": "maybe"},
        {"session_id": "s", "item_id": "a\x00b"},
    ],
)
def test_bad_parameters_are_4xx_with_message(client, params) -> None:
    got = client.get("/v1/recommend", params=params)
    assert got.status_code == 422
    assert got.json()["detail"]


def test_bad_bodies_and_limits_are_4xx(client) -> None:
    assert client.post("/v1/sessions/s/clicks", content=b"{not json").status_code == 422
    assert client.post("/v1/sessions/s/clicks", json={"how_many": 3}).status_code == 422
    lone_surrogate = b'{"item_id": "\\ud800"}'
    assert client.post("/v1/sessions/s/clicks", content=lone_surrogate).status_code == 422
    assert client.get("/v1/sessions/s/recommendations?how_many=0").status_code == 422
    assert client.get("/v1/products/p1/also-viewed?limit=-1").status_code == 422
    assert client.get("/v1/trending?limit=abc").status_code == 422
    assert client.get("/v1/nowhere").status_code == 404
    nul = client.get("/v1/products/%00/also-viewed")  # found by the fuzz test: was a 503
    assert nul.status_code == 422 and "pattern" in nul.json()["detail"]


def test_health_ready_metrics_openapi(client, index) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz").json()
    assert ready["ready"] and ready["sessions"] == index.n_sessions > 100
    client.get("/v1/recommend", params={"session_id": "m", "item_id": "1"})
    text = client.get("/metrics").text
    assert 'flashrec_request_seconds_bucket{le="0.001",route="/v1/recommend"}' in text
    assert "flashrec_index_sessions " in text and "flashrec_index_sync_lag_seconds" in text
    schema = client.get("/openapi.json").json()
    assert "/v1/recommend" in schema["paths"] and "/v1/trending" in schema["paths"]


# --- fuzzing: every operation of the OpenAPI schema with arbitrary parameters -----------------

TEXT = st.text(st.characters(codec="utf-8"), max_size=140) | st.sampled_from(
    ["", "0", "-1", "1e309", "true", "null", "p1", "14957", "%00", "../etc", "a/b", " "]
)


@pytest.fixture
def operations(client) -> list[tuple[str, str, list[str], list[str]]]:
    schema = client.get("/openapi.json").json()
    out = []
    for path, methods in schema["paths"].items():
        for method, op in methods.items():
            params = op.get("parameters", [])
            out.append(
                (
                    method.upper(),
                    path,
                    [p["name"] for p in params if p["in"] == "path"],
                    [p["name"] for p in params if p["in"] == "query"],
                )
            )
    assert len(out) >= 9
    return out


@settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_fuzz_never_5xx(client, operations, data) -> None:
    method, path, path_names, query_names = data.draw(st.sampled_from(operations))
    url = path
    for name in path_names:
        value = data.draw(TEXT.filter(lambda s: s not in ("", ".", "..")), label=name)
        url = url.replace("{" + name + "}", quote(value, safe=""))
    query = {n: data.draw(TEXT, label=n) for n in query_names if data.draw(st.booleans())}
    body = data.draw(
        st.one_of(
            st.none(),
            st.fixed_dictionaries(
                {},
                optional={
                    "item_id": TEXT,
                    "user_consent": st.booleans() | TEXT,
                    "how_many": st.integers(-5, 10_000) | TEXT,
                },
            ),
        )
    )
    got = client.request(method, url, params=query, json=body if method == "POST" else None)
    assert got.status_code < 500, (method, url, query, body, got.text[:300])


@pytest.mark.e2e
def test_restart_keeps_sessions(train, tmp_path) -> None:
    """kill -9 of `flashrec serve`, start again on the same data dir: the session goes on."""
    port = free_port()
    args = ["--history", str(train), "--data-dir", str(tmp_path / "data")]
    first = [line.split("\t")[1] for line in train.read_text().splitlines()[1:3]]
    with api_process(args, port, tmp_path / "api.log") as url:
        for item in first:
            httpx.get(
                f"{url}/v1/recommend",
                params={"session_id": "r1", "item_id": item, "user_consent": "true"},
            )
        before = httpx.get(f"{url}/v1/sessions/r1/recommendations").json()
    with api_process(args, port, tmp_path / "api.log") as url:
        after = httpx.get(f"{url}/v1/sessions/r1/recommendations").json()
    assert [p["product_id"] for p in after["items"]] == first
    assert after["recommendations"] == before["recommendations"]
    assert after["recommendations"]
