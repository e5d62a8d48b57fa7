"""The disk-backed object store: S3 semantics, tansu on it (restarts after kill -9), retention."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import time
from pathlib import Path
from xml.etree import ElementTree

import pytest
from conftest import free_port

from recommender.kafka_io import make_consumer, make_producer
from recommender.local_broker import LocalBroker, topic_id
from recommender.objectstore.disk import DiskStore
from recommender.objectstore.process import LocalObjectStore
from recommender.objectstore.retention import Policy, Retention

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def request(store: LocalObjectStore, method: str, path: str, body: bytes = b"",
            **headers: str) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    conn = http.client.HTTPConnection(store.host, store.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers={k.replace("_", "-"): v
                                                       for k, v in headers.items()})  # fmt: skip
        answer = conn.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
    finally:
        conn.close()


def listing(store: LocalObjectStore, query: str) -> ElementTree.Element:
    status, _, body = request(store, "GET", f"/b?list-type=2&{query}")
    assert status == 200, body
    return ElementTree.fromstring(body)


@pytest.fixture
def store(tmp_path: Path):
    started = LocalObjectStore(tmp_path / "store", args=("--retention-interval", "0")).start()
    yield started
    started.stop()


def test_conditional_puts_and_gets(store: LocalObjectStore) -> None:
    assert request(store, "GET", "/b/a%2Fx.json")[0] == 404
    status, headers, _ = request(store, "PUT", "/b/a%2Fx.json", b"one", If_None_Match="*")
    assert status == 200
    first = headers["etag"]
    assert request(store, "PUT", "/b/a/x.json", b"two", If_None_Match="*")[0] == 412
    assert request(store, "PUT", "/b/a/x.json", b"two", If_Match='"nope"')[0] == 412
    assert request(store, "PUT", "/b/a/missing", b"two", If_Match=first)[0] == 412
    status, headers, _ = request(store, "PUT", "/b/a/x.json", b"two", If_Match=first)
    second = headers["etag"]
    assert status == 200 and second != first
    status, headers, body = request(store, "GET", "/b/a/x.json")
    assert (status, body, headers["etag"]) == (200, b"two", second)
    assert headers["content-length"] == "3" and "last-modified" in headers
    assert request(store, "GET", "/b/a/x.json", If_None_Match=second)[0] == 304
    assert request(store, "GET", "/b/a/x.json", If_None_Match=first)[0] == 200
    status, headers, body = request(store, "HEAD", "/b/a/x.json")
    assert (status, body, headers["content-length"]) == (200, b"", "3")
    assert request(store, "PUT", "/b/a/x.json", b"three")[0] == 200  # unconditional
    assert request(store, "PUT", "/b/a", b"short key beside a/x.json")[0] == 200
    assert request(store, "GET", "/b/a")[2] == b"short key beside a/x.json"
    assert request(store, "DELETE", "/b/a/x.json")[0] == 204
    assert request(store, "GET", "/b/a/x.json")[0] == 404


def test_listing_pages_prefix_delimiter_and_delete(store: LocalObjectStore) -> None:
    keys = [f"r/{i:05d}.batch" for i in range(1005)] + ["m/meta.json", "m/g/1.json", "m/g/2.json"]
    for key in keys:
        assert request(store, "PUT", f"/b/{key}", b"x" * 3)[0] == 200
    page = listing(store, "prefix=r/")
    assert page.findtext(f"{NS}IsTruncated") == "true"
    found = [c.findtext(f"{NS}Key") for c in page.iter(f"{NS}Contents")]
    assert found == keys[:1000]
    token = page.findtext(f"{NS}NextContinuationToken")
    page = listing(store, f"prefix=r/&continuation-token={token}")
    assert [c.findtext(f"{NS}Key") for c in page.iter(f"{NS}Contents")] == keys[1000:1005]
    assert page.findtext(f"{NS}IsTruncated") == "false"
    page = listing(store, "prefix=m/&delimiter=/")
    assert [c.findtext(f"{NS}Key") for c in page.iter(f"{NS}Contents")] == ["m/meta.json"]
    assert [p.findtext(f"{NS}Prefix") for p in page.iter(f"{NS}CommonPrefixes")] == ["m/g/"]
    page = listing(store, "prefix=r/&start-after=r/01003.batch")
    assert [c.findtext(f"{NS}Key") for c in page.iter(f"{NS}Contents")] == ["r/01004.batch"]
    times = [c.findtext(f"{NS}LastModified") for c in listing(store, "prefix=r/").iter(
        f"{NS}Contents")]  # fmt: skip
    assert times == sorted(times) and len(set(times)) == len(times)  # strictly increasing
    body = (b"<Delete><Object><Key>r/00000.batch</Key></Object><Object><Key>r/00001.batch</Key>"
            b"</Object></Delete>")  # fmt: skip
    status, _, answer = request(store, "POST", "/b?delete", body)
    assert status == 200 and answer.count(b"<Deleted>") == 2
    assert listing(store, "prefix=r/&max-keys=1").findtext(f"{NS}Contents/{NS}Key") == (
        "r/00002.batch")


def test_index_is_rebuilt_from_disk(tmp_path: Path) -> None:
    first = DiskStore(tmp_path)
    first.write("b", "a/b/../c", b"1")
    first.write("b", ".hidden/x y", b"22")
    (tmp_path / "b" / "leftover~tmp-1").write_bytes(b"a temporary file a kill left")
    again = DiskStore(tmp_path)
    assert again.load() == (2, 3)
    assert again.scan("b") == [".hidden/x y", "a/b/../c"]
    assert again.read("b", "a/b/../c")[1] == b"1"
    assert again.head("b", "a/b/../c") == first.head("b", "a/b/../c")


# --- tansu on the object store ---------------------------------------------------------------


def _produce(bootstrap: str, topic: str, values: range, per_batch: int = 10) -> None:
    producer = make_producer(bootstrap, **{"linger.ms": 0})
    for i in values:
        producer.produce(topic, str(i).encode())
        if i % per_batch == per_batch - 1:
            producer.flush(10)
    assert producer.flush(30) == 0


def _consume(bootstrap: str, topic: str, group: str, count: int,
             commit: bool = True) -> list[tuple[int, int]]:  # fmt: skip
    """(offset, value) of `count` messages of the group's partitions, committed."""
    consumer = make_consumer(group, [topic], bootstrap)
    got: list[tuple[int, int]] = []
    deadline = time.monotonic() + 60
    while len(got) < count and time.monotonic() < deadline:
        for msg in consumer.consume(min(500, count - len(got)), timeout=0.5):
            if msg.error() is None:
                got.append((msg.offset(), int(msg.value())))
    if commit and got:
        consumer.commit(asynchronous=False)
    consumer.close()
    return got


