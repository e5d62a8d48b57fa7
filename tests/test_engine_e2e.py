"""`flashrec up` as a real process on 127.0.0.1: broker, PostgreSQL, engine.

- A flash-sale replay with malformed events: every valid event is counted, every malformed
  one lands in the dead-letter topic with its reason, the views in PostgreSQL equal a batch
  run of their SQL at the same event clock, and the bundled psql that flashrec up prints
  (read-only role, password file) reads trending_by_category.
- kill -9 of the engine in the middle of a replay, restart: the views equal the batch run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from conftest import free_port, read_topic, unique_topic
from engine_support import pg_meta, pg_rows, raw, valid_events

from producers.flash_sale import FlashSaleConfig, generate
from recommender.engine import evaluate

pytestmark = pytest.mark.e2e

FLASHREC = [sys.executable, "-m", "recommender.cli"]


def produce(bootstrap: str, topic: str, items: list) -> None:
    from recommender.kafka_io import make_producer

    producer = make_producer(bootstrap)
    for item in items:
        key = item.get("session_id") if isinstance(item, dict) else None
        producer.produce(topic, raw(item), key=key)
    assert producer.flush(30) == 0


def wait_counted(dsn: str, total: int, proc: subprocess.Popen, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "flashrec up exited early"
        meta = pg_meta(dsn)
        done = int(meta.get("accepted", 0)) + int(meta.get("rejected", 0))
        if done >= total:
            return meta
        time.sleep(0.2)
    raise AssertionError(f"engine did not count {total} messages in time: {pg_meta(dsn)}")


def assert_equal_batch(dsn: str, items: list, timeout: float = 30) -> None:
    """Each view equals the batch SQL, once its tier has refreshed (the background tier of
    the customer views runs every 2 s here)."""
    valid = valid_events(items)
    clock = max(valid, key=lambda e: e["ts"])["ts"]
    from recommender.engine.store import parse_naive

    expected = evaluate(valid, parse_naive(clock))
    deadline = time.monotonic() + timeout
    for view, rows in expected.items():
        while _rows_or_none(dsn, view) != rows and time.monotonic() < deadline:
            time.sleep(0.5)  # a tier that has not published yet has no table yet
        assert pg_rows(dsn, view) == rows, view


def _rows_or_none(dsn: str, view: str) -> list | None:
    """The view's rows, None while its table does not exist yet."""
    import psycopg

    try:
        return pg_rows(dsn, view)
    except psycopg.errors.UndefinedTable:
        return None


