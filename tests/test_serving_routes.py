"""The API's assembly from its routers: every route at its URL, the state handed to the routes
of each app (not shared between apps), and the fast path of GET /v1/recommend validating with
the route's own validator (same requests accepted, same answers)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from recommender.serving.app import ServingState, create_app
from recommender.serving.live_index import LiveIndex
from recommender.serving.routes_recommend import fast_query
from recommender.serving.session_store import SessionStore
from recommender.serving.views import Views

HISTORY = [("h1", ["a", "b", "c"], 1.0), ("h2", ["a", "b", "c"], 2.0), ("h3", ["b", "d"], 3.0)]

ROUTES = {
    ("GET", "/v1/recommend"),
    ("POST", "/v1/sessions/{session_id}/clicks"),
    ("GET", "/v1/sessions/{session_id}/recommendations"),
    ("GET", "/v1/sessions/{session_id}/trending"),
    ("GET", "/v1/sessions/{session_id}/intent"),
    ("GET", "/v1/products/{product_id}/also-viewed"),
    ("GET", "/v1/trending"),
    ("GET", "/v1/status"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/"),
    ("GET", "/static/{name}"),
}


def _state(tmp_path: Path, history: list) -> ServingState:
    index = LiveIndex()
    index.build(history)
    return ServingState(index, SessionStore(tmp_path / "sessions"), Views(None, cache_s=0))


@pytest.fixture
def client(tmp_path: Path):
    with TestClient(create_app(_state(tmp_path, HISTORY)), raise_server_exceptions=False) as c:
        yield c


def test_every_route_is_assembled(tmp_path: Path) -> None:
    app = create_app(_state(tmp_path, HISTORY))
    found = {
        (method, context.route.path)
        for context in iter_route_contexts(app.routes)
        for method in getattr(context.route, "methods", None) or ()
        if context.route.path in {path for _, path in ROUTES}
    }
    assert found == ROUTES


def test_each_app_reads_its_own_state(tmp_path: Path) -> None:
    """The routers are shared between apps; the state comes from the request's app."""
    small = _state(tmp_path / "small", HISTORY[:1])
    large = _state(tmp_path / "large", HISTORY)
    with TestClient(create_app(small)) as a, TestClient(create_app(large)) as b:
        assert a.get("/readyz").json()["sessions"] == 1
        assert b.get("/readyz").json()["sessions"] == 3
        b.post("/v1/sessions/s/clicks", json={"item_id": "a"})
        assert b.get("/v1/sessions/s/recommendations").json()["items"]
        assert a.get("/v1/sessions/s/recommendations").json()["items"] == []


QUERIES = [
    "session_id={s}&item_id=a",
    "session_id={s}&item_id=b&user_consent=true",
    "session_id={s}&item_id=b&user_consent=1",
    "session_id={s}&item_id=b&user_consent=yes",
    "session_id={s}&item_id=b&user_consent=False",
    "session_id={s}&item_id=a&user_consent=true&exclude_session_items=true",
    "item_id=c&session_id={s}",
    "session_id={s}&item_id=a+b",
    "session_id={s}&item_id=%C3%A9",
    "session_id={s}&item_id=no-such-item",
    "session_id={s}&item_id=a&blend=true",
    "session_id={s}&item_id=b&user_consent=true&blend=0",
    "session_id={s}&item_id=" + "x" * 128,
    # refused by the route, so never answered by the fast path
    "session_id={s}&item_id=" + "x" * 129,
    "session_id={s}&item_id=",
    "session_id={s}&item_id=a%00b",
    "session_id={s}",
    "item_id=a",
    "session_id={s}&item_id=a&user_consent=maybe",
    "session_id={s}&item_id=a&exclude_session_items=2",
    "session_id={s}&item_id=a&blend=maybe",
]


@pytest.mark.parametrize("template", QUERIES)
def test_fast_path_accepts_what_the_route_accepts(client: TestClient, template: str) -> None:
    """A trailing unknown parameter sends a request to the FastAPI route; the same request
    without it takes the fast path wherever the shared validator accepts it."""
    fast_raw = template.format(s="fast")
    fast = client.get(f"/v1/recommend?{fast_raw}")
    route = client.get(f"/v1/recommend?{template.format(s='route')}&unknown=1")
    taken = fast_query(fast_raw.encode()) is not None
    assert taken == (route.status_code == 200), (fast_raw, route.text)
    assert fast.status_code == route.status_code
    assert fast.json() == route.json()
    assert fast.headers["content-type"] == route.headers["content-type"]


def test_fast_path_records_consented_clicks(client: TestClient) -> None:
    assert fast_query(b"session_id=k&item_id=a&user_consent=true") is not None
    client.get("/v1/recommend?session_id=k&item_id=a&user_consent=true")
    client.get("/v1/recommend?session_id=k&item_id=b")  # no consent: not stored
    items = client.get("/v1/sessions/k/recommendations").json()["items"]
    assert [i["product_id"] for i in items] == ["a"]
