"""Helpers shared by the benchmarks: free loopback ports and percentiles.

Light on purpose (standard library only): bench/soak.py measures other processes' memory and
imports it without loading the engine.
"""

from __future__ import annotations

import socket
import statistics


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], q: float) -> float:
    """The nearest-rank `q` quantile (0 <= q <= 1) of `values`; NaN when there are none."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def stats(values: list[float]) -> dict[str, float]:
    """Median, p90 and p99 of `values`, rounded to one decimal."""
    return {"median": round(statistics.median(values), 1), "p90": round(pct(values, 0.9), 1),
            "p99": round(pct(values, 0.99), 1)}  # fmt: skip
