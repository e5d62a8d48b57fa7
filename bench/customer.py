"""Customer-view benchmark: the incremental customer views against their SQL recomputed for
the touched users (the engine's path before engine/customer.py), same events, same process.

Stores a flash-sale history (rate x window, times spread over [now - window, now]; or
`--history-events` spread over `--history-days`) in a DuckDB state file, builds both views
both ways, then `--steps` live steps of `--step-seconds` of traffic each (wall-clock
times), refreshing both ways after each step (order alternating). Prints median / p90 /
p99 refresh time per way and their ratio, the first build, and whether both ways ended
with equal rows.

    .venv/bin/python bench/customer.py --rate 5000 --window-minutes 30 --steps 12
    .venv/bin/python bench/customer.py --history-events 3000000 --history-days 30 --users 50000

`--users N` maps every session to one of N customers (the generator's customers are mostly
new ones with a handful of clicks): a shop whose customers come back over the 30 days.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import stats  # noqa: E402
from pipeline import history_stream  # noqa: E402

from producers.flash_sale import FlashSaleConfig, generate  # noqa: E402
from recommender import sqlfiles  # noqa: E402
from recommender.engine.customer import maintainers  # noqa: E402
from recommender.engine.refresh import ViewRunner  # noqa: E402
from recommender.engine.store import StateStore  # noqa: E402
from recommender.events import format_ts  # noqa: E402

VIEWS = ("customer_features", "customer_hours")


def _customer(event: dict[str, Any], users: int) -> dict[str, Any]:
    if users:
        event["user_id"] = f"u{zlib.crc32(event['session_id'].encode()) % users}"
    return event


def run(rate: float, minutes: float, steps: int, step_s: float, threads: int,
        history_days: float = 0.0, history_events: int = 0, users: int = 0) -> dict[str, Any]:
    from rich.progress import track

    objects = [o for o in sqlfiles.load() if o.name in VIEWS]
    work = Path(tempfile.mkdtemp(prefix="flashrec-customer-"))
    store = StateStore(work / "state.duckdb", threads=threads)
    batch: list[dict[str, Any]] = []
    h_rate, h_minutes = rate, minutes
    if history_days:
        h_minutes = history_days * 1440
        h_rate = history_events / (h_minutes * 60)
    n_history = int(h_rate * h_minutes * 60)
    for value in track(history_stream(h_rate, h_minutes, seed=1), total=n_history,
                       description="history", transient=True):  # fmt: skip
        batch.append(_customer(orjson.loads(value), users))
        if len(batch) == 50_000:
            store.apply(batch, {})
            batch = []
    store.apply(batch, {})
    ways = {
        "sql": ViewRunner(store.con.cursor(), objects),
        "incremental": ViewRunner(store.con.cursor(), objects,
                                  maintainers(sqlfiles.views(objects))),
    }  # fmt: skip
    first: dict[str, float] = {}
    now = datetime.now(UTC).replace(tzinfo=None)
    for way, runner in ways.items():
        started = time.perf_counter()
        runner.refresh(now)
        runner.commit()
        first[way] = round((time.perf_counter() - started) * 1000, 1)
    cfg = FlashSaleConfig(seed=2, start=datetime.now(UTC), events=None, rate=rate,
                          bot_share=0.02)  # fmt: skip
    events = (e for e in generate(cfg) if isinstance(e, dict))
    times: dict[str, list[float]] = {way: [] for way in ways}
    changed: list[int] = []
    for step in track(range(steps), description="live steps", transient=True):
        step_events = []
        for _ in range(int(rate * step_s)):
            e = next(events)
            e["ts"] = format_ts(datetime.now(UTC))
            step_events.append(_customer(e, users))
        store.apply(step_events, {})
        now = datetime.now(UTC).replace(tzinfo=None)
        order = list(ways) if step % 2 else list(reversed(ways))
        for way in order:
            started = time.perf_counter()
            results = ways[way].refresh(now)
            ways[way].commit()
            times[way].append((time.perf_counter() - started) * 1000)
            if way == "incremental":
                changed.append(sum(len(r.inserts) + len(r.deletes) for r in results))
    equal = all(sorted(ways["sql"].rows(v)) == sorted(ways["incremental"].rows(v))
                for v in VIEWS)  # fmt: skip
    out = {
        "rate": rate, "history_minutes": h_minutes, "history_events": n_history,
        "users": users or "generator's",
        "step_events": int(rate * step_s), "steps": steps, "duckdb_threads": threads,
        "first_build_ms": first, "refresh_ms": {w: stats(t) for w, t in times.items()},
        "ratio_median": round(statistics.median(times["sql"])
                              / statistics.median(times["incremental"]), 1),
        "rows_changed_per_step": stats([float(c) for c in changed]),
        "equal_rows": equal, "rss_mb": round(psutil.Process().memory_info().rss / 2**20),
    }  # fmt: skip
    store.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=5000.0, help="events per second")
    parser.add_argument("--window-minutes", type=float, default=30.0, help="history length")
    parser.add_argument("--steps", type=int, default=12, help="live steps measured")
    parser.add_argument("--step-seconds", type=float, default=5.0, help="traffic per step")
    parser.add_argument("--duckdb-threads", type=int, default=1,
                        help="DuckDB threads (the engine's default is 1)")
    parser.add_argument("--history-days", type=float, default=0.0,
                        help="spread --history-events over this many days instead")
    parser.add_argument("--history-events", type=int, default=3_000_000)
    parser.add_argument("--users", type=int, default=0,
                        help="map sessions to this many customers (0: the generator's)")
    parser.add_argument("--out", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args()
    result = run(args.rate, args.window_minutes, args.steps, args.step_seconds,
                 args.duckdb_threads, args.history_days, args.history_events,
                 args.users)  # fmt: skip
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
