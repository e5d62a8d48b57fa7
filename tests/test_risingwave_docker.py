"""The production path on real RisingWave and Redpanda (testcontainers).

Runs wherever a Docker engine answers; elsewhere every test here is skipped with the reason
(no Docker engine reachable). How to run it and what it proves: docs/production.md ("The
Docker suite"). The pipeline is the compose file's: producers write the raw topic
`clickstream`, `flashrec relay` (in this process) validates it into `clickstream_valid` and
`clickstream_dlq`, and `flashrec deploy` points RisingWave's clickstream table at
`clickstream_valid`. A seeded flash sale, rebased to end now and shorter than every window (so
wall-clock NOW() on RisingWave and the batch run here see the same events), is sent with
clicks out of time order, repeated event_ids and malformed messages; every view must equal
the embedded engine's batch run of the same events, the relay's dead letters must be the
malformed messages, the index follower must follow vmis_history's subscription live, and the
UDF must answer like the kernel.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest
import yaml
from conftest import free_port, read_topic

from recommender.config import PROJECT_ROOT


def _docker_problem() -> str | None:
    try:
        import docker

        docker.from_env(timeout=5).ping()
    except Exception as exc:  # no socket, no permission, no engine
        return f"no Docker engine reachable ({type(exc).__name__}: {str(exc)[:120]})"
    return None


PROBLEM = _docker_problem()
pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(
        PROBLEM is not None,
        reason=f"{PROBLEM}; RisingWave + Redpanda integration tests need Docker",
    ),
]
TOPICS = ("clickstream", "clickstream_valid", "clickstream_dlq")  # raw, relayed, dead letters


def _images() -> dict[str, str]:
    """The pinned images of docker-compose.yml (one place decides the versions)."""
    services = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())["services"]
    return {name: services[name]["image"] for name in ("redpanda", "risingwave")}


@pytest.fixture(scope="module")
def stack():
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.network import Network

    images = _images()
    kafka_port = free_port()
    network = Network().create()
    redpanda = (
        DockerContainer(images["redpanda"])
        .with_network(network)
        .with_network_aliases("redpanda")
        .with_bind_ports(kafka_port, kafka_port)
        .with_command(
            "redpanda start --mode=dev-container --smp=1 --memory=1G "
            f"--kafka-addr=internal://0.0.0.0:9092,external://0.0.0.0:{kafka_port} "
            f"--advertise-kafka-addr=internal://redpanda:9092,external://127.0.0.1:{kafka_port}"
        )
    )
    risingwave = (
        DockerContainer(images["risingwave"])
        .with_network(network)
        .with_exposed_ports(4566)
        .with_command("single_node")
        .with_kwargs(extra_hosts={"host.docker.internal": "host-gateway"})
    )
    with redpanda, risingwave:
        from recommender.local_broker import create_topics, wait_for_broker

        bootstrap = f"127.0.0.1:{kafka_port}"
        wait_for_broker(bootstrap, timeout=120)
        create_topics(bootstrap, TOPICS, partitions=3)
        host = risingwave.get_container_host_ip()
        dsn = f"postgresql://root@{host}:{risingwave.get_exposed_port(4566)}/dev"
        _wait_for_sql(dsn, 180)
        stop = threading.Event()
        relay = threading.Thread(target=_relay, args=(bootstrap, stop), daemon=True)
        relay.start()
        try:
            yield {"bootstrap": bootstrap, "dsn": dsn}
        finally:
            stop.set()
            relay.join(timeout=30)
    network.remove()


def _relay(bootstrap: str, stop: threading.Event) -> None:
    """`flashrec relay` with the compose file's topics, until the module's tests end."""
    from recommender.validate_relay import RelayConfig, run

    run(RelayConfig(bootstrap=bootstrap, topic=TOPICS[0], valid_topic=TOPICS[1],
                    dlq_topic=TOPICS[2]), lambda _stats: stop.is_set())  # fmt: skip


def _wait_for_sql(dsn: str, timeout: float) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(dsn, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
                return
        except psycopg.Error:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


def _deploy(dsn: str, udf_link: str | None = None) -> None:
    args = [sys.executable, "-m", "recommender.cli", "deploy", "--dsn", dsn,
            "--bootstrap-servers", "redpanda:9092", "--topic", TOPICS[1],
            "--wait", "180"]  # fmt: skip
    if udf_link:
        args += ["--udf-link", udf_link]
    out = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


def _norm(value: Any) -> Any:
    if isinstance(value, Decimal) or (isinstance(value, int) and not isinstance(value, bool)):
        return float(value)  # RisingWave's SUM gives NUMERIC where DuckDB gives an integer
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, list | tuple):
        return [_norm(v) for v in value]
    return value


def _rows(rows: list[tuple]) -> list[tuple]:
    return sorted((tuple(_norm(v) for v in r) for r in rows), key=repr)


def _mixed(events: list[dict[str, Any]]) -> list[dict[str, Any] | bytes]:
    """The events with clicks out of time order (every block of 50 reversed), repeated
    event_ids (30 retries, and a copy of another event under an existing id: the first copy
    counts) and malformed messages."""
    items: list[dict[str, Any] | bytes] = []
    for lo in range(0, len(events), 50):
        items += reversed(events[lo : lo + 50])
    items += events[100:130]
    items.append({**events[200], "event_id": events[10]["event_id"]})
    items += [b"{not json", b'{"event_id": 5}', orjson.dumps({**events[0], "ts": "yesterday"}),
              orjson.dumps({**events[1], "price": "free"})]  # fmt: skip
    return items


def _send_raw(bootstrap: str, items: list[dict[str, Any] | bytes]) -> None:
    """Into the raw topic as a producer would: keyed by session_id where there is one."""
    from recommender.kafka_io import make_producer

    producer = make_producer(bootstrap)
    for item in items:
        value = item if isinstance(item, bytes) else orjson.dumps(item)
        key = item["session_id"].encode() if isinstance(item, dict) else None
        producer.produce(TOPICS[0], value, key=key)
    assert producer.flush(60) == 0


def _views_until_equal(dsn: str, expected: dict[str, list], timeout: float) -> dict[str, list]:
    import psycopg

    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            got = {v: _rows(conn.execute(f"SELECT * FROM {v}").fetchall()) for v in expected}
            if all(got[v] == _rows(expected[v]) for v in expected) or time.monotonic() > deadline:
                return got
            time.sleep(3)


def test_views_on_risingwave_equal_the_engine_on_a_messy_stream(stack) -> None:
    from engine_support import valid_events

    from producers.flash_sale import FlashSaleConfig, generate
    from recommender import sqlfiles
    from recommender.engine.refresh import evaluate
    from recommender.events import validate_batch

    _deploy(stack["dsn"])
    start = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=8)
    cfg = FlashSaleConfig(seed=11, start=start, events=3000, rate=6.0, sale_offset_s=240,
                          bot_share=0.05)  # fmt: skip
    items = _mixed([e for e in generate(cfg) if isinstance(e, dict)])
    _send_raw(stack["bootstrap"], items)
    views = [v.name for v in sqlfiles.views()]  # every view, the customer views included
    assert len(views) == 6
    expected = evaluate(valid_events(items), datetime.now(UTC).replace(tzinfo=None))
    got = _views_until_equal(stack["dsn"], {v: expected[v] for v in views}, 240)
    for view in views:
        assert got[view] == _rows(expected[view]), view
    # the malformed messages are the relay's dead letters, with the engine's reasons
    values = [x for x in items if isinstance(x, bytes)]
    reasons = sorted(r.reason for r in validate_batch(values))
    letters = read_topic(stack["bootstrap"], TOPICS[2], len(values))
    assert sorted(orjson.loads(m.value())["reason"] for m in letters) == reasons


def test_index_follows_the_subscription_live(stack) -> None:
    """What `flashrec serve --source risingwave` starts: a FULL subscription cursor on
    vmis_history_sub builds the index, then FETCH applies new sessions as they come."""
    import psycopg

    from recommender.events import format_ts
    from recommender.serving.live_index import Params
    from recommender.serving.runtime import make_index

    _deploy(stack["dsn"])
    index, sync = make_index(Params(), source="risingwave", dsn=stack["dsn"])
    assert sync is not None
    sync.start()
    try:
        now = datetime.now(UTC).replace(tzinfo=None)
        new = [{"event_id": f"live-{i}", "session_id": "live-session", "user_id": "live-user",
                "product_id": f"live-p{i}", "product_name": "x", "category": "c",
                "action": "view", "ts": format_ts(now - timedelta(seconds=60 - 10 * i)),
                "device": "mobile", "price": 1.0}
               for i in range(3)]  # fmt: skip
        _send_raw(stack["bootstrap"], new)
        deadline = time.monotonic() + 120
        with psycopg.connect(stack["dsn"], autocommit=True) as conn:
            while time.monotonic() < deadline:
                count = conn.execute("SELECT count(*) FROM vmis_history").fetchone()[0]
                live = conn.execute("SELECT 1 FROM vmis_history WHERE session_id = "
                                    "'live-session'").fetchall()  # fmt: skip
                if sync.state == "following" and live and index.n_sessions == count:
                    break
                time.sleep(1)
        assert sync.state == "following", sync.status()
        assert live and index.n_sessions == count, (index.n_sessions, count)
    finally:
        sync.stop()


def test_vmis_recommend_udf_answers_like_the_kernel(stack, shared_data) -> None:
    import psycopg

    from recommender.sessions_io import read_sessions
    from udfs.vmisknn import VMISIndex

    train = shared_data / "serenade_example" / "train.txt"
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "recommender.cli", "udf-server", "--host", "0.0.0.0",
         "--port", str(port), "--history", str(train)],
    )  # fmt: skip
    try:
        time.sleep(15)  # index build + Numba compile
        _deploy(stack["dsn"], udf_link=f"http://host.docker.internal:{port}")
        sessions, items, times = read_sessions(train)
        index = VMISIndex.build(sessions, items, times)
        query = [str(items[0]), str(items[1])]
        expected = [str(i) for i, _ in index.recommend(query, how_many=5)]
        with psycopg.connect(stack["dsn"], autocommit=True) as conn:
            got = conn.execute(
                "SELECT vmis_recommend(%s::varchar[], 5)", (query,)
            ).fetchone()[0]
        assert list(got) == expected
    finally:
        server.terminate()
        server.wait(timeout=30)
