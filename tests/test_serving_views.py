"""Also-viewed, trending and status answers equal the view rows in a real PostgreSQL."""

from __future__ import annotations

import psycopg
import pytest
from fastapi.testclient import TestClient
from serving_support import CO_VIEWS, PRODUCTS, fill_views

from recommender.serving.app import ServingState, create_app
from recommender.serving.live_index import LiveIndex
from recommender.serving.session_store import SessionStore
from recommender.serving.views import Views


@pytest.fixture(scope="module")
def dsn(postgres) -> str:
    """The module's server, its view tables filled."""
    fill_views(postgres.dsn)
    return postgres.dsn


@pytest.fixture
def client(dsn, tmp_path):
    views = Views(dsn, cache_s=0)
    state = ServingState(LiveIndex(), SessionStore(tmp_path / "sessions"), views)
    with TestClient(create_app(state)) as c:
        views.refresh_catalog()
        yield c


def test_also_viewed_equals_co_view_pairs_both_directions(client, dsn) -> None:
    with psycopg.connect(dsn) as conn:
        for product in PRODUCTS:
            rows = conn.execute(
                "SELECT product_a, product_b, co_view_count FROM co_view_pairs "
                "WHERE product_a = %s OR product_b = %s",
                (product, product),
            ).fetchall()
            expected = {(b if a == product else a, n) for a, b, n in rows}
            body = client.get(f"/v1/products/{product}/also-viewed").json()
            got = [(r["product_id"], r["co_view_count"]) for r in body["also_viewed"]]
            assert set(got) == expected, product
            counts = [n for _, n in got]
            assert counts == sorted(counts, reverse=True)
            assert body["product"]["product_name"] == PRODUCTS[product][0]
            for r in body["also_viewed"]:
                assert (r["product_name"], r["category"]) == PRODUCTS[r["product_id"]]
    assert len(CO_VIEWS) == 5
    assert client.get("/v1/products/nope/also-viewed").json()["also_viewed"] == []
    assert client.get("/v1/products/p1/also-viewed?limit=1").json()["also_viewed"] == [
        {"product_id": "p2", "product_name": "Road Shoe", "co_view_count": 7, "category": "shoes"}
    ]


def test_trending_serves_latest_window_per_category(client) -> None:
    blocks = {b["category"]: b for b in client.get("/v1/trending").json()["categories"]}
    assert set(blocks) == {"shoes", "jackets", "socks"}
    assert [r["product_id"] for r in blocks["shoes"]["trending"]] == ["p1", "p2", "p3"]
    assert [r["rank"] for r in blocks["shoes"]["trending"]] == [1, 2, 3]
    assert [r["product_id"] for r in blocks["socks"]["trending"]] == ["p6"]
    one = client.get("/v1/trending", params={"category": "jackets", "limit": 1}).json()
    assert [r["product_id"] for b in one["categories"] for r in b["trending"]] == ["p5"]
    unknown = client.get("/v1/trending", params={"category": "hats"}).json()
    assert unknown["categories"] == [{"category": "hats", "window_start": None, "trending": []}]


def test_session_trending_follows_browsed_categories(client) -> None:
    client.post("/v1/sessions/t1/clicks", json={"item_id": "p4"})
    client.post("/v1/sessions/t1/clicks", json={"item_id": "p6"})
    body = client.get("/v1/sessions/t1/trending").json()
    assert [c["category"] for c in body["categories"]] == ["jackets", "socks"]
    assert [r["product_id"] for r in body["categories"][0]["trending"]] == ["p5", "p4"]
    assert client.get("/v1/sessions/none/trending").json()["categories"] == []


def test_status_lists_view_freshness(client) -> None:
    body = client.get("/v1/status").json()
    assert {r["view_name"] for r in body["views"]} == {"trending_by_category", "co_view_pairs"}
    assert body["views_error"] is None


def test_views_down_is_503_with_reason(tmp_path) -> None:
    views = Views("postgresql://nobody@127.0.0.1:1/none", cache_s=0)
    state = ServingState(LiveIndex(), SessionStore(tmp_path / "s"), views)
    with TestClient(create_app(state)) as c:
        r = c.get("/v1/trending")
        assert r.status_code == 503
        assert "views unavailable" in r.json()["detail"]
        assert c.get("/v1/status").json()["views_error"]


def test_catalog_without_raw_events_uses_views(dsn) -> None:
    """On RisingWave (clickstream is a Kafka source) names and categories come from the views."""
    views = Views(dsn, raw_events=False)
    views.refresh_catalog()
    assert views.describe("p5") == {"product_id": "p5", "product_name": "Down Jacket",
                                    "category": "jackets"}  # fmt: skip
    assert views.catalog["p6"] == ("Wool Socks", "socks")  # trending (an older window)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO co_view_pairs VALUES ('p1', 'p8', 'Trail Shoe', 'Gaiter', 3)")
    try:
        views.refresh_catalog()
        assert views.catalog["p8"] == ("Gaiter", None)  # a name but no category known
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DELETE FROM co_view_pairs WHERE product_b = 'p8'")


def test_catalog_reads_raw_events_incrementally(dsn) -> None:
    """Later refreshes read only recent events (with an overlap) and keep what they knew."""
    from datetime import timedelta

    from serving_support import NOW

    views = Views(dsn)
    assert views.refresh_catalog() >= 6
    since = views._raw_since
    assert since == NOW - timedelta(minutes=5)  # newest event minus the overlap
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO clickstream VALUES ('e-new', 's', 'p7', 'Trail Gaiter', 'socks', "
            "'view', %s)",
            (NOW + timedelta(minutes=1),),
        )
    try:
        views.refresh_catalog()
        assert views.catalog["p7"] == ("Trail Gaiter", "socks")
        assert views.catalog["p1"] == ("Trail Shoe", "shoes")
        assert views._raw_since > since
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DELETE FROM clickstream WHERE event_id = 'e-new'")
