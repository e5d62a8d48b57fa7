"""The evolving-session store: Serenade's rules and durability across reopen."""

from __future__ import annotations

import pytest

from recommender.serving.sessions import SessionStore


@pytest.fixture(params=["rocksdb", "sqlite"])
def store(request, tmp_path):
    s = SessionStore(tmp_path / "sessions", max_items=3, ttl_s=1800, backend=request.param)
    yield s
    s.close()


def test_consecutive_duplicates_dropped_and_trimmed(store: SessionStore) -> None:
    assert store.append("s", "a", now=1.0) == ["a"]
    assert store.append("s", "a", now=2.0) == ["a"]
    assert store.append("s", "b", now=3.0) == ["a", "b"]
    assert store.append("s", "a", now=4.0) == ["a", "b", "a"]  # not consecutive: kept
    assert store.append("s", "c", now=5.0) == ["b", "a", "c"]  # trimmed to 3 newest
    assert store.get("s", now=6.0).items == ["b", "a", "c"]


def test_idle_session_expires_after_ttl(store: SessionStore) -> None:
    store.append("s", "a", now=0.0)
    store.append("s", "b", now=1000.0)
    assert store.get("s", now=1000.0 + 1800).items == ["a", "b"]
    assert store.get("s", now=1000.0 + 1801) is None
    assert store.append("s", "c", now=1000.0 + 1801) == ["c"]  # starts afresh
    store.append("old", "x", now=0.0)
    assert store.purge_expired(now=1000.0 + 1801) == 1
    assert store.get("old", now=0.0) is None


def test_sessions_survive_reopen(tmp_path) -> None:
    for backend in ("rocksdb", "sqlite"):
        path = tmp_path / backend
        first = SessionStore(path, max_items=2, backend=backend)
        first.append("s1", "a", now=100.0)
        first.append("s1", "b", now=101.0)
        first.close()
        again = SessionStore(path, max_items=2, backend=backend)
        assert again.get("s1", now=102.0).items == ["a", "b"], backend
        assert again.backend == backend
        again.close()


def test_rejects_zero_items(tmp_path) -> None:
    with pytest.raises(ValueError):
        SessionStore(tmp_path / "x", max_items=0)
