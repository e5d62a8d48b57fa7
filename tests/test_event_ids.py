"""The event_id index behind duplicate detection, and the store's use of it."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np

from recommender.engine.event_ids import MERGE_CHUNKS, EventIdIndex
from recommender.engine.store import StateStore


def event(i: int, ts: datetime) -> dict:
    return {"event_id": f"e{i}", "session_id": f"s{i % 7}", "user_id": "u", "product_id": "p",
            "product_name": "n", "category": "c", "action": "view",
            "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}  # fmt: skip


def test_index_finds_every_added_hash_across_merges() -> None:
    rng = np.random.default_rng(3)
    index = EventIdIndex()
    added = []
    for _ in range(MERGE_CHUNKS * 2 + 5):  # forces merges into the main array
        chunk = rng.integers(0, 2**63, 300, dtype=np.uint64)
        index.add(chunk)
        added.append(chunk)
    every = np.concatenate(added)
    assert index.maybe_present(every).all()
    assert len(index.main) > 0 and len(index.recent) <= MERGE_CHUNKS
    others = rng.integers(0, 2**63, 5000, dtype=np.uint64)
    others = others[~np.isin(others, every)]
    assert not index.maybe_present(others).any()
    assert not EventIdIndex().maybe_present(others).any()


def test_index_answers_a_mixed_batch_in_its_own_order() -> None:
    """Hashes are searched sorted; each answer must come back to its own position."""
    rng = np.random.default_rng(5)
    index = EventIdIndex()
    stored = rng.integers(0, 2**63, 4000, dtype=np.uint64)
    for chunk in np.array_split(stored, MERGE_CHUNKS + 3):  # main array and recent chunks
        index.add(chunk)
    batch = np.concatenate([stored[::3], rng.integers(0, 2**63, 2000, dtype=np.uint64)])
    rng.shuffle(batch)
    assert 0 < index.maybe_present(batch).sum() < len(batch)
    assert (index.maybe_present(batch) == np.isin(batch, stored)).all()


def test_store_refuses_stored_ids_only() -> None:
    t0 = datetime(2026, 1, 1, 12)
    store = StateStore(None)
    try:
        store.apply([event(i, t0) for i in range(100)], {})
        dups = store.apply([event(i, t0) for i in range(90, 110)], {})
        assert sorted(dups) == sorted(f"e{i}" for i in range(90, 100))
        assert store.count() == 110
        # a hash that matches by chance refuses nothing: candidates are confirmed by id
        store.ids.maybe_present = lambda h: np.ones(len(h), bool)  # type: ignore[method-assign]
        assert store.apply([event(i, t0) for i in range(200, 210)], {}) == []
        assert store.count() == 120
    finally:
        store.close()


def test_restart_and_prune_keep_duplicates_exact(tmp_path) -> None:
    t0 = datetime(2026, 1, 1, 12)
    path = tmp_path / "state.duckdb"
    store = StateStore(path)
    store.apply([event(i, t0) for i in range(50)], {})
    store.apply([event(i, t0 + timedelta(hours=2)) for i in range(50, 60)], {})
    store.close()
    store = StateStore(path)  # the index is rebuilt from the file
    try:
        assert sorted(store.apply([event(3, t0), event(55, t0)], {})) == ["e3", "e55"]
        assert store.prune(t0 + timedelta(hours=1)) == 50
        # pruned ids are gone from the store: sent again, they are new events
        assert store.apply([event(3, t0 + timedelta(hours=3))], {}) == []
        assert store.apply([event(56, t0)], {}) == ["e56"]
    finally:
        store.close()


def test_pruned_events_leave_the_index() -> None:
    """The index holds what the store holds: after a prune, its entries are the stored
    events' (it used to keep a million pruned entries before it was rebuilt)."""
    t0 = datetime(2026, 1, 1)
    store = StateStore(None)
    try:
        for hour in range(10):
            store.apply([event(hour * 1000 + i, t0 + timedelta(hours=hour)) for i in range(500)],
                        {})  # fmt: skip
        assert len(store.ids) == store.count() == 5000
        assert store.prune(t0 + timedelta(hours=6)) == 3000
        assert len(store.ids) == store.count() == 2000
        assert store.apply([event(10, t0 + timedelta(hours=9))], {}) == []  # pruned: new again
        assert store.apply([event(9000, t0)], {}) == ["e9000"]  # still stored: a repeat
    finally:
        store.close()


def test_remove_takes_one_entry_per_hash() -> None:
    index = EventIdIndex()
    index.add(np.array([5, 5, 7], np.uint64))
    index.add(np.array([9, 11], np.uint64))
    index.remove(np.array([5, 9, 13], np.uint64))  # 13 was never there
    assert sorted(index.main.tolist()) == [5, 7, 11] and not index.recent
    assert index.maybe_present(np.array([5, 9], np.uint64)).tolist() == [True, False]