def start_up(args: list[str], log: Path) -> subprocess.Popen:
    """`flashrec up` with the background tier refreshing every 2 s (default 30 s)."""
    return subprocess.Popen(
        [*FLASHREC, "up", "--background-interval", "2", *args], stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "FLASHREC_LOG_LEVEL": "INFO"},
    )  # fmt: skip


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def worker_children(pid: int) -> list[int]:
    """Child processes of `pid` running the engine's background worker."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (_stat(int(entry.name)) or ["", ""])[1] == str(pid):
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"recommender.engine.worker" in cmdline:
                out.append(int(entry.name))
    return out


def alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def dead_letters(bootstrap: str, n: int) -> list[dict]:
    """The dead letters of clickstream_dlq (once `n` are there), decoded."""
    return [orjson.loads(m.value()) for m in read_topic(bootstrap, "clickstream_dlq", n, 20)]


def test_up_dead_letters_equality_and_psql(tmp_path: Path) -> None:
    broker_port, pg_port = free_port(), free_port()
    proc = start_up(["--broker-port", str(broker_port), "--pg-port", str(pg_port),
                     "--data-dir", str(tmp_path / "d"), "--clock", "event",
                     "--refresh-interval", "0.3"], tmp_path / "up.log")  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "running" not in (tmp_path / "up.log").read_text():
            assert proc.poll() is None and time.monotonic() < deadline, (
                tmp_path / "up.log"
            ).read_text()
            time.sleep(0.2)
        from recommender.postgres.local import LocalPostgres

        dsn = LocalPostgres(tmp_path / "d" / "pg", pg_port).dsn  # its password file's
        items = list(generate(FlashSaleConfig(seed=3, events=5000, rate=30.0, bot_share=0.05,
                                              malformed_share=0.03)))  # fmt: skip
        items += [items[5], items[6]]  # repeated event_ids
        bootstrap = f"127.0.0.1:{broker_port}"
        produce(bootstrap, "clickstream", items)
        from confluent_kafka.admin import AdminClient

        topics = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics
        assert len(topics["clickstream"].partitions) == 1  # flashrec's default
        meta = wait_counted(dsn, len(items), proc)
        valid = valid_events(items)
        assert int(meta["accepted"]) == len(valid)
        bad = len(items) - len(valid)
        letters = dead_letters(bootstrap, bad)
        assert len(letters) == bad
        assert all(x["reason"] and "payload" in x and x["topic"] == "clickstream" for x in letters)
        assert sum("duplicate event_id" in x["reason"] for x in letters) == 2
        time.sleep(0.8)  # one more refresh after the last count
        assert_equal_batch(dsn, items)
        # the psql command flashrec up prints: the read-only role, no password typed (-w)
        psql = next(line.split(": ", 1)[1] for line in (tmp_path / "up.log").read_text()
                    .splitlines() if line.startswith("psql (read-only"))  # fmt: skip
        out = subprocess.run(f"{psql} -w -At -c 'SELECT * FROM trending_by_category'",
                             shell=True, capture_output=True, text=True, timeout=30)  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert len(out.stdout.splitlines()) == len(pg_rows(dsn, "trending_by_category")) > 0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert proc.returncode == 0, (tmp_path / "up.log").read_text()[-3000:]
    assert "stopped" in (tmp_path / "up.log").read_text()


def test_kill_9_and_restart_equals_batch(tmp_path: Path, broker) -> None:
    from recommender.local_broker import create_topics
    from recommender.postgres.local import LocalPostgres

    topic, dlq = unique_topic("click"), unique_topic("dlq")
    create_topics(broker.bootstrap, [topic, dlq], partitions=3)
    items = list(generate(FlashSaleConfig(seed=11, events=12000, rate=40.0, bot_share=0.05,
                                          malformed_share=0.01)))  # fmt: skip
    with LocalPostgres(tmp_path / "pg", free_port()) as pg:
        args = ["--bootstrap-servers", broker.bootstrap, "--pg-dsn", pg.dsn, "--topic", topic,
                "--dlq-topic", dlq, "--group-id", f"g-{topic}", "--data-dir",
                str(tmp_path / "d"), "--clock", "event", "--refresh-interval", "0.2",
                "--background-process"]  # fmt: skip
        proc = start_up(args, tmp_path / "up1.log")
        produce(broker.bootstrap, topic, items[:6000])
        wait_counted(pg.dsn, 2000, proc)
        workers = worker_children(proc.pid)
        assert len(workers) == 1, "the customer views' background process"
        proc.send_signal(signal.SIGKILL)  # mid-replay, no clean shutdown
        proc.wait(timeout=10)
        deadline = time.monotonic() + 15  # it notices within 1 s, exits within 5 s more
        while alive(workers[0]):
            assert time.monotonic() < deadline, "the background process outlived the engine"
            time.sleep(0.2)
        produce(broker.bootstrap, topic, items[6000:])
        proc = start_up(args, tmp_path / "up2.log")
        try:
            wait_counted(pg.dsn, len(items), proc, timeout=90)
            time.sleep(0.8)
            assert_equal_batch(pg.dsn, items)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)


def _wait_running(proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while "flashrec up: running" not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)


def _clicks(prefix: str, n: int, start: int) -> list[dict]:
    from datetime import datetime, timedelta

    from engine_support import click

    t0 = datetime(2026, 3, 1, 12, 0)
    out = [click(start + i, f"s{prefix}{i % 37}", i % 53, t0 + timedelta(seconds=start + i))
           for i in range(n)]  # fmt: skip
    for x in out:
        x["event_id"] = f"{prefix}-{x['event_id']}"
    return out


def test_restarts_and_poison_messages_lose_nothing(tmp_path: Path) -> None:
    """The embedded default's promise: a NUL event and a 200 KB control-character message
    among valid events leave the engine running; after SIGTERM and a restart on the same data
    dir (a new, empty broker), and after kill -9 and an immediate restart, every new event is
    stored. Counts compared exactly."""
    from recommender.postgres.local import LocalPostgres

    broker_port, pg_port, data = free_port(), free_port(), tmp_path / "d"
    args = ["--broker-port", str(broker_port), "--pg-port", str(pg_port), "--data-dir",
            str(data), "--clock", "event", "--refresh-interval", "0.3", "--no-intent"]
    bootstrap = f"127.0.0.1:{broker_port}"
    proc = start_up(args, tmp_path / "up1.log")
    try:
        _wait_running(proc, tmp_path / "up1.log")
        banner = (tmp_path / "up1.log").read_text()
        assert f"produce: flashrec produce flash-sale --bootstrap-servers {bootstrap}" in banner
        dsn = LocalPostgres(data / "pg", pg_port).dsn
        first = _clicks("one", 500, 0)
        nul = dict(first[0], event_id="nul-1", product_name="bad\x00name")
        produce(bootstrap, "clickstream", [*first[:250], nul, b"\x01" * 200_000, *first[250:]])
        meta = wait_counted(dsn, 502, proc)
        assert (int(meta["accepted"]), int(meta["rejected"])) == (500, 2)
        letters = dead_letters(bootstrap, 2)
        assert sorted(("NUL" in x["reason"], bool(x.get("payload_truncated"))) for x in letters
                      ) == [(False, True), (True, False)]  # fmt: skip
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0

        proc = start_up(args, tmp_path / "up2.log")  # the broker starts empty
        _wait_running(proc, tmp_path / "up2.log")
        produce(bootstrap, "clickstream", _clicks("two", 300, 500))
        wait_counted(dsn, 802, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

        proc = start_up(args, tmp_path / "up3.log")  # at once: what the killed run left
        _wait_running(proc, tmp_path / "up3.log")
        produce(bootstrap, "clickstream", _clicks("three", 300, 800))
        meta = wait_counted(dsn, 1102, proc)
        assert int(meta["accepted"]) == 1100
        ids = [r[0] for r in pg_rows(dsn, "clickstream")]
        assert len(ids) == len(set(ids)) == 1100
        assert {i.split("-")[0] for i in ids} == {"one", "two", "three"}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def test_a_killed_broker_is_started_again_and_loses_nothing(tmp_path: Path) -> None:
    """kill -9 of the embedded broker under a running `flashrec up`: it is started again on
    the same port with the events it held on disk, the engine and a producer reconnect, and
    every event is stored once."""
    import psutil

    from recommender.postgres.local import LocalPostgres

    broker_port, pg_port, data = free_port(), free_port(), tmp_path / "d"
    args = ["--broker-port", str(broker_port), "--pg-port", str(pg_port), "--data-dir",
            str(data), "--clock", "event", "--refresh-interval", "0.3", "--no-intent"]
    bootstrap, log = f"127.0.0.1:{broker_port}", tmp_path / "up.log"
    proc = start_up(args, log)
    try:
        _wait_running(proc, log)
        dsn = LocalPostgres(data / "pg", pg_port).dsn
        produce(bootstrap, "clickstream", _clicks("before", 300, 0))
        wait_counted(dsn, 300, proc)
        tansu = [c for c in psutil.Process(proc.pid).children()
                 if "tansu" in " ".join(c.cmdline())]  # fmt: skip
        assert len(tansu) == 1
        tansu[0].kill()
        deadline = time.monotonic() + 60
        while "broker ready" not in log.read_text().split("starting it again", 1)[-1]:
            assert "starting it again" in log.read_text() or time.monotonic() < deadline - 50
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        produce(bootstrap, "clickstream", _clicks("after", 200, 300))
        meta = wait_counted(dsn, 500, proc)
        assert int(meta["accepted"]) == 500
        ids = [r[0] for r in pg_rows(dsn, "clickstream")]
        assert len(ids) == len(set(ids)) == 500
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
