"""GET /v1/sessions/{session_id}/intent: the session's session_intent row from a real
PostgreSQL; 404 when the session has no score (or no scorer has created the table yet), 422
for a bad id, 503 when PostgreSQL cannot be reached."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient

from recommender.intent.score import table_sql
from recommender.serving.app import ServingState, create_app
from recommender.serving.live_index import LiveIndex
from recommender.serving.session_store import SessionStore
from recommender.serving.views import Views

FEATURES_AT = datetime(2026, 11, 30, 19, 5, 0, tzinfo=UTC)
SCORED_AT = FEATURES_AT + timedelta(seconds=2)


@pytest.fixture(scope="module")
def dsn(postgres) -> str:
    """The module's server itself (the scorer's table lives in its default database)."""
    return postgres.dsn


def _client(dsn: str, tmp_path) -> TestClient:
    state = ServingState(LiveIndex(), SessionStore(tmp_path / "sessions"), Views(dsn, cache_s=0))
    return TestClient(create_app(state), raise_server_exceptions=False)


def test_intent_route_reads_session_intent(dsn: str, tmp_path) -> None:
    with _client(dsn, tmp_path) as c:
        # no scorer has run: the table does not exist yet -> 404, not 503
        missing = c.get("/v1/sessions/s1/intent")
        assert missing.status_code == 404
        assert "no intent score" in missing.json()["detail"]

        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(table_sql())
            conn.execute(
                "INSERT INTO session_intent VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                ("s1", "u1", 0.8125, False, 7, "v0003", FEATURES_AT, SCORED_AT),
            )
            conn.execute(
                "INSERT INTO session_intent VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                ("s 2 é", "u2", 1.0, True, 12, "v0003", FEATURES_AT, SCORED_AT),
            )

        got = c.get("/v1/sessions/s1/intent")
        assert got.status_code == 200
        assert got.headers["content-type"] == "application/json"
        body = got.json()
        assert body == {
            "session_id": "s1", "user_id": "u1", "probability": 0.8125, "purchased": False,
            "event_count": 7, "model_version": "v0003",
            "features_at": body["features_at"], "scored_at": body["scored_at"],
        }
        assert datetime.fromisoformat(body["features_at"]) == FEATURES_AT
        assert datetime.fromisoformat(body["scored_at"]) == SCORED_AT

        bought = c.get("/v1/sessions/s%202%20%C3%A9/intent")  # any shop id, URL-encoded
        assert bought.status_code == 200
        assert bought.json()["purchased"] is True and bought.json()["probability"] == 1.0

        unknown = c.get("/v1/sessions/nobody/intent")
        assert unknown.status_code == 404
        assert unknown.json() == {
            "detail": "session 'nobody' has no intent score (unknown, a bot, or not scored yet)"
        }

        for bad in ("%00", "x" * 129):
            r = c.get(f"/v1/sessions/{bad}/intent")
            assert r.status_code == 422, bad
            assert "session_id" in r.json()["detail"]

        schema = c.get("/openapi.json").json()
        assert "/v1/sessions/{session_id}/intent" in schema["paths"]


def test_intent_route_is_503_when_postgres_is_down(tmp_path) -> None:
    with _client("postgresql://nobody@127.0.0.1:1/none", tmp_path) as c:
        r = c.get("/v1/sessions/s1/intent")
        assert r.status_code == 503
        assert r.json()["detail"].startswith("views unavailable")


def test_intent_route_without_a_dsn_is_503(tmp_path) -> None:
    with _client(None, tmp_path) as c:
        r = c.get("/v1/sessions/s1/intent")
        assert r.status_code == 503
        assert "no PostgreSQL DSN" in r.json()["detail"]
