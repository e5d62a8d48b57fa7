"""Progress of long work: a bar on a terminal, a log line every few seconds elsewhere (CI,
nohup, docker logs), each with what is being done, how far it is and the time left."""

from __future__ import annotations

import logging
import sys
import time
from types import TracebackType
from typing import Any, TextIO

log = logging.getLogger("flashrec.progress")


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds} s"


class Progress:
    """`with Progress("intent train: random_forest", total=48, unit="fits") as p: p.advance()`.

    On a terminal (`stream` is a tty) a rich bar, 120 columns at least; otherwise a log line
    at start, every `every` seconds while it runs, and at the end."""

    def __init__(self, what: str, total: int | None = None, unit: str = "steps",
                 every: float = 10.0, stream: TextIO | None = None) -> None:  # fmt: skip
        self.what, self.total, self.unit, self.every = what, total, unit, every
        self.done = 0
        self.started = time.monotonic()
        self._next_line = self.started + every
        self._bar: Any = None
        self._task: Any = None
        stream = stream or sys.stderr
        if stream.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as Bar

            console = Console(file=stream, width=max(120, Console(file=stream).width))
            self._bar = Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                            transient=True)  # fmt: skip
            self._bar.start()
            self._task = self._bar.add_task(what, total=total)
        else:
            log.info("%s: started%s", what, f" ({total} {unit})" if total else "")

    def line(self) -> str:
        """What is done so far, as one line."""
        took = time.monotonic() - self.started
        text = f"{self.what}: {self.done}"
        if self.total:
            text += f"/{self.total} {self.unit} ({100 * self.done / self.total:.0f}%)"
            if 0 < self.done < self.total:
                left = took / self.done * (self.total - self.done)
                text += f", {_clock(took)} so far, about {_clock(left)} left"
                return text
        else:
            text += f" {self.unit}"
        return f"{text}, {_clock(took)}"

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, description=self.what)
            return
        now = time.monotonic()
        if now >= self._next_line:
            self._next_line = now + self.every
            log.info("%s", self.line())

    def set(self, done: int) -> None:
        """Set how much is done (absolute)."""
        self.advance(done - self.done)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        else:
            log.info("%s (done)", self.line())

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self.close()