def _commit(bootstrap: str, topic: str, group: str, offset: int) -> None:
    from confluent_kafka import TopicPartition

    consumer = make_consumer(group, (), bootstrap)
    consumer.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
    consumer.close()


def _kill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(10)


def _batches(data_dir: Path, topic: str) -> list[int]:
    records = (data_dir / "objects/tansu/clusters/tansu_cluster/topics" / topic /
               "partitions/0000000000/records")  # fmt: skip
    return sorted(int(p.name.split(".")[0]) for p in records.iterdir()) if records.exists() else []


@pytest.mark.e2e
def test_tansu_on_disk_survives_kill_9(tmp_path: Path) -> None:
    data, port = tmp_path / "broker", free_port()

    def broker() -> LocalBroker:
        return LocalBroker(port=port, topics=("t",), partitions=1, storage="disk", data_dir=data,
                           pid_file=tmp_path / "broker.pid", log_path=tmp_path / "tansu.log",
                           store_args=("--retention-interval", "0"))  # fmt: skip

    first = broker().start()
    tid = topic_id(first.bootstrap, "t")
    _produce(first.bootstrap, "t", range(500))
    assert _consume(first.bootstrap, "t", "g", 300) == [(i, i) for i in range(300)]
    _kill(first.process)  # both processes, as a power cut would
    _kill(first.store.process)
    second = broker().start()
    assert topic_id(second.bootstrap, "t") == tid
    _produce(second.bootstrap, "t", range(500, 700))
    assert _consume(second.bootstrap, "t", "g", 400) == [(i, i) for i in range(300, 700)]
    _kill(second.store.process)  # only the store: the broker left running is replaced
    third = broker().start()
    assert third.adopted is None and third.process is not None
    _produce(third.bootstrap, "t", range(700, 750))
    assert _consume(third.bootstrap, "t", "other", 750) == [(i, i) for i in range(750)]
    for b in (first, second, third):
        b.stop()


