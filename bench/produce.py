"""Benchmark of the producers: the flash-sale generator alone and events/s into the broker.

    .venv/bin/python bench/produce.py [--events 300000] [--runs 3] [--bootstrap-servers H:P]
                                      [--json bench/out/produce.json]

Measures, in one process, medians over --runs runs:
  * generator: events/s of `producers.flash_sale.generate` (dicts), and with JSON encoding;
  * replay: events/s of `producers.replay.read_dataset` on the shared yoochoose train file;
  * kafka: events/s through `producers.sink.KafkaSink` (confluent-kafka, acks=all,
    idempotence, lz4, linger 20 ms) of pre-generated events into a fresh local tansu broker
    (or --bootstrap-servers), from the first send to the end of the final flush (every event
    confirmed);
  * pipeline: generator + KafkaSink together (`flashrec produce flash-sale --speed 0`);
  * baseline: the same events through kafka-python (acks=all) in the same process, and the
    ratio KafkaSink / kafka-python.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
from common import free_port  # noqa: E402

from producers.flash_sale import FlashSaleConfig, generate  # noqa: E402
from producers.replay import read_dataset  # noqa: E402
from producers.sink import KafkaSink  # noqa: E402
from recommender.extras import require  # noqa: E402
from recommender.local_broker import LocalBroker, create_topics  # noqa: E402

YOOCHOOSE = ROOT.parent / "shared" / "data" / "yoochoose_rsc15" / \
    "yoochoose-clicks-100k_train_full.txt"


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def bench_generator(events: int) -> tuple[float, float]:
    cfg = FlashSaleConfig(seed=1, events=events)
    t = time.perf_counter()
    n = sum(1 for _ in generate(cfg))
    plain = rate(n, time.perf_counter() - t)
    t = time.perf_counter()
    n = sum(len(orjson.dumps(e)) > 0 for e in generate(cfg))
    return plain, rate(n, time.perf_counter() - t)


def bench_replay() -> float:
    t = time.perf_counter()
    n = sum(1 for _ in read_dataset(YOOCHOOSE, "yoochoose"))
    return rate(n, time.perf_counter() - t)


def bench_kafka(bootstrap: str, items: list[dict], run: int) -> tuple[float, dict]:
    topic = f"bench_produce_{int(time.time())}_{run}"
    create_topics(bootstrap, [topic], partitions=3)
    sink = KafkaSink(bootstrap, topic)
    t = time.perf_counter()
    for item in items:
        sink.send(item)
    summary = sink.close()
    seconds = time.perf_counter() - t
    assert summary["delivered"] == len(items), summary
    return rate(len(items), seconds), summary


def bench_pipeline(bootstrap: str, events: int, run: int) -> float:
    """Generator and KafkaSink together (what `flashrec produce flash-sale --speed 0` does)."""
    topic = f"bench_pipeline_{int(time.time())}_{run}"
    create_topics(bootstrap, [topic], partitions=3)
    sink = KafkaSink(bootstrap, topic)
    t = time.perf_counter()
    for item in generate(FlashSaleConfig(seed=3 + run, events=events)):
        sink.send(item)
    summary = sink.close()
    seconds = time.perf_counter() - t
    assert summary["delivered"] == summary["sent"], summary
    return rate(summary["sent"], seconds)


def bench_kafka_python(bootstrap: str, items: list[dict]) -> float:
    require("kafka", "bench")
    from kafka import KafkaProducer

    topic = f"bench_kp_{int(time.time())}"
    create_topics(bootstrap, [topic], partitions=3)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20,
                             batch_size=1_000_000, compression_type=None)
    t = time.perf_counter()
    for item in items:
        producer.send(topic, orjson.dumps(item), item["session_id"].encode())
    producer.flush(timeout=120)
    seconds = time.perf_counter() - t
    producer.close()
    return rate(len(items), seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline-events", type=int, default=50_000)
    parser.add_argument("--bootstrap-servers", default=None,
                        help="Use this broker instead of starting a local tansu.")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    result: dict = {"events": args.events, "runs": args.runs}
    gen = [bench_generator(args.events) for _ in range(args.runs)]
    result["generator_events_per_s"] = statistics.median(g[0] for g in gen)
    result["generator_json_events_per_s"] = statistics.median(g[1] for g in gen)
    result["replay_yoochoose_events_per_s"] = statistics.median(
        bench_replay() for _ in range(args.runs))

    items = list(generate(FlashSaleConfig(seed=2, events=args.events)))
    broker = None
    bootstrap = args.bootstrap_servers
    if bootstrap is None:
        broker = LocalBroker(port=free_port(), topics=()).start()
        bootstrap = broker.bootstrap
    try:
        runs = [bench_kafka(bootstrap, items, i) for i in range(args.runs)]
        kafka_rates = sorted(r for r, _ in runs)
        result["kafka_events_per_s"] = statistics.median(kafka_rates)
        result["kafka_events_per_s_runs"] = kafka_rates
        result["pipeline_events_per_s"] = statistics.median(
            bench_pipeline(bootstrap, args.events, i) for i in range(args.runs))
        result["kafka_bytes_per_event"] = round(
            sum(len(orjson.dumps(e)) for e in items[:10_000]) / min(10_000, len(items)), 1)
        baseline = bench_kafka_python(bootstrap, items[: args.baseline_events])
        result["kafka_python_events_per_s"] = baseline
        result["ratio_kafkasink_vs_kafka_python"] = result["kafka_events_per_s"] / baseline
    finally:
        if broker is not None:
            broker.stop()

    for key, value in result.items():
        if isinstance(value, float):
            print(f"{key:40s} {value:>14,.1f}")
        else:
            print(f"{key:40s} {value}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
