"""The live index follows vmis_history: inserts, updates and deletes give the same answers as
a rebuild from the view's final rows."""

from __future__ import annotations

import logging
import queue
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from conftest import wait_until
from serving_support import HISTORY, NOW, fill_views

from recommender.serving.index_sync import (
    ChangeBatch,
    HistoryRows,
    IndexSync,
    SnapshotDiffFeed,
    apply_batch,
    epoch_seconds,
    load_snapshot,
)
from recommender.serving.live_index import LiveIndex
from recommender.serving.prometheus import Metrics
from recommender.serving.runtime import EngineFeed

COLUMNS = ["session_id", "items", "last_ts"]
PRODUCTS = ["p1", "p2", "p3", "p4", "p5", "p6", "p7"]


def _rows(history) -> list[tuple[str, list[str], float]]:
    return [(s, list(items), epoch_seconds(ts)) for s, items, ts in history]


def _answers(index: LiveIndex) -> dict[tuple[str, ...], list[tuple[str, float]]]:
    sessions = [(a,) for a in PRODUCTS] + [(a, b) for a in PRODUCTS for b in PRODUCTS if a != b]
    return {s: [(i, round(x, 9)) for i, x in index.recommend(list(s))] for s in sessions}


def _rebuilt(rows) -> LiveIndex:
    index = LiveIndex()
    index.build(rows)
    return index


def test_apply_batch_inserts_updates_deletes_like_a_rebuild() -> None:
    rows = _rows(HISTORY)
    index = _rebuilt(rows)
    later = (NOW + timedelta(minutes=1)).timestamp()
    new = ("h6", ["p4", "p7"], later)  # insert: a new session with a new item
    grown = ("h2", ["p1", "p2", "p7"], later + 1)  # update: delete old row, insert new
    batch = ChangeBatch("vmis_history", 1, COLUMNS)
    batch.inserts = [new, grown]
    batch.deletes = [rows[1], rows[2]]  # old h2, and h3 leaves the horizon
    metrics = Metrics()
    assert apply_batch(index, batch, metrics) == 3
    final = [r for r in rows if r[0] not in ("h2", "h3")] + [new, grown]
    assert _answers(index) == _answers(_rebuilt(final))
    assert [i for i, _ in index.recommend(["p7"])][:2] in (["p4", "p1"], ["p1", "p4"])
    assert "p5" not in {i for i, _ in index.recommend(["p4"])}  # h3 (p4, p5) is gone
    assert metrics.index_updates.labels("remove")._value.get() == 1


def test_sessions_that_left_are_shed_and_answers_stay() -> None:
    """Sessions come and go through the feed for ever: the index keeps the ids of the ones
    that left only until they are as many as the live ones (and shed_min); rebuilt without
    them it answers as an index built from the live rows."""
    import random

    rng = random.Random(4)
    index = _rebuilt([("s0", ["p1", "p2"], 1.0)])
    index.shed_min = 300
    live: dict[str, tuple[str, list[str], float]] = {"s0": ("s0", ["p1", "p2"], 1.0)}
    most = 0
    for n in range(1, 3000):
        row = (f"s{n}", rng.sample(PRODUCTS, rng.randint(1, 4)), float(n))
        batch = ChangeBatch("vmis_history", n, COLUMNS)
        batch.inserts = [row]
        live[row[0]] = row
        if len(live) > 200:  # the oldest leaves the view
            batch.deletes = [live.pop(next(iter(live)))]
        apply_batch(index, batch)
        most = max(most, len(index._index.sessions))
    assert index.sheds >= 5
    assert most <= 200 + 300 + 1  # live + shed_min at most, not the 3,000 ever seen
    assert index.n_sessions == len(live)
    assert _answers(index) == _answers(_rebuilt(list(live.values())))