@pytest.mark.e2e
def test_retention_keeps_what_a_group_has_not_read(tmp_path: Path) -> None:
    data = tmp_path / "broker"
    args = ("--retention-interval", "0.3", "--min-age", "0")
    with LocalBroker(port=free_port(), topics=("t",), partitions=1, storage="disk",
                     data_dir=data, log_path=tmp_path / "tansu.log", store_args=args) as b:
        _produce(b.bootstrap, "t", range(1000))
        for group in ("slow", "fast"):  # a group holds batches back once it has committed
            _commit(b.bootstrap, "t", group, 0)
        assert len(_consume(b.bootstrap, "t", "slow", 450)) == 450
        assert len(_consume(b.bootstrap, "t", "fast", 800)) == 800
        time.sleep(1.5)
        left = _batches(data, "t")
        assert left[0] <= 450 < (left[1] if len(left) > 1 else 1000)  # below 450: deleted
        assert left[0] > 300 and len(left) >= (1000 - 450) // 10
        # the slow group reads on from its offset: every later message, exactly once
        assert _consume(b.bootstrap, "t", "slow", 550) == [(i, i) for i in range(450, 1000)]
        # producing far more while both groups keep up: the store stays small
        for start in range(1000, 4000, 1000):
            _produce(b.bootstrap, "t", range(start, start + 1000))
            for group in ("fast", "slow"):
                behind = 200 if group == "fast" and start == 1000 else 0
                assert len(_consume(b.bootstrap, "t", group, 1000 + behind)) == 1000 + behind
        time.sleep(1.5)
        assert len(_batches(data, "t")) < 120
        size = sum(f.stat().st_size for f in (data / "objects").rglob("*") if f.is_file())
        assert size < 200_000


# --- retention decisions (no processes) ----------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _records(store: DiskStore, topic: str, bases: list[int]) -> None:
    for base in bases:
        store.write("tansu", f"clusters/c/topics/{topic}/partitions/0000000000/records/"
                    f"{base:020d}.batch", b"x" * 100)  # fmt: skip


def _note_commit(retention: Retention, group: str, topic: str, offset: int) -> None:
    key = f"clusters/c/groups/consumers/{group}/offsets/{topic}/partitions/0000000000.json"
    body = json.dumps({"offset": offset}).encode()
    retention.store.write("tansu", key, body)
    retention.on_put("tansu", key, body)


def test_stale_group_stops_blocking_after_stale_s(tmp_path: Path) -> None:
    clock = Clock()
    store = DiskStore(tmp_path)
    retention = Retention(store, Policy(min_age_s=0, stale_s=3600, plain_age_s=0,
                                        plain_bytes=0), clock=clock)  # fmt: skip
    _records(store, "t", [0, 10, 20, 30, 40])
    _note_commit(retention, "engine", "t", 40)
    _note_commit(retention, "stuck", "t", 10)
    assert retention.run() == 1  # batch 0 only: "stuck" has read up to 10
    clock.now += 1800
    _note_commit(retention, "engine", "t", 45)
    assert retention.run() == 0
    clock.now += 1801  # "stuck" silent for more than an hour: ignored
    assert retention.run() == 3  # 10, 20, 30; the newest batch (40) is always kept
    assert store.scan("tansu", "clusters/c/topics/t/") == [
        "clusters/c/topics/t/partitions/0000000000/records/00000000000000000040.batch"]


def test_min_age_and_reload(tmp_path: Path) -> None:
    clock = Clock()
    store = DiskStore(tmp_path)
    retention = Retention(store, Policy(min_age_s=60), clock=clock)
    _records(store, "t", [0, 10, 20])
    _note_commit(retention, "g", "t", 25)
    assert retention.run() == 0  # too young
    clock.now += 61
    again = Retention(DiskStore(tmp_path), Policy(min_age_s=60), clock=clock)
    again.store.load()
    again.load()  # the committed offsets are read back from disk
    assert again.run() == 2


def test_topics_no_group_reads_keep_time_and_size(tmp_path: Path) -> None:
    clock = Clock()
    store = DiskStore(tmp_path)
    retention = Retention(store, Policy(plain_age_s=3600, plain_bytes=250), clock=clock)
    _records(store, "dlq", [0, 1, 2, 3, 4])
    assert retention.run() == 3  # 500 bytes, at most 250 kept: 3 and 4
    meta = {"topics": {"dlq": {"topic": {"configs": [{"name": "retention.bytes",
                                                      "value": "-1"}]}}}}  # fmt: skip
    retention.on_put("tansu", "clusters/c/meta.json", json.dumps(meta).encode())
    _records(store, "dlq", [5, 6, 7])
    assert retention.run() == 0  # the topic's own retention.bytes (-1: no cap) wins
    clock.now += 3601
    assert retention.run() == 4  # time: all but the newest
