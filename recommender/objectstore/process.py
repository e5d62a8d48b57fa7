"""Start, adopt and stop the object store process (`python -m recommender.objectstore`)."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from recommender import processes

log = logging.getLogger("flashrec.objectstore")


class ObjectStoreUnavailable(RuntimeError):
    """The object store could not be started or did not answer."""


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class LocalObjectStore:
    """The object store serving `data_dir` on `host` (a free port unless `port` is given).

    Its pid is kept in data_dir/objectstore.pid and its log in data_dir/objectstore.log; a
    store an earlier run left running on the same directory (that run was killed) is taken
    over instead of started. `args`: more command-line options (retention settings).
    """

    def __init__(self, data_dir: Path | str, host: str = "127.0.0.1", port: int | None = None,
                 args: Sequence[str] = ()) -> None:  # fmt: skip
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port
        self.args = tuple(args)
        self.pid_file = self.data_dir / "objectstore.pid"
        self.log_path = self.data_dir / "objectstore.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.adopted: int | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _tail(self, port: int | str) -> list[str]:
        """The command after the interpreter."""
        return ["-m", "recommender.objectstore", "--dir", str(self.data_dir.resolve()),
                "--host", self.host, "--port", str(port), *self.args]  # fmt: skip

    def start(self, timeout: float = 20.0) -> LocalObjectStore:
        if self.running():
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._adopt(timeout):
            return self
        if self.port is None:
            self.port = _free_port(self.host)
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        log.info("starting the object store on %s (data %s)", self.endpoint, self.data_dir)
        self.process = subprocess.Popen(
            [sys.executable, *self._tail(self.port)], stdout=self._log_file,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        self.pid_file.write_text(f"{self.process.pid}\n")
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _adopt(self, timeout: float) -> bool:
        """Take over the store of the pid file if it still serves this directory."""
        if not self.pid_file.exists():
            return False
        try:
            pid = int(self.pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pid = 0
        cmd = processes.cmdline(pid)[1:] if pid else []
        try:
            port = int(cmd[cmd.index("--port") + 1])
        except (ValueError, IndexError):
            port = 0
        if not port or cmd != self._tail(port) or (self.port not in (None, port)):
            self.pid_file.unlink(missing_ok=True)
            return False
        self.adopted, self.port = pid, port
        log.warning("taking over the object store left running by an earlier run (pid %d, %s)",
                    pid, self.endpoint)  # fmt: skip
        try:
            self._wait_ready(min(timeout, 5.0))
        except ObjectStoreUnavailable as exc:  # dying or hung: end it and start anew
            log.warning("%s: starting a new one", exc)
            self.stop()
            self.port = None
            return False
        return True

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            code = self.process.poll() if self.process else None
            if code is None and self.adopted is not None and not self.running():
                code = -1  # the adopted process is gone
            if code is not None:
                raise ObjectStoreUnavailable(
                    f"the object store exited with code {code} while starting on "
                    f"{self.endpoint}; see {self.log_path}"
                )
            try:
                with urllib.request.urlopen(self.endpoint + "/", timeout=1.0) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
            time.sleep(0.05)
        raise ObjectStoreUnavailable(
            f"the object store did not answer on {self.endpoint} within {timeout:g} s ({last}); "
            f"see {self.log_path}"
        )

    def running(self) -> bool:
        return processes.running(self.process, self.adopted)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after `timeout` seconds."""
        processes.stop(self.process, self.adopted, timeout)
        self.process = self.adopted = None
        self.pid_file.unlink(missing_ok=True)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
