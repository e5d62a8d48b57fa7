"""Progress of long work: a log line with the stage, how far and the time left when not on a
terminal; a bar on a terminal."""

from __future__ import annotations

import io
import logging

import pytest

from recommender import progress as progress_module
from recommender.progress import Progress


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_lines_off_a_terminal(caplog: pytest.LogCaptureFixture, monkeypatch) -> None:
    now = [100.0]
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: now[0])
    with caplog.at_level(logging.INFO, logger="flashrec.progress"):
        with Progress("intent train: forest", total=40, unit="fits", every=10,
                      stream=io.StringIO()) as bar:  # fmt: skip
            for _ in range(10):
                now[0] += 1.5
                bar.advance()  # 15 s for 10 fits: one line after 10 s
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "intent train: forest: started (40 fits)"
    assert lines[1].startswith("intent train: forest: 7/40 fits (18%)")
    assert "about" in lines[1] and "left" in lines[1]
    done = "intent train: forest: 10/40 fits (25%), 15 s so far, about 45 s left (done)"
    assert lines[-1] == done


def test_a_bar_on_a_terminal(caplog: pytest.LogCaptureFixture) -> None:
    stream = FakeTty()
    with caplog.at_level(logging.INFO, logger="flashrec.progress"):
        with Progress("replay", total=3, stream=stream) as bar:
            for _ in range(3):
                bar.advance()
    assert not caplog.records  # the bar, not log lines


def test_without_a_total(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="flashrec.progress"):
        with Progress("seed", unit="rows", stream=io.StringIO()) as bar:
            bar.advance(5)
    assert caplog.records[-1].getMessage().startswith("seed: 5 rows, ")
