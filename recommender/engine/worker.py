"""The background tier in its own process: the customer views off the engine's interpreter.

In a thread, the customer views share the engine's Python interpreter with its loop and
publish thread (and, in `flashrec up`, the API and the intent scorer), and a refresh of them
is DuckDB and PostgreSQL work for every touched user. With
`background_process` (`flashrec up --background-process`) they run in a child process
instead, reading every partition by manual assignment, with its own DuckDB state (events and
offsets, as the engine keeps them, so kill -9 of either process loses nothing) and its own
PostgreSQL connection, niced so that the main tier gets the CPU first. It does not send dead
letters (the main engine does) nor write the raw `clickstream` table, the change feed or the
counters; its status rows carry the main tier's epoch.

`process_tier` is the tier factory to hand to `Engine`; `BackgroundProcess` starts and
watches the child; `python -m recommender.engine.worker` is the child, an `Engine` in the
background role (its configuration comes in the environment variable FLASHREC_WORKER_SPEC).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import timedelta

from recommender.changefeed import ChangeBatch
from recommender.config import setup_logging
from recommender.engine.background import TierContext
from recommender.engine.engine import Engine, EngineConfig

log = logging.getLogger("recommender.engine.worker")  # also when run as __main__

SPEC_ENV = "FLASHREC_WORKER_SPEC"


def worker_config(config: EngineConfig) -> EngineConfig:
    """The child's configuration: the background views only, on their interval, with their
    own state file (and a group id of their own, which librdkafka requires; unused)."""
    state = config.state_path
    if state is not None:
        state = state.with_name(f"{state.stem}-background{state.suffix or '.duckdb'}")
    return replace(
        config, state_path=state, role="background",
        source=replace(config.source, group_id=f"{config.source.group_id}-background"),
        refresh=replace(config.refresh, interval=config.background.interval,
                        view_intervals={}, overrides={}),
        publish=replace(config.publish, feed_views=(), thread=False),
    )  # fmt: skip


def process_tier(ctx: TierContext) -> BackgroundProcess:
    """The background views in a child process (its own state file and PostgreSQL
    connection); an engine driven by hand (refresh()) then does not maintain them."""
    return BackgroundProcess(ctx.config)


class BackgroundProcess:
    """Starts the child process for the background views and reports when it died."""

    in_process = False  # its changes go to PostgreSQL only
    last_now = None  # it prunes its own state file

    def __init__(self, config: EngineConfig) -> None:
        self.config = worker_config(config)
        self.process: subprocess.Popen[bytes] | None = None
        self._stopping = False

    def horizon(self) -> timedelta:
        return timedelta(0)  # its events are in its own state file

    def refresh(self) -> list[ChangeBatch]:
        return []  # refreshed by the child only

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def error(self) -> BaseException | None:
        """Set when the child exited while it should be running."""
        if self.process is None or self._stopping:
            return None
        code = self.process.poll()
        if code is None:
            return None
        return RuntimeError(f"the background process (views {', '.join(self.views())}) "
                            f"exited with code {code}; its log lines say why")  # fmt: skip

    def views(self) -> list[str]:
        return list(self.config.background.views or ())

    def start(self) -> BackgroundProcess:
        env = {**os.environ, SPEC_ENV: self.config.to_json()}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "recommender.engine.worker"], env=env,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        log.info("background process %d started (state %s, group %s)", self.process.pid,
                 self.config.state_path, self.config.source.group_id)  # fmt: skip
        return self

    def stop(self, timeout: float = 300) -> None:
        """SIGTERM, then wait for the refresh in progress; SIGKILL after `timeout` s (its
        state and offsets stay consistent either way)."""
        self._stopping = True
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("background process %d did not stop in %.0f s: killed",
                        self.process.pid, timeout)  # fmt: skip
            self.process.kill()
            self.process.wait()


def _watch_parent(parent: int, stop: threading.Event, grace: float = 5.0) -> None:
    """Stop when the process that started this one is gone (kill -9 of the engine); exit
    hard if a refresh in progress holds the stop up for `grace` s (a restarted engine
    waits for this state file; state and offsets are consistent after a kill too)."""
    while os.getppid() == parent:
        time.sleep(1.0)
    log.warning("the engine process %d is gone: stopping", parent)
    stop.set()
    time.sleep(grace)
    os.kill(os.getpid(), signal.SIGKILL)


def _open(config: EngineConfig, wait: float = 120.0) -> Engine:
    """The engine on its state file, waiting for a previous child that still holds it."""
    import duckdb

    deadline = time.monotonic() + wait
    while True:
        try:
            return Engine(config)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise
            log.info("state file %s is still held (a previous background process?): "
                     "waiting", config.state_path)  # fmt: skip
            time.sleep(1.0)


def main() -> None:
    setup_logging(process="background")
    text = os.environ.get(SPEC_ENV)
    if not text:
        sys.exit(f"{SPEC_ENV} is not set: this module is started by the engine")
    config = EngineConfig.from_json(text)
    parent = os.getppid()
    if config.background.nice:
        os.nice(config.background.nice)  # threads started from here on inherit it
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops us
    engine = _open(config)
    signal.signal(signal.SIGTERM, lambda *_: engine._stop.set())
    threading.Thread(target=_watch_parent, args=(parent, engine._stop), daemon=True).start()
    try:
        engine.run()
    finally:
        engine.stop()


if __name__ == "__main__":
    main()
