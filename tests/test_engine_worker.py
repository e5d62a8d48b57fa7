"""The background tier in its own process (`process_tier`, as `flashrec up --background-process`
runs it):
a started engine with a real broker and PostgreSQL; the child's views equal the batch SQL,
it sends no dead letters of its own, it runs niced, it stops with the engine, and its death
stops the engine's loop with an error that says so."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import orjson
import pytest
from conftest import unique_topic
from engine_support import new_db, pg_meta, pg_rows, raw, valid_events

from producers.flash_sale import FlashSaleConfig, generate
from recommender.engine import Engine, EngineConfig, evaluate
from recommender.engine.store import parse_naive
from recommender.engine.worker import BackgroundProcess, process_tier

pytestmark = pytest.mark.e2e


def start_engine(broker, dsn: str, state: Path, items: list) -> tuple[Engine, str]:
    from recommender.kafka_io import make_producer
    from recommender.local_broker import create_topics

    topic, dlq = unique_topic("wclick"), unique_topic("wdlq")
    create_topics(broker.bootstrap, [topic, dlq], partitions=3)
    producer = make_producer(broker.bootstrap)
    for item in items:
        producer.produce(topic, raw(item))
    assert producer.flush(30) == 0
    engine = Engine(EngineConfig.of(
        pg_dsn=dsn, state_path=state, bootstrap=broker.bootstrap, topic=topic, dlq_topic=dlq,
        group_id=f"g-{topic}", clock="event", refresh_interval=0.2, background_interval=1.0,
        background_nice=5,
    ), tier=process_tier)  # fmt: skip
    return engine.start(), dlq


def wait_for(check, what: str, engine: Engine, timeout: float = 90) -> None:
    import psycopg

    def done() -> bool:
        try:
            return check()
        except psycopg.errors.UndefinedTable:  # not published yet
            return False

    deadline = time.monotonic() + timeout
    while not done():
        assert engine.error is None, engine.error
        assert time.monotonic() < deadline, what
        time.sleep(0.3)


def count_topic(bootstrap: str, topic: str, seconds: float) -> int:
    from recommender.kafka_io import make_consumer

    consumer = make_consumer(f"g-{topic}", [topic], bootstrap)
    n = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for msg in consumer.consume(1000, timeout=0.5):
            if msg.error() is None:
                assert orjson.loads(msg.value())["reason"]
                n += 1
    consumer.close()
    return n


def test_worker_views_equal_batch_sql(broker, postgres, tmp_path: Path) -> None:
    items = list(generate(FlashSaleConfig(seed=5, events=4000, rate=20.0, bot_share=0.05,
                                          malformed_share=0.03)))  # fmt: skip
    items += [items[3]]  # a repeated event_id
    dsn = new_db(postgres.dsn)
    engine, dlq = start_engine(broker, dsn, tmp_path / "state.duckdb", items)
    try:
        worker = engine.tier
        assert isinstance(worker, BackgroundProcess) and worker.running
        with pytest.raises(KeyError, match="background process"):
            engine.subscribe("customer_features")
        valid = valid_events(items)
        wait_for(lambda: int(pg_meta(dsn).get("accepted", 0)) == len(valid), "counted", engine)
        expected = evaluate(valid, parse_naive(max(e["ts"] for e in valid)))
        for view in ("customer_features", "customer_hours", "session_features"):
            wait_for(lambda v=view: pg_rows(dsn, v) == expected[v], view, engine)
        pid = worker.process.pid  # it has refreshed by now: niced at its start
        assert os.getpriority(os.PRIO_PROCESS, pid) == os.getpriority(os.PRIO_PROCESS, 0) + 5
        # the main engine's dead letters only: the child reads the same messages
        assert count_topic(broker.bootstrap, dlq, 8) == len(items) - len(valid)
        assert (tmp_path / "state-background.duckdb").exists()
    finally:
        engine.stop()
    assert worker.process.returncode == 0  # stopped cleanly by SIGTERM


def test_worker_death_stops_the_engine(broker, postgres, tmp_path: Path) -> None:
    items = list(generate(FlashSaleConfig(seed=6, events=500, rate=20.0)))
    engine, _ = start_engine(broker, new_db(postgres.dsn), tmp_path / "state.duckdb", items)
    try:
        deadline = time.monotonic() + 60
        while engine.store.counters()["accepted"] < len(items):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        engine.tier.process.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 30
        while engine.error is None:
            assert time.monotonic() < deadline, "the engine did not notice"
            time.sleep(0.2)
        assert "background process" in str(engine.error)
        assert "-9" in str(engine.error)
    finally:
        engine.stop()


def test_the_child_gets_the_whole_configuration(tmp_path: Path) -> None:
    """What the child process is handed is the parent's configuration, every field (but the
    in-process overrides), as the child's role sees it."""
    from datetime import timedelta

    from recommender.engine.worker import worker_config

    config = EngineConfig.of(pg_dsn="postgresql://x@127.0.0.1:1/db",
                             state_path=tmp_path / "s.db", bootstrap="127.0.0.1:9",
                             clock="event", background_interval=2.5,
                             raw_retention=timedelta(minutes=7), duckdb_threads=None,
                             view_intervals={"co_view_pairs": 3.0})  # fmt: skip
    child = worker_config(config)
    assert EngineConfig.from_json(child.to_json()) == child
    assert child.role == "background" and child.refresh.interval == 2.5
    assert child.state_path == tmp_path / "s-background.db"
