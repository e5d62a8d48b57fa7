"""Popularity benchmark: the time to build the popular source's tables and find the surge
(`recommender.popularity.popularity`), which the API's fill thread does once a minute.

Synthetic counts per catalogue size: every product seen the day before (1-300 sessions),
every second one in the last hour (1-30 sessions), 50 products surging (5,000 sessions),
50 categories. Prints the median and p90 of `--repeats` builds per size.

    .venv/bin/python bench/popularity.py --products 5000,100000 --repeats 7
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from recommender.popularity import popularity  # noqa: E402
from recommender.surge import day_before  # noqa: E402


def counts(n: int, seed: int = 1) -> tuple[dict[str, int], dict[str, int]]:
    """(last hour's sessions, the day before's sessions) per product of an `n`-product shop."""
    rng = random.Random(seed)
    before = {f"p{i}": rng.randint(1, 300) for i in range(n)}
    recent = {f"p{i}": rng.randint(1, 30) for i in range(0, n, 2)}
    for i in range(50):
        recent[f"p{i * 7 % n}"] = 5000
    return recent, before


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--products", default="5000,100000", help="catalogue sizes, comma-separated")
    ap.add_argument("--repeats", type=int, default=7, help="builds per size")
    args = ap.parse_args()
    for n in (int(x) for x in args.products.split(",")):
        recent, seen = counts(n)
        before = day_before(seen)
        category = {f"p{i}": f"c{i % 50}" for i in range(n)}.get
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            found = popularity(recent, before, category)
            times.append(time.perf_counter() - started)
        times.sort()
        p90 = times[min(len(times) - 1, int(0.9 * len(times)))]
        print(f"{n:>9,} products: median {1000 * statistics.median(times):.1f} ms, p90 "
              f"{1000 * p90:.1f} ms; {len(found.surge.share)} surging, "
              f"{len(found.plain.overall):,} ranked")  # fmt: skip


if __name__ == "__main__":
    main()
