"""Count-table benchmark: engine/intmap.py against Numba's typed Dict under a sliding
window's churn (the co-view pair counts' workload), same scattered keys, same process.

Fills each table with `--live` keys, then runs `--batches` batches: each inserts
`--batch` new keys and removes the `--batch` oldest (the size holds). Prints the median,
p99 and max time per batch and how many batches took over 10x the median (rebuild stalls).

    .venv/bin/python bench/intmap.py --live 2600000 --batch 10000 --batches 1500
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numba as nb
from numba import types
from numba.typed import Dict

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import pct  # noqa: E402

from recommender.engine import intmap  # noqa: E402


@nb.njit(cache=True, inline="always")
def _key(k):
    """Scattered keys, as pair keys are (a fixed odd multiplier, kept positive)."""
    return (k * 0x5851F42D4C957F2D) & 0x3FFFFFFFFFFFFFFF


@nb.njit(cache=True)
def _dict_slide(d, lo, hi, n, out):
    for k in range(hi, hi + n):
        d[_key(k)] = 1
    for k in range(lo, lo + out):
        del d[_key(k)]


@nb.njit(cache=True)
def _table_slide(cells, meta, lo, hi, n, out):
    for k in range(hi, hi + n):
        intmap.add(cells, meta, _key(k), 1)
    for k in range(lo, lo + out):
        intmap.add(cells, meta, _key(k), -1)


def _run(slide: Any, live: int, batch: int, batches: int) -> dict[str, float]:
    slide(0, 0, live, 0)  # fill (and compile)
    times = []
    lo, hi = 0, live
    for _ in range(batches):
        started = time.perf_counter()
        slide(lo, hi, batch, batch)
        times.append((time.perf_counter() - started) * 1000)
        lo, hi = lo + batch, hi + batch
    median = statistics.median(times)
    return {"median_ms": round(median, 2), "p99_ms": round(pct(times, 0.99), 2),
            "max_ms": round(max(times), 1),
            "stalls_over_10x_median": sum(t > 10 * median for t in times)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--live", type=int, default=2_600_000, help="keys held")
    parser.add_argument("--batch", type=int, default=10_000, help="keys in and out per batch")
    parser.add_argument("--batches", type=int, default=1500)
    args = parser.parse_args()
    d = Dict.empty(types.int64, types.int64)
    table = intmap.IntCounts(int(args.live / intmap.MAX_LOAD) + 1)

    def dict_slide(lo: int, hi: int, n: int, out: int) -> None:
        _dict_slide(d, lo, hi, n, out)

    def table_slide(lo: int, hi: int, n: int, out: int) -> None:
        if not intmap.room(table.cells, table.meta, n):
            table.grow(n)
        _table_slide(table.cells, table.meta, lo, hi, n, out)

    out = {"live_keys": args.live, "batch": args.batch, "batches": args.batches,
           "typed_dict": _run(dict_slide, args.live, args.batch, args.batches),
           "intmap": _run(table_slide, args.live, args.batch, args.batches),
           "intmap_slots": int(table.cells.shape[0])}  # fmt: skip
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
