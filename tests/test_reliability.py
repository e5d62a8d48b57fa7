"""What no single bad input, restart or slow database may do to the embedded engine: lose a
valid event, stop ingestion, or stall without saying so.

- an event with NUL in a text field is refused with a reason (PostgreSQL text cannot hold
  it), and one stored by an older version is removed at start instead of failing every
  publish;
- a dead-letter record is bounded whatever the message; a record the broker refuses goes to
  a local file and ingestion goes on;
- duplicates inside one batch count as duplicates;
- a lost PostgreSQL connection is reconnected and the refresh published once;
- a publish that waits is reported by health() as a stall, and goes on afterwards;
- a new incarnation of the topic (an in-memory broker restarted) is read from its start;
- a broker left running by a killed run is taken over with its events.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import free_port
from engine_support import Msg, click, pg_meta, pg_rows, raw

from recommender.engine import Engine, EngineConfig
from recommender.engine.dead_letters import MAX_PAYLOAD_BYTES, DeadLetterSink, dead_letter
from recommender.postgres.local import LocalPostgres

T0 = datetime(2026, 3, 1, 12, 0)


def engine_for(dsn: str, state: Path | None, letters: list[bytes], **kw: Any) -> Engine:
    engine = Engine(EngineConfig.of(pg_dsn=dsn, state_path=state, clock="event", **kw))
    engine._send_dead_letters = letters.extend  # no broker here: collect the dead letters
    return engine


def clicks(n: int, start: int = 0, prefix: str = "e") -> list[dict[str, Any]]:
    out = [click(start + i, f"s{(start + i) % 7}", (start + i) % 11,
                 T0 + timedelta(seconds=start + i)) for i in range(n)]  # fmt: skip
    for x in out:
        x["event_id"] = f"{prefix}{x['event_id']}"
    return out


def test_nul_in_any_text_field_goes_to_the_dead_letters(dsn: str, tmp_path: Path) -> None:
    items: list[Any] = clicks(20)
    for at, name in enumerate(("event_id", "session_id", "product_id", "product_name",
                               "category", "user_id")):  # fmt: skip
        bad = dict(items[at], event_id=f"nul{at}")
        bad[name] = bad[name] + "\x00x"
        items.append(bad)
    letters: list[bytes] = []
    engine = engine_for(dsn, tmp_path / "state.duckdb", letters)
    engine.ingest([Msg(raw(x), i) for i, x in enumerate(items)])
    engine.refresh()  # publishing must not fail
    reasons = [orjson.loads(x)["reason"] for x in letters]
    assert len(reasons) == 6 and all("NUL" in r for r in reasons), reasons
    assert int(pg_meta(dsn)["accepted"]) == 20
    assert len(pg_rows(dsn, "clickstream")) == 20
    engine.stop()


def test_a_nul_event_stored_by_an_older_version_is_removed_at_start(
        dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from recommender.engine.store import StateStore

    state = tmp_path / "state.duckdb"
    store = StateStore(state)
    bad = dict(clicks(1, 100)[0], product_id="p\x00")
    store.apply([*clicks(10), bad], {("clickstream", 0): 11})  # as an older version stored it
    store.close()
    sent: list[bytes] = []
    monkeypatch.setattr(DeadLetterSink, "send", lambda self, letters: sent.extend(letters))
    engine = engine_for(dsn, state, [])
    engine.refresh()
    assert len(pg_rows(dsn, "clickstream")) == 10
    [letter] = sent
    assert "NUL" in orjson.loads(letter)["reason"]
    assert orjson.loads(orjson.loads(letter)["payload"])["event_id"] == bad["event_id"]
    engine.stop()


def test_dead_letter_records_are_bounded() -> None:
    value = b"\x01" * 200_000
    letter = dead_letter("not valid JSON", value, "clickstream", 2, 12345)
    assert len(letter) < 8 * MAX_PAYLOAD_BYTES
    doc = orjson.loads(letter)
    assert doc["payload_truncated"] is True and doc["payload_bytes"] == 200_000
    assert (doc["topic"], doc["partition"], doc["offset"]) == ("clickstream", 2, 12345)
    assert doc["payload"] == "\x01" * MAX_PAYLOAD_BYTES
    small = orjson.loads(dead_letter("r", b'{"a": 1}', "t", 0, 1))
    assert small["payload"] == '{"a": 1}' and "payload_truncated" not in small
    binary = orjson.loads(dead_letter("r", b"\xff" * 10_000, "t", 0, 1))
    assert binary["payload"] == "ff" * MAX_PAYLOAD_BYTES and "hex" in binary["reason"]


def test_a_dead_letter_the_broker_refuses_is_kept_locally(broker, tmp_path: Path) -> None:
    from conftest import unique_topic

    from recommender.local_broker import create_topics

    topic = unique_topic("dlq")
    create_topics(broker.bootstrap, [topic], partitions=1)
    sink = DeadLetterSink(broker.bootstrap, topic, tmp_path)
    huge = orjson.dumps({"reason": "x", "payload": "y" * 3_000_000})  # over message.max.bytes
    sink.send([b'{"reason": "small"}', huge])  # does not raise
    sink.close()
    kept = [orjson.loads(line) for line in (tmp_path / "dead-letters.jsonl").read_bytes()
            .splitlines()]  # fmt: skip
    assert len(kept) == 1 and kept[0]["letter"]["reason"] == "x" and kept[0]["error"]
    assert sink.kept_locally == 1


def test_duplicates_inside_one_batch_count_as_duplicates(dsn: str, tmp_path: Path) -> None:
    items = clicks(5)
    letters: list[bytes] = []
    engine = engine_for(dsn, tmp_path / "state.duckdb", letters)
    engine.ingest([Msg(raw(x), i) for i, x in enumerate([*items, items[0], items[1]])])
    engine.ingest([Msg(raw(items[2]), 7)])  # and one from an earlier batch
    counters = engine.store.counters()
    assert counters == {"accepted": 5, "rejected": 3, "duplicates": 3}
    engine.stop()


def test_a_lost_postgres_connection_is_reconnected(dsn: str, tmp_path: Path) -> None:
    import psycopg

    letters: list[bytes] = []
    engine = engine_for(dsn, tmp_path / "state.duckdb", letters)
    items = clicks(60)
    engine.ingest([Msg(raw(x), i) for i, x in enumerate(items[:30])])
    engine.refresh()
    backend = engine.publisher.conn.info.backend_pid
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (backend,))
    engine.ingest([Msg(raw(x), 30 + i) for i, x in enumerate(items[30:])])
    engine.refresh()  # reconnects, publishes once
    assert engine.publisher.conn.info.backend_pid != backend
    assert sorted(r[0] for r in pg_rows(dsn, "clickstream")) == sorted(
        x["event_id"] for x in items)
    assert engine.health()["state"] == "running"
    engine.stop()


def test_a_publish_that_waits_is_reported_as_a_stall(dsn: str, tmp_path: Path) -> None:
    import psycopg

    engine = engine_for(dsn, tmp_path / "state.duckdb", [], stall_warning=0.3)
    items = clicks(40)
    engine.ingest([Msg(raw(x), i) for i, x in enumerate(items[:20])])
    engine.refresh()
    engine.ingest([Msg(raw(x), 20 + i) for i, x in enumerate(items[20:])])
    with psycopg.connect(dsn) as blocker:
        blocker.execute("LOCK TABLE clickstream IN ACCESS EXCLUSIVE MODE")
        publishing = threading.Thread(target=engine.refresh)
        publishing.start()
        deadline = time.monotonic() + 10
        while engine.health()["state"] != "stalled":
            assert time.monotonic() < deadline, engine.health()
            time.sleep(0.05)
        health = engine.health()
        assert health["publish_in_flight_s"] >= 0.3 and health["unpublished_events"] == 20
        blocker.rollback()  # the lock goes: the publish goes through
    publishing.join(timeout=30)
    assert engine.health()["state"] == "running"
    assert engine.health()["unpublished_events"] == 0
    assert len(pg_rows(dsn, "clickstream")) == 40
    engine.stop()


# --- the broker: new incarnations, and one left running --------------------------------------


def _produce(bootstrap: str, topic: str, items: list[dict[str, Any]]) -> None:
    from recommender.kafka_io import make_producer

    producer = make_producer(bootstrap)
    for x in items:
        producer.produce(topic, raw(x), key=x["session_id"])
    assert producer.flush(30) == 0


def _wait_stored(engine: Engine, n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while engine.store.counters()["accepted"] < n:
        assert engine.error is None, engine.error
        assert time.monotonic() < deadline, engine.store.counters()
        time.sleep(0.1)


def test_a_new_incarnation_of_the_topic_is_read_from_its_start(
        dsn: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    from recommender.local_broker import LocalBroker

    port = free_port()
    config = {"bootstrap": f"127.0.0.1:{port}", "refresh_interval": 0.2,
              "background_interval": 0}  # fmt: skip
    first, second = clicks(300, prefix="a"), clicks(200, 1000, prefix="b")
    with LocalBroker(port=port, partitions=1):
        engine = engine_for(dsn, tmp_path / "state.duckdb", [], **config).start()
        _produce(f"127.0.0.1:{port}", "clickstream", first)
        _wait_stored(engine, 300)
        engine.stop()
    with LocalBroker(port=port, partitions=1):  # in memory: it starts empty
        _produce(f"127.0.0.1:{port}", "clickstream", second)
        engine = engine_for(dsn, tmp_path / "state.duckdb", [], **config).start()
        _wait_stored(engine, 500, timeout=30)
        engine.stop()
    assert "new incarnation" in caplog.text


def test_a_broker_left_running_is_taken_over_with_its_events(tmp_path: Path) -> None:
    from recommender.kafka_io import make_consumer
    from recommender.local_broker import LocalBroker

    port, pid_file = free_port(), tmp_path / "broker.pid"
    first = LocalBroker(port=port, partitions=1, pid_file=pid_file).start()
    try:
        _produce(first.bootstrap, "clickstream", clicks(50))
        first.process = None  # as if the process that started it had been killed
        second = LocalBroker(port=port, partitions=1, pid_file=pid_file).start()
        assert second.adopted is not None
        consumer = make_consumer("g-adopt", ["clickstream"], second.bootstrap)
        got: list[Any] = []
        deadline = time.monotonic() + 20
        while len(got) < 50 and time.monotonic() < deadline:
            got += [m for m in consumer.consume(100, timeout=0.5) if m.error() is None]
        consumer.close()
        assert len(got) == 50
        pid = second.adopted
        second.stop()
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
        assert not pid_file.exists()
    finally:
        first.stop()


def test_postgres_crashing_under_a_running_engine_loses_nothing(tmp_path: Path) -> None:
    """PostgreSQL crashes (immediate stop) and comes back while the engine lives on: its
    next refresh reconnects, and every view equals the batch run of all events."""
    from engine_support import valid_events

    from producers.flash_sale import FlashSaleConfig, generate
    from recommender.engine import evaluate

    items = list(generate(FlashSaleConfig(seed=5, events=3000, rate=20.0, bot_share=0.05)))
    msgs = [Msg(raw(x), i) for i, x in enumerate(items)]
    with LocalPostgres(tmp_path / "pg", free_port()) as pg:
        engine = engine_for(pg.dsn, tmp_path / "state.duckdb", [])
        engine.ingest(msgs[:2000])
        engine.refresh()
        pg._run("pg_ctl", "-w", "-D", str(pg.data_dir), "-m", "immediate", "stop")  # a crash
        pg.start()
        engine.ingest(msgs[2000:])
        engine.refresh()
        expected = evaluate(valid_events(items), engine.clock())
        for view, rows in expected.items():
            assert pg_rows(pg.dsn, view) == rows, view
        engine.stop()