def test_history_rows_accepts_engine_and_risingwave_shapes() -> None:
    parser = HistoryRows(["SESSION_ID", "last_event_ts", "item_ids"])
    ts = datetime(2026, 1, 1, tzinfo=UTC)
    assert parser.parse(("s", ts, [1, 2])) == ("s", ["1", "2"], ts.timestamp())
    assert epoch_seconds(1_700_000_000_000) == 1_700_000_000.0  # milliseconds
    assert epoch_seconds("2026-01-01T00:00:00Z") == ts.timestamp()
    with pytest.raises(ValueError, match="none of the columns"):
        HistoryRows(["session_id", "what"])


class _FakeEngine:
    """Stands in for the embedded engine's in-process subscription API."""

    def __init__(self) -> None:
        self.batches: queue.Queue = queue.Queue()

    def subscribe(self, view: str):
        assert view == "vmis_history"
        engine = self

        class _Sub:
            def poll(self, timeout: float):
                try:
                    return engine.batches.get(timeout=timeout)
                except queue.Empty:
                    return None

        return _Sub()


def test_sync_thread_follows_an_engine_feed() -> None:
    engine = _FakeEngine()
    index = LiveIndex()
    sync = IndexSync(index, lambda: EngineFeed(engine), lambda: _rows(HISTORY)).start()
    try:
        wait_until(lambda: sync.state == "following")
        assert index.n_sessions == len(HISTORY)
        batch = ChangeBatch("vmis_history", 2, COLUMNS)
        batch.inserts = [("h9", ["p5", "p7"], NOW.timestamp())]
        engine.batches.put(batch)
        wait_until(lambda: "p7" in {i for i, _ in index.recommend(["p5"])})
        gone = ChangeBatch("vmis_history", 3, COLUMNS)
        gone.deletes = [("h9", ["p5", "p7"], NOW.timestamp())]
        engine.batches.put(gone)
        wait_until(lambda: "p7" not in {i for i, _ in index.recommend(["p5"])})
        wait_until(lambda: sync.applied == 2)  # counted just after the index changed
        assert sync.errors == 0
    finally:
        sync.stop()


def test_a_first_start_waits_for_the_view_without_a_warning(caplog) -> None:
    """Before the engine's first refresh vmis_history does not exist: an INFO line, no warning."""
    engine = _FakeEngine()
    index = LiveIndex()
    reads: list[int] = []

    def snapshot() -> list[tuple[str, list[str], float]]:
        reads.append(1)
        if len(reads) < 3:
            raise psycopg.errors.UndefinedTable('relation "vmis_history" does not exist')
        return _rows(HISTORY)

    caplog.set_level(logging.INFO, logger="recommender.serving.index_sync")
    sync = IndexSync(index, lambda: EngineFeed(engine), snapshot, backoff_s=(0.01, 0.05))
    sync.start()
    try:
        wait_until(lambda: sync.state == "following")
    finally:
        sync.stop()
    records = [r for r in caplog.records if r.name == "recommender.serving.index_sync"]
    assert not [r.getMessage() for r in records if r.levelno >= logging.WARNING]
    assert any("waiting for the engine's first refresh" in r.getMessage() for r in records)
    assert index.n_sessions == len(HISTORY)


@pytest.mark.e2e
def test_sync_follows_postgres_view(dsn: str) -> None:
    """Changes written to vmis_history in PostgreSQL reach the index within seconds."""
    fill_views(dsn)
    index = LiveIndex()
    metrics = Metrics()
    sync = IndexSync(
        index, lambda: SnapshotDiffFeed(dsn, interval=0.2), lambda: load_snapshot(dsn), metrics
    ).start()
    try:
        wait_until(lambda: index.ready)
        later = datetime.now(UTC)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO vmis_history VALUES ('h7', ARRAY['p3','p7'], %s)", (later,)
            )
            conn.execute("DELETE FROM vmis_history WHERE session_id = 'h3'")
            conn.execute(
                "UPDATE vmis_history SET items = ARRAY['p1','p7'], last_ts = %s "
                "WHERE session_id = 'h4'",
                (later,),
            )
        lag = wait_until(lambda: index.updates >= 3)
        assert lag < 5.0
        assert _answers(index) == _answers(_rebuilt(load_snapshot(dsn)))
    finally:
        sync.stop()


