"""Stopping a command on SIGINT or SIGTERM."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable


def stop_on_signals(then: Callable[[], None] | None = None) -> threading.Event:
    """An event that SIGINT or SIGTERM sets (handlers installed now: call it from the main
    thread); `then` runs in the handler right after (it may raise, e.g. KeyboardInterrupt)."""
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()
        if then is not None:
            then()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    return stop
