"""Duplicate checks against the event_id index: a batch's hashes searched in arrival order
(the former way, rebuilt here as the baseline) against EventIdIndex.maybe_present (sorted).

    .venv/bin/python bench/event_ids.py --stored 9000000 --batch 10000 --runs 50
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from recommender.engine.event_ids import MERGE_CHUNKS, EventIdIndex, _contains


def arrival_order(index: EventIdIndex, hashes: np.ndarray) -> np.ndarray:
    found = _contains(index.main, hashes)
    for chunk in index.recent:
        found |= _contains(chunk, hashes)
    return found


def timed(fn, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stored", type=int, default=9_000_000, help="hashes in the index")
    parser.add_argument("--batch", type=int, default=10_000, help="hashes per consumed batch")
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    index = EventIdIndex()
    index.main = np.sort(rng.integers(0, 2**63, args.stored, dtype=np.uint64))
    index.recent = [np.sort(rng.integers(0, 2**63, args.batch, dtype=np.uint64))
                    for _ in range(MERGE_CHUNKS // 2)]  # fmt: skip
    batches = [rng.integers(0, 2**63, args.batch, dtype=np.uint64) for _ in range(args.runs)]
    assert all((arrival_order(index, b) == index.maybe_present(b)).all() for b in batches[:3])
    result = {}
    for name, fn in (("arrival_order", arrival_order), ("sorted", EventIdIndex.maybe_present)):
        it = iter(batches)
        ms = timed(lambda fn=fn, it=it: fn(index, next(it)), args.runs)
        result[name] = {"median_ms": round(statistics.median(ms), 2),
                        "p90_ms": round(float(np.percentile(ms, 90)), 2)}  # fmt: skip
    result["ratio_median"] = round(result["sorted"]["median_ms"]
                                   / result["arrival_order"]["median_ms"], 2)  # fmt: skip
    print(json.dumps({"stored": args.stored, "batch": args.batch, "runs": args.runs, **result}))


if __name__ == "__main__":
    main()