@pytest.mark.e2e
def test_start_api_hook_serves_and_follows_engine(dsn: str, tmp_path) -> None:
    """What `flashrec up` calls: the API in a thread, index from PostgreSQL + engine feed."""
    import httpx
    from conftest import free_port

    from recommender.serving.runtime import start_api

    fill_views(dsn)
    engine = _FakeEngine()
    port = free_port()
    api = start_api(engine, dsn, port=port, data_dir=tmp_path / "data")
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _ready(url))
        batch = ChangeBatch("vmis_history", 2, COLUMNS)
        batch.inserts = [("h9", ["p5", "p8"], NOW.timestamp())]
        engine.batches.put(batch)
        params = {"session_id": "x", "item_id": "p8"}
        wait_until(lambda: httpx.get(f"{url}/v1/recommend", params=params).json()[:1] == ["p5"])
        status = httpx.get(f"{url}/v1/status").json()
        assert status["index"]["updates_applied"] == 1
        assert status["index"]["sync_state"] == "following"
    finally:
        api.stop()


def _ready(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_risingwave_feed_turns_cursor_rows_into_batches(monkeypatch) -> None:
    """FETCH rows (view columns + op + rw_timestamp) as RisingWave returns them."""
    import psycopg

    from recommender.serving.index_sync import RisingWaveFeed

    class _Col:
        def __init__(self, name: str) -> None:
            self.name = name

    class _Cursor:
        def __init__(self, rows) -> None:
            self.rows = rows
            self.description = [_Col(n) for n in ("session_id", "items", "last_ts", "op",
                                                  "rw_timestamp")]  # fmt: skip

        def fetchall(self):
            return self.rows

    ts = NOW
    fetches = [
        [
            ("h1", ["p1"], ts, "UpdateDelete", 1001),
            ("h1", ["p1", "p9"], ts, "UpdateInsert", 1001),
            ("h2", ["p2"], ts, "Delete", 1002),
            ("h8", ["p8"], ts, 1, 1003),  # early versions: op as a number
        ],
        [],
    ]
    statements: list[str] = []

    class _Conn:
        def execute(self, sql: str, *args):
            statements.append(sql)
            return _Cursor(fetches.pop(0) if sql.startswith("FETCH") else [])

        def close(self) -> None:
            pass

    monkeypatch.setattr(psycopg, "connect", lambda *a, **k: _Conn())
    feed = RisingWaveFeed("postgresql://rw", "vmis_history_sub")
    assert (
        statements[0].startswith("DECLARE")
        and "SUBSCRIPTION CURSOR FOR vmis_history_sub" in (statements[0])
    )
    batch = feed.poll(1.0)
    assert "WITH (timeout = '1s')" in statements[1]
    assert batch.columns == ["session_id", "items", "last_ts"]
    assert [r[0] for r in batch.deletes] == ["h1", "h2"]
    assert [r[0] for r in batch.inserts] == ["h1", "h8"]
    assert feed.last_rw_timestamp == 1003
    assert feed.poll(1.0) is None
    index = _rebuilt(_rows(HISTORY))
    apply_batch(index, batch)
    assert "p9" in {i for i, _ in index.recommend(["p1"])}


def test_short_history_does_not_shut_out_longer_sessions() -> None:
    """5 sessions of 2-3 items: Serenade's percentile cut would be 3; the live cap is 100."""
    index = _rebuilt(_rows(HISTORY))
    index.upsert("long", ["p1", "p2", "p3", "p4", "p7"], NOW.timestamp())
    assert "p7" in {i for i, _ in index.recommend(["p4"])}
    empty = LiveIndex()
    empty.build([])
    empty.upsert("a", ["x", "y"], 1.0)
    assert [i for i, _ in empty.recommend(["x"])] == ["y"]
