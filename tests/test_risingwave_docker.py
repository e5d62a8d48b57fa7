"""The production path on real RisingWave and Redpanda (testcontainers).

Runs wherever a Docker engine answers; elsewhere every test here is skipped with the reason.
The pipeline is deployed with `flashrec deploy`, a seeded flash sale is produced (rebased to
end now, shorter than every window, so wall-clock NOW() on RisingWave and the batch run on our
side see the same events), and each view must equal the batch run of its own SQL.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import yaml
from conftest import free_port

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
VIEWS = ("co_view_pairs", "trending_by_category", "session_features", "vmis_history")


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
        from recommender.broker import create_topics, wait_for_broker

        bootstrap = f"127.0.0.1:{kafka_port}"
        wait_for_broker(bootstrap, timeout=120)
        create_topics(bootstrap, ["clickstream", "clickstream_dlq"], partitions=3)
        host = risingwave.get_container_host_ip()
        dsn = f"postgresql://root@{host}:{risingwave.get_exposed_port(4566)}/dev"
        _wait_for_sql(dsn, 180)
        yield {"bootstrap": bootstrap, "dsn": dsn}
    network.remove()


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
            "--bootstrap-servers", "redpanda:9092"]  # fmt: skip
    if udf_link:
        args += ["--udf-link", udf_link]
    out = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


def _norm(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, list | tuple):
        return [_norm(v) for v in value]
    return value


def _rows(rows: list[tuple]) -> list[tuple]:
    return sorted((tuple(_norm(v) for v in r) for r in rows), key=repr)


def test_views_on_risingwave_equal_the_batch_run_of_their_sql(stack) -> None:
    import psycopg

    from producers.flash_sale import FlashSaleConfig, generate
    from producers.sink import KafkaSink
    from recommender.engine.refresh import evaluate

    _deploy(stack["dsn"])
    start = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=8)
    cfg = FlashSaleConfig(seed=11, start=start, events=3000, rate=6.0, sale_offset_s=240,
                          bot_share=0.05)  # fmt: skip
    events = [e for e in generate(cfg) if isinstance(e, dict)]
    sink = KafkaSink(stack["bootstrap"], "clickstream")
    for event in events:
        sink.send(event)
    sink.close()
    expected = evaluate(events, datetime.now(UTC).replace(tzinfo=None))
    deadline = time.monotonic() + 180
    with psycopg.connect(stack["dsn"], autocommit=True) as conn:
        while True:
            got = {v: _rows(conn.execute(f"SELECT * FROM {v}").fetchall()) for v in VIEWS}
            if all(got[v] == _rows(expected[v]) for v in VIEWS) or time.monotonic() > deadline:
                break
            time.sleep(3)
    for view in VIEWS:
        assert got[view] == _rows(expected[view]), view


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
