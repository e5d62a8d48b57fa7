"""The evolving-session store: Serenade's rules and durability across reopen."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from recommender.serving.session_store import SessionStore


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


class _WatchedLock:
    """The store's lock, saying whether it is held and running a hook (once) right after the
    first release."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.held = False
        self.after_first_release: Callable[[], None] | None = None

    def __enter__(self) -> None:
        self._lock.acquire()
        self.held = True

    def __exit__(self, *exc: object) -> None:
        self.held = False
        self._lock.release()
        hook, self.after_first_release = self.after_first_release, None
        if hook is not None:
            hook()


class _Recorder:
    """The store's backend, logging the purge's scan and deletes with the lock's state."""

    def __init__(self, db: Any, lock: _WatchedLock) -> None:
        self._db, self._lock = db, lock
        self.log: list[tuple] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)

    def items(self) -> Any:
        self.log.append(("scan", self._lock.held))
        return self._db.items()

    def delete_many(self, keys: list[bytes]) -> None:
        self.log.append(("delete", len(keys), self._lock.held))
        self._db.delete_many(keys)


def test_purge_lets_clicks_through_between_batches(store: SessionStore) -> None:
    """A click arriving mid-purge goes through before the purge ends; the session it touched
    stays although the scan found it idle; the other idle sessions go; the scan runs without
    the lock and each hold of the lock deletes at most one batch."""
    names = [f"old{i}" for i in range(10)]
    for name in names:
        store.append(name, "a", now=0.0)
    store.append("live", "a", now=5000.0)
    lock = _WatchedLock()
    store._lock = lock  # type: ignore[assignment]
    backend = _Recorder(store._db, lock)
    store._db = backend
    seen: dict[str, Any] = {}

    def click() -> None:  # touches the last idle session the purge has not reached yet
        seen["pending"] = [n for n in names if store.get(n, now=0.0) is not None]
        store.append(seen["pending"][-1], "b", now=5000.0)

    def between_batches() -> None:
        other = threading.Thread(target=click)
        other.start()
        other.join(timeout=30)
        seen["clicked"] = not other.is_alive()

    lock.after_first_release = between_batches
    purged = store.purge_expired(now=5000.0, batch=3)
    assert seen["clicked"] and len(seen["pending"]) == 7  # first batch of 3 gone, 7 to go
    touched = seen["pending"][-1]
    assert purged == 9
    assert store.get(touched, now=5000.0).items == ["b"]
    assert store.get("live", now=5000.0).items == ["a"]
    assert [n for n in names if store.get(n, now=0.0) is not None] == [touched]
    assert backend.log[0] == ("scan", False)
    assert backend.log[1:] == [("delete", 3, True)] * 3


def test_purge_removes_every_idle_session(store: SessionStore) -> None:
    for i in range(1000):
        store.append(f"s{i}", "a", now=float(i))
    assert store.purge_expired(now=1800.0 + 499.5, batch=64) == 500  # idle > 1800 s: s0-s499
    assert len(store) == 500 and store.get("s499", now=0.0) is None
    assert store.get("s500", now=2299.5).items == ["a"]
    with pytest.raises(ValueError):
        store.purge_expired(batch=0)
