"""Event validation: the engine's old per-message loop vs `validate_batch`, same process.

    .venv/bin/python bench/validate.py [--n 50000] [--runs 5]

Flash-sale events (producers.flash_sale.generate) as JSON bytes; prints the median µs per event
over --runs runs of each (the two alternate, so load from other processes hits both alike),
and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import orjson

from producers.flash_sale import FlashSaleConfig, generate
from recommender.events import Rejected, validate_batch, validate_event


def old_loop(values: list[bytes]) -> list:
    """What Engine.ingest did per message before validate_batch."""
    return [Rejected("empty message (no value)") if not v else validate_event(v) for v in values]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    values = [orjson.dumps(e) for e in generate(FlashSaleConfig(seed=1, events=args.n))]
    assert validate_batch(values) == old_loop(values)
    runs: dict[str, list[float]] = {"per-event validate_event": [], "validate_batch": []}
    for _ in range(args.runs):
        for name, fn in zip(runs, (old_loop, validate_batch), strict=True):
            start = time.perf_counter()
            fn(values)
            runs[name].append((time.perf_counter() - start) / len(values) * 1e6)
    old, new = (statistics.median(times) for times in runs.values())
    for name, median in zip(runs, (old, new), strict=True):
        print(f"{name:26s} {median:6.2f} µs/event (median of {args.runs})")
    print(f"speed-up {old / new:.1f}x on {len(values)} events")


if __name__ == "__main__":
    main()
