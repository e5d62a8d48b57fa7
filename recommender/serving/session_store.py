"""Evolving sessions of the shop's visitors, kept on the serving node with Serenade's rules.

A session is the list of its newest item ids (strings) plus the time of its last click.
Rules (Serenade): a click equal to the session's newest item is dropped (consecutive
duplicate), the list is trimmed to `max_items` newest items, and a session idle for longer
than `ttl_s` starts afresh. Storage is RocksDB (PyPI `rocksdict`, write-ahead log on every
write, so a killed process loses nothing) with SQLite in WAL mode as the fallback.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from recommender.events import SESSION_GAP

log = logging.getLogger(__name__)

DEFAULT_TTL_S = SESSION_GAP.total_seconds()
PURGE_BATCH = 1000  # idle sessions deleted per hold of the store's lock (purge_expired)


@dataclass(frozen=True)
class Session:
    """A stored evolving session: item ids oldest first, last click in epoch seconds."""

    items: list[str]
    last_seen: float


def _encode(session: Session) -> bytes:
    return orjson.dumps({"items": session.items, "ts": session.last_seen})


def _decode(raw: bytes) -> Session:
    value = orjson.loads(raw)
    return Session(items=list(value["items"]), last_seen=float(value["ts"]))


class _RocksBackend:
    name = "rocksdb"

    def __init__(self, path: Path) -> None:
        from rocksdict import Options, Rdict

        try:
            self._db = Rdict(str(path), Options(raw_mode=True))
        except Exception as exc:  # rocksdict raises plain Exception for I/O and lock errors
            raise OSError(
                f"cannot open the session store {path} (in use by another process?): {exc}"
            ) from exc

    def get(self, key: bytes) -> bytes | None:
        return self._db.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self._db[key] = value

    def delete(self, key: bytes) -> None:
        self._db.delete(key)

    def delete_many(self, keys: list[bytes]) -> None:
        """Delete `keys` in one atomic write."""
        from rocksdict import WriteBatch

        batch = WriteBatch(raw_mode=True)
        for key in keys:
            batch.delete(key)
        self._db.write(batch)

    def items(self):
        return self._db.items()

    def close(self) -> None:
        self._db.flush_wal(True)
        self._db.close()


class _SqliteBackend:
    name = "sqlite"

    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path / "sessions.sqlite3", check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS s (k BLOB PRIMARY KEY, v BLOB NOT NULL)")
        self._db.commit()

    def get(self, key: bytes) -> bytes | None:
        row = self._db.execute("SELECT v FROM s WHERE k = ?", (key,)).fetchone()
        return row[0] if row else None

    def put(self, key: bytes, value: bytes) -> None:
        self._db.execute("INSERT OR REPLACE INTO s (k, v) VALUES (?, ?)", (key, value))
        self._db.commit()

    def delete(self, key: bytes) -> None:
        self._db.execute("DELETE FROM s WHERE k = ?", (key,))
        self._db.commit()

    def delete_many(self, keys: list[bytes]) -> None:
        """Delete `keys` in one transaction."""
        self._db.executemany("DELETE FROM s WHERE k = ?", [(key,) for key in keys])
        self._db.commit()

    def items(self):
        return self._db.execute("SELECT k, v FROM s").fetchall()

    def close(self) -> None:
        self._db.close()


def _open_backend(path: Path, backend: str):
    if backend in ("auto", "rocksdb"):
        try:
            return _RocksBackend(path)
        except ImportError:
            if backend == "rocksdb":
                raise
            log.warning("rocksdict is not installed: keeping sessions in SQLite (WAL) instead")
    return _SqliteBackend(path)


class SessionStore:
    """Evolving sessions in an embedded key-value store at `path` (one process at a time)."""

    def __init__(
        self,
        path: Path | str,
        max_items: int = 2,
        ttl_s: float = DEFAULT_TTL_S,
        backend: str = "auto",
    ) -> None:
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_items = max_items
        self.ttl_s = ttl_s
        self._db = _open_backend(self.path, backend)
        self.backend = self._db.name
        self._lock = threading.Lock()

    def get(self, session_id: str, now: float | None = None) -> Session | None:
        """The live session, or None when unknown or idle for longer than the TTL."""
        now = time.time() if now is None else now
        raw = self._db.get(session_id.encode())
        if raw is None:
            return None
        session = _decode(raw)
        return None if now - session.last_seen > self.ttl_s else session

    def append(self, session_id: str, item_id: str, now: float | None = None) -> list[str]:
        """Record a click and return the session's items after it (oldest first)."""
        now = time.time() if now is None else now
        key = session_id.encode()
        with self._lock:
            current = self.get(session_id, now)
            items = list(current.items) if current else []
            if not items or items[-1] != item_id:
                items.append(item_id)
            items = items[-self.max_items :]
            self._db.put(key, _encode(Session(items, now)))
        return items

    def delete(self, session_id: str) -> None:
        with self._lock:
            self._db.delete(session_id.encode())

    def purge_expired(self, now: float | None = None, batch: int = PURGE_BATCH) -> int:
        """Delete sessions idle for longer than the TTL; returns how many.

        Clicks go on meanwhile: the scan for idle sessions takes no lock, and the deletes run
        in batches of `batch` keys, each under the lock for its own duration only. Each key's
        last click is read again under the lock, so a session clicked since the scan stays.
        """
        if batch < 1:
            raise ValueError("batch must be at least 1")
        now = time.time() if now is None else now
        stale = [k for k, v in self._db.items() if now - _decode(v).last_seen > self.ttl_s]
        purged = 0
        for start in range(0, len(stale), batch):
            with self._lock:
                still = []
                for key in stale[start : start + batch]:
                    raw = self._db.get(key)
                    if raw is not None and now - _decode(raw).last_seen > self.ttl_s:
                        still.append(key)
                if still:
                    self._db.delete_many(still)
            purged += len(still)
            # let a click waiting for the lock take it before the next batch: the lock is not
            # fair, and this thread would otherwise take it again at once
            time.sleep(0)
        return purged

    def __len__(self) -> int:
        return sum(1 for _ in self._db.items())

    def close(self) -> None:
        with self._lock:
            self._db.close()
