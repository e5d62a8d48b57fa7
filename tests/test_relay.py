"""`flashrec relay` on the embedded broker: a mixed stream of valid, malformed, duplicate and
out-of-order events. Every valid message reaches the valid topic (at least once; exactly once
here, where nothing crashes), keyed by session_id; every malformed one is a dead letter with
its reason, the same record the embedded engine writes; and the views RisingWave computes from
the valid topic (sql/010's table, run by DuckDB) equal the engine's. Offsets are committed
only after delivery: a restarted relay resumes after them, and a failed delivery commits
nothing."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import read_topic, unique_topic
from engine_support import Msg, valid_events
from rw_support import T0, mixed_stream, table_views, values_of

from recommender.engine import evaluate
from recommender.engine.dead_letters import DeadLetterSink, dead_letter
from recommender.events import Rejected, validate_batch, validate_event
from recommender.kafka_io import make_producer
from recommender.local_broker import create_topics
from recommender.validate_relay import Relay, RelayConfig, RelayError, run


def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = make_producer(bootstrap)
    for value in values:
        key = value[:40] if value else None  # malformed ones too get some key
        producer.produce(topic, value, key=key)
    assert producer.flush(30) == 0


def _read_all(bootstrap: str, topic: str, n: int) -> list[Any]:
    return read_topic(bootstrap, topic, n, settle_s=1.0)  # a second more: nothing beyond n


def _relay_until(cfg: RelayConfig, n: int, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    return run(cfg, lambda stats: stats.consumed >= n or time.monotonic() > deadline)


@pytest.fixture
def topics(broker) -> dict[str, str]:
    names = {"raw": unique_topic("raw"), "valid": unique_topic("valid"),
             "dlq": unique_topic("dlq")}  # fmt: skip
    create_topics(broker.bootstrap, names.values(), partitions=3)
    return names


def test_relay_forwards_valid_events_and_dead_letters_the_rest(
    broker, topics: dict[str, str], tmp_path: Path
) -> None:
    items = mixed_stream()
    values = values_of(items)
    _produce(broker.bootstrap, topics["raw"], values)
    cfg = RelayConfig(bootstrap=broker.bootstrap, topic=topics["raw"],
                      valid_topic=topics["valid"], dlq_topic=topics["dlq"],
                      group_id=f"relay-{topics['raw']}", folder=tmp_path)  # fmt: skip
    stats = _relay_until(cfg, len(values))
    malformed = [v for v in values if isinstance(validate_event(v), Rejected)]
    assert stats.consumed == len(values) and stats.rejected == len(malformed) == 4
    assert stats.relayed == len(values) - 4  # duplicates pass: the table drops them

    relayed = _read_all(broker.bootstrap, topics["valid"], stats.relayed)
    assert sorted(m.value() for m in relayed) == sorted(v for v in values if v not in malformed)
    for m in relayed:
        assert m.key() == validate_event(m.value())["session_id"].encode()

    letters = _read_all(broker.bootstrap, topics["dlq"], len(malformed))
    raw = {(m.partition(), m.offset()): m.value() or b"" for m in
           _read_all(broker.bootstrap, topics["raw"], len(values))}  # fmt: skip
    # the engine's record of each malformed message at its place in the raw topic (the
    # engine validates with validate_batch too)
    expected = sorted(dead_letter(validate_batch([v])[0].reason, v, topics["raw"], p, o)
                      for (p, o), v in raw.items() if v in malformed)  # fmt: skip
    assert sorted(m.value() for m in letters) == expected

    # RisingWave's views from the valid topic (per-partition order kept) equal the engine's
    now = T0 + timedelta(hours=5, minutes=10)
    in_order = [m.value() for m in sorted(relayed, key=lambda m: (m.partition(), m.offset()))]
    assert table_views(in_order, now, validate=False) == evaluate(valid_events(items), now)

    again = _relay_until(cfg, 1, timeout=6.0)  # restarted: resumes after committed offsets
    assert again.consumed == 0


class FailingProducer:
    """Takes every record and confirms none (a broker that stopped answering)."""

    def __init__(self) -> None:
        self.sent = 0

    def produce(self, topic: str, value: bytes, key: bytes, on_delivery: Any) -> None:
        self.sent += 1
        on_delivery("KafkaError: timed out", None)

    def flush(self, timeout: float) -> int:
        return 0

    def poll(self, timeout: float) -> int:
        return 0


def test_undelivered_events_commit_nothing(tmp_path: Path) -> None:
    values = values_of(mixed_stream())
    letters: list[bytes] = []
    sink = DeadLetterSink(None, "dlq", tmp_path)
    sink.send = letters.extend  # type: ignore[method-assign]
    relay = Relay(FailingProducer(), sink, "valid")
    good = [Msg(v, i) for i, v in enumerate(values)]
    assert relay.relay(good[-4:]) == {("clickstream", 0): len(values)}  # only dead letters
    assert len(letters) == 4 and relay.stats.rejected == 4
    with pytest.raises(RelayError, match="not delivered to valid .*offsets not committed"):
        relay.relay(good[:3])
    assert relay.stats.relayed == 0
    assert "4 rejected" in relay.stats.line()
