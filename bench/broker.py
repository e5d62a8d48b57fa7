"""Embedded broker benchmark: tansu's CPU while a consumer group tails live traffic, against
the record batches the topic already holds.

tansu 0.6's in-memory storage keeps every batch it was sent (it has no retention, and
DeleteRecords fails), and each fetch lists all of a partition's batches to find the next
one. So its CPU per fetch grows with the batches it holds, not with the traffic. For each
`--stored` level, the topic is first filled with that many small batches (100 events
each, read by the consumer straight away), then `--rate` events/s are produced with the
producers' defaults (linger.ms 20), keyed as flashrec's producers key by session, for
`--seconds` while the consumer tails them. Prints
the broker's cores (user + system CPU over wall time), its resident memory, and the
batches per second the live producer made (librdkafka's statistics) per level.
`--partitions`: of the topic (flashrec's default, 1). `--linger-ms`: the live producer's
(flashrec's default 20). `--fetch-wait-ms`: the consumer's fetch.wait.max.ms (flashrec's
default 100); tansu answers a fetch only after sleeping through it, so it sets how often
the consumer fetches, and each fetch that finds data lists the partition's batches.

    .venv/bin/python bench/broker.py --stored 0 10000 30000 60000 --rate 5000 --seconds 20
    .venv/bin/python bench/broker.py --stored 0 30000 --partitions 3
    .venv/bin/python bench/broker.py --stored 0 30000 --linger-ms 100 --fetch-wait-ms 250
    .venv/bin/python bench/broker.py --storage disk --stored 0 5000 --rate 1000

`--storage disk`: tansu on the local object store (flashrec up's default), which deletes the
batches the consumer group has committed past (the consumer commits after each read, as the
engine does); the store's cores and RSS are printed too. Each row also has the fill's produce
and drain rates (bulk throughput) and the live events' end-to-end latency (producer timestamp
to consumer).
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import orjson
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import free_port  # noqa: E402
from pipeline import produce_all  # noqa: E402

from recommender.config import DEFAULT_PARTITIONS  # noqa: E402
from recommender.kafka_io import (  # noqa: E402
    CONSUMER_DEFAULTS,
    PRODUCER_DEFAULTS,
    make_consumer,
    make_producer,
)
from recommender.local_broker import LocalBroker  # noqa: E402

TOPIC = "clickstream"
EVENT = orjson.dumps({
    "event_id": "0b7e3c1e-5d0c-4f7a-9d35-1f2b3c4d5e6f", "session_id": "s-000123456",
    "user_id": "u-00042", "product_id": "P000123", "product_name": "Product 123",
    "category": "electronics", "action": "view", "ts": "2026-12-03T17:00:00.000Z",
})  # fmt: skip
FILL_BATCH = 100  # events per batch while filling


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def fill(bootstrap: str, batches: int) -> None:
    """About `batches` more batches of FILL_BATCH events (no linger, at most FILL_BATCH
    events per batch)."""
    produce_all(bootstrap, itertools.repeat(EVENT, batches * FILL_BATCH),
                **{"linger.ms": 0, "batch.num.messages": FILL_BATCH})


def drain(consumer) -> None:
    while consumer.consume(10_000, timeout=1.0):
        pass


def tail(bootstrap: str, consumer, tansu: psutil.Process, rate: float, seconds: float,
         linger_ms: float, store: psutil.Process | None = None) -> dict[str, float]:  # fmt: skip
    """Produce `rate` events/s for `seconds` while the consumer reads them (and commits)."""
    stats: list[dict] = []  # librdkafka statistics, one per second
    producer = make_producer(bootstrap, **{"statistics.interval.ms": 1000, "linger.ms": linger_ms,
                                           "stats_cb": lambda s: stats.append(orjson.loads(s))})
    cpu, started = cpu_seconds(tansu), time.perf_counter()
    store_cpu = cpu_seconds(store) if store else 0.0
    sent = read = 0
    latencies: list[float] = []
    while (elapsed := time.perf_counter() - started) < seconds:
        while sent < int(elapsed * rate):
            producer.produce(TOPIC, EVENT, key=str(sent % 10_007))  # keyed, as by session
            sent += 1
        producer.poll(0)
        messages = consumer.consume(5_000, timeout=0.05)
        now_ms = time.time() * 1000
        latencies += [now_ms - m.timestamp()[1] for m in messages if m.error() is None]
        read += len(messages)
        if messages:
            consumer.commit(asynchronous=True)
    wall = time.perf_counter() - started
    cores = (cpu_seconds(tansu) - cpu) / wall
    latencies.sort()
    extra = {"latency_p50_ms": round(latencies[len(latencies) // 2]) if latencies else None,
             "latency_p99_ms": round(latencies[len(latencies) * 99 // 100]) if latencies else None}
    if store:
        extra["store_cores"] = round((cpu_seconds(store) - store_cpu) / wall, 2)
        extra["store_rss_mb"] = round(store.memory_info().rss / 2**20)
    producer.flush()
    per_batch = [s["topics"][TOPIC]["batchcnt"]["avg"] for s in stats
                 if TOPIC in s.get("topics", {}) and s["topics"][TOPIC]["batchcnt"]["cnt"]]
    events_per_batch = sorted(per_batch)[len(per_batch) // 2] if per_batch else 0
    return {"sent": sent, "read": read, "broker_cores": round(cores, 2),
            "batches_per_s": round(rate / events_per_batch) if events_per_batch else None,
            **extra}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stored", type=int, nargs="+", default=[0, 10_000, 30_000, 60_000],
                        help="batches the topic holds before each measurement (ascending)")
    parser.add_argument("--rate", type=float, default=5000.0, help="live events per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="live traffic per level")
    parser.add_argument("--partitions", type=int, default=DEFAULT_PARTITIONS,
                        help="partitions of the topic")
    parser.add_argument("--linger-ms", type=float, default=PRODUCER_DEFAULTS["linger.ms"],
                        help="the live producer's linger.ms")
    parser.add_argument("--fetch-wait-ms", type=int,
                        default=CONSUMER_DEFAULTS["fetch.wait.max.ms"],
                        help="the consumer's fetch.wait.max.ms")
    parser.add_argument("--storage", choices=("memory", "disk"), default="memory",
                        help="the broker's storage (disk: tansu on the local object store)")
    args = parser.parse_args()
    rows = []
    data_dir = Path(tempfile.mkdtemp(prefix="bench-broker-"))
    with LocalBroker(port=free_port(), partitions=args.partitions, storage=args.storage,
                     data_dir=data_dir) as broker:  # fmt: skip
        tansu = psutil.Process(broker.process.pid)
        store = psutil.Process(broker.store.process.pid) if broker.store else None
        consumer = make_consumer("bench-broker", [TOPIC], bootstrap=broker.bootstrap,
                                 fetch_wait_max_ms=args.fetch_wait_ms)
        held = 0
        for level in sorted(args.stored):
            began = time.perf_counter()
            fill(broker.bootstrap, level - held)
            filled = time.perf_counter()
            drain(consumer)
            drained = time.perf_counter() - 1.0  # drain ends with an empty 1 s poll
            events = (level - held) * FILL_BATCH
            held = max(held, level)
            row = {"storage": args.storage, "stored_batches": level, "rate": args.rate,
                   "partitions": args.partitions,
                   "fill_events_per_s": round(events / (filled - began)) if events else None,
                   "drain_events_per_s": round(events / max(drained - filled, 1e-3))
                   if events else None,
                   "linger_ms": args.linger_ms, "fetch_wait_ms": args.fetch_wait_ms,
                   **tail(broker.bootstrap, consumer, tansu, args.rate, args.seconds,
                          args.linger_ms, store),
                   "broker_rss_mb": round(tansu.memory_info().rss / 2**20)}  # fmt: skip
            print(json.dumps(row), flush=True)
            rows.append(row)
        consumer.close()
    shutil.rmtree(data_dir, ignore_errors=True)
    base = rows[0]["broker_cores"] or 0.01
    for row in rows:
        print(f"{row['stored_batches']:>8,} batches held: broker {row['broker_cores']:.2f} "
              f"cores ({row['broker_cores'] / base:.1f}x the first), RSS "
              f"{row['broker_rss_mb']} MB; the live producer made {row['batches_per_s']} "
              "batches/s")  # fmt: skip


if __name__ == "__main__":
    main()
