"""Processes flashrec starts and may find again after it was killed: whether one runs, what
it was started with, and how it is stopped (a child of ours, or one taken over by pid)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from pathlib import Path

log = logging.getLogger(__name__)


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def cmdline(pid: int) -> list[str]:
    """The command line process `pid` runs (empty when unreadable)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw]


def environ(pid: int) -> dict[str, str]:
    """The environment process `pid` started with (empty when unreadable)."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.decode(errors="replace").partition("=") for item in raw.split(b"\0") if item)
    return {k: v for k, _, v in pairs}


def end(pid: int, timeout: float) -> None:
    """SIGTERM to a process that is not our child, then SIGKILL after `timeout` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not alive(pid):
            return


def running(process: subprocess.Popen[bytes] | None, adopted: int | None) -> bool:
    """Whether our child `process`, or the process `adopted` by pid, runs."""
    if adopted is not None:
        return alive(adopted)
    return process is not None and process.poll() is None


def stop(process: subprocess.Popen[bytes] | None, adopted: int | None, timeout: float) -> None:
    """Stop our child `process` and the process `adopted` by pid: SIGTERM, then SIGKILL
    after `timeout` seconds."""
    if process is not None and process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)
    if adopted is not None:
        end(adopted, timeout)


def lower_priority(pid: int | None, nice: int, what: str) -> None:
    """Raise the nice value of a thread or process by `nice` (Linux: a thread id works as a
    pid), so that the main tier gets the CPU first when both want it; best effort."""
    if pid is None or not hasattr(os, "setpriority"):
        return
    try:
        os.setpriority(os.PRIO_PROCESS, pid, os.getpriority(os.PRIO_PROCESS, pid) + nice)
        log.info("%s runs at nice +%d", what, nice)
    except OSError as exc:
        log.info("could not lower the priority of %s: %s", what, exc)
