"""Session store purge benchmark: clicks during `SessionStore.purge_expired`, the purge that
holds the store's lock for the whole scan and delete (the former code, kept here to compare)
against the batched purge (recommender/serving/session_store.py), same store, same process.

Fills a store with `--sessions` sessions, `--idle-share` of them idle for longer than the TTL,
then per round purges while one thread clicks live sessions back to back (`append`, as the
API does per click). Prints per purge: its seconds, the purge's holds of the store's lock
(count, median, longest), and the clicks during the purge with their latency p50 / p99 / max.
The idle sessions are stored again before each round; rounds alternate the two purges.

    .venv/bin/python bench/session_store.py --sessions 200000 --idle-share 0.5 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from recommender.serving.session_store import SessionStore, _decode  # noqa: E402

TTL_S = 1800.0
NOW = 1_000_000.0


class _TimedLock:
    """The store's lock, timing every hold by the thread that makes it (the purge's)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.owner = threading.get_ident()
        self.holds: list[float] = []
        self._since = 0.0

    def __enter__(self) -> None:
        self._lock.acquire()
        self._since = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        if threading.get_ident() == self.owner:
            self.holds.append(time.perf_counter() - self._since)
        self._lock.release()


def whole_lock_purge(store: SessionStore, now: float) -> int:
    """The former purge_expired: scan and delete under one hold of the lock."""
    with store._lock:
        stale = [k for k, v in store._db.items() if now - _decode(v).last_seen > store.ttl_s]
        for key in stale:
            store._db.delete(key)
    return len(stale)


def _fill(store: SessionStore, names: list[str], at: float) -> None:
    for name in names:
        store.append(name, "p1", now=at)
        store.append(name, "p2", now=at)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def _round(store: SessionStore, purge: Any, live: list[str]) -> dict[str, Any]:
    """One purge with a clicking thread beside it."""
    lock = _TimedLock()
    store._lock = lock  # type: ignore[assignment]
    done = threading.Event()
    latencies: list[float] = []

    def click() -> None:
        rng = random.Random(1)
        while not done.is_set():
            started = time.perf_counter()
            store.append(rng.choice(live), f"p{rng.randrange(1000)}", now=NOW)
            latencies.append(time.perf_counter() - started)

    clicker = threading.Thread(target=click)
    clicker.start()
    time.sleep(0.05)  # the clicker runs before the purge starts
    started = time.perf_counter()
    purged = purge(store, NOW)
    seconds = time.perf_counter() - started
    done.set()
    clicker.join()
    store._lock = threading.Lock()  # type: ignore[assignment]
    lat = sorted(latencies)
    return {
        "purged": purged, "purge_s": round(seconds, 3),
        "lock_holds": len(lock.holds), "lock_hold_p50_ms": _ms(statistics.median(lock.holds)),
        "lock_longest_hold_ms": _ms(max(lock.holds)),
        "clicks": len(lat), "click_p50_ms": _ms(statistics.median(lat)),
        "click_p99_ms": _ms(lat[int(0.99 * (len(lat) - 1))]), "click_max_ms": _ms(lat[-1]),
    }


def run(sessions: int, idle_share: float, rounds: int, backend: str) -> dict[str, Any]:
    idle_n = int(sessions * idle_share)
    idle = [f"idle-{i}" for i in range(idle_n)]
    live = [f"live-{i}" for i in range(sessions - idle_n)]
    purges = {"whole_lock": whole_lock_purge,
              "batched": lambda s, now: s.purge_expired(now=now)}  # fmt: skip
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in purges}
    with tempfile.TemporaryDirectory() as folder:
        store = SessionStore(Path(folder) / "sessions", ttl_s=TTL_S, backend=backend)
        _fill(store, live, NOW)
        for i in range(rounds):
            order = list(purges) if i % 2 == 0 else list(reversed(purges))
            for name in order:
                _fill(store, idle, NOW - 2 * TTL_S)
                results[name].append(_round(store, purges[name], live))
        out = {"backend": store.backend, "sessions": sessions, "idle": idle_n, **results}
        store.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=200_000,
                        help="sessions in the store before each purge")
    parser.add_argument("--idle-share", type=float, default=0.5,
                        help="share of them idle for longer than the TTL (purged)")
    parser.add_argument("--rounds", type=int, default=2, help="purges of each kind")
    parser.add_argument("--backend", default="rocksdb", choices=("rocksdb", "sqlite"),
                        help="session store backend (sqlite is far slower to fill)")
    args = parser.parse_args()
    print(json.dumps(run(args.sessions, args.idle_share, args.rounds, args.backend), indent=2))


if __name__ == "__main__":
    main()
