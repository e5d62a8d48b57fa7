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
