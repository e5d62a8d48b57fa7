"""The small click files in tests/data are what make_sample.py writes (made up, reproducible)."""

from __future__ import annotations

import runpy
from pathlib import Path

from conftest import SAMPLE_DATA, SAMPLE_FILES


def test_sample_files_are_reproducible(tmp_path: Path) -> None:
    make = runpy.run_path(str(SAMPLE_DATA / "make_sample.py"))["main"]
    make(tmp_path)
    for name in SAMPLE_FILES.values():
        assert (tmp_path / name).read_bytes() == (SAMPLE_DATA / name).read_bytes(), name
