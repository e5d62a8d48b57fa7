"""Refresh benchmark: where one engine refresh spends its time, per view, without a broker.

Feeds a flash-sale history (rate x window, times spread over [now - window, now]) into an
in-process engine (wall clock, PostgreSQL from the wheel), then `--steps` live steps of
`--step-seconds` of events each, refreshing after each step as the engine loop does. The
background tier (customer views) runs in its own thread as in `flashrec up`. Prints per view
the median / p90 / p99 refresh time of the live steps, the main refresh and publish times,
and, as the baseline, the same views recomputed in full from their SQL in the same process
at the end (the ratio is what the incremental paths save).

    .venv/bin/python bench/refresh.py --rate 5000 --window-minutes 10 --steps 40
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import free_port, history, pct  # noqa: E402

from producers.flash_sale import FlashSaleConfig, generate  # noqa: E402
from recommender.engine import Engine, EngineConfig, ViewRunner  # noqa: E402
from recommender.events import format_ts  # noqa: E402
from recommender.postgres.local import LocalPostgres  # noqa: E402


class Message:
    """What the engine reads of a Kafka message."""

    def __init__(self, value: bytes, offset: int) -> None:
        self._value, self._offset = value, offset

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return "clickstream"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        return self._value


def stats(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 1), "p90": round(pct(values, 0.9), 1),
            "p99": round(pct(values, 0.99), 1)}  # fmt: skip


def run(rate: float, minutes: float, steps: int, step_s: float, batch: int,
        profile: bool = False, background: float = 30.0) -> dict[str, Any]:
    from rich.progress import track

    work = Path(tempfile.mkdtemp(prefix="flashrec-refresh-"))
    pg = LocalPostgres(work / "pg", free_port()).start()
    try:
        values = history(rate, minutes, seed=1)
        engine = Engine(EngineConfig.of(pg_dsn=pg.dsn, state_path=work / "engine.duckdb",
                                        background_interval=background))  # fmt: skip
        publish = engine.publisher.publish
        publish_ms: list[float] = []

        def timed_publish(*args: Any, **kwargs: Any) -> None:
            started = time.perf_counter()
            publish(*args, **kwargs)
            publish_ms.append((time.perf_counter() - started) * 1000)

        engine.publisher.publish = timed_publish  # type: ignore[method-assign]
        per_view: dict[str, list[float]] = {}
        live = False

        def timed(runner: ViewRunner) -> None:
            refresh = runner.refresh

            def timed_refresh(*args: Any, **kwargs: Any) -> list[Any]:
                results = refresh(*args, **kwargs)
                if live:
                    for r in results:
                        per_view.setdefault(r.name, []).append(r.refresh_ms)
                return results

            runner.refresh = timed_refresh  # type: ignore[method-assign]

        timed(engine.runner)
        if engine.tier is not None:
            timed(engine.tier.runner)
        offset = 0
        started = time.perf_counter()
        for i in track(range(0, len(values), batch), description="history", transient=True):
            chunk = values[i : i + batch]
            engine.ingest([Message(v, offset + j) for j, v in enumerate(chunk)])
            offset += len(chunk)
        engine.refresh()  # the views of the whole history at once, as after a restart
        history_s = time.perf_counter() - started
        cfg = FlashSaleConfig(seed=2, start=datetime.now(UTC), events=None, rate=rate,
                              bot_share=0.02)  # fmt: skip
        events = (e for e in generate(cfg) if isinstance(e, dict))
        live, ingest_ms, total_ms, scan_ms = True, [], [], []
        publish_ms.clear()
        if engine.tier is not None:  # its own thread, as in the engine loop
            engine.tier.start()
        profiler = cProfile.Profile() if profile else None
        for _ in track(range(steps), description="live steps", transient=True):
            msgs = []
            for _ in range(int(rate * step_s)):
                e = next(events)
                e["ts"] = format_ts(datetime.now(UTC))
                msgs.append(Message(orjson.dumps(e), offset))
                offset += 1
            if profiler is not None:
                profiler.enable()
            t0 = time.perf_counter()
            engine.ingest(msgs)
            t1 = time.perf_counter()
            engine.refresh()
            if profiler is not None:
                profiler.disable()
            scan_ms.append(engine.runner.scan_ms)
            ingest_ms.append((t1 - t0) * 1000)
            total_ms.append((time.perf_counter() - t1) * 1000)
        if profiler is not None:  # the live steps' engine thread, to stderr
            pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(45)
        # baseline: every view recomputed in full from its SQL, same events, same process
        now = engine.clock()
        full = ViewRunner(engine.store.con)
        recompute: dict[str, float] = {}
        for name in full.names:
            t0 = time.perf_counter()
            full.compute(now, name)
            recompute[name] = round((time.perf_counter() - t0) * 1000, 1)
        stored = engine.store.count()
        engine.stop()
    finally:
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)  # GBs: the state file and PostgreSQL's data
    views = {}
    for name, ms in sorted(per_view.items()):
        median = statistics.median(ms)
        views[name] = {**stats(ms), "full_recompute_ms": recompute.get(name),
                       "speedup": round(recompute[name] / median, 1)
                       if recompute.get(name) and median else None}  # fmt: skip
    return {
        "rate": rate, "window_minutes": minutes, "history_events": len(values),
        "history_ingest_events_per_s": round(len(values) / history_s),
        "stored_events": stored, "step_events": int(rate * step_s), "steps": steps,
        "ingest_ms": stats(ingest_ms), "refresh_ms": stats(total_ms),
        "publish_ms": stats(publish_ms), "session_scan_ms": stats(scan_ms), "views": views,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=5000.0, help="events per second")
    parser.add_argument("--window-minutes", type=float, default=10.0, help="history length")
    parser.add_argument("--steps", type=int, default=40, help="live steps measured")
    parser.add_argument("--step-seconds", type=float, default=0.5, help="events per step")
    parser.add_argument("--batch", type=int, default=50_000, help="history batch size")
    parser.add_argument("--background-interval", type=float, default=30.0,
                        help="seconds between customer-view refreshes (their own thread)")
    parser.add_argument("--profile", action="store_true",
                        help="print a cProfile of the live steps to stderr")  # fmt: skip
    args = parser.parse_args()
    result = run(args.rate, args.window_minutes, args.steps, args.step_seconds, args.batch,
                 args.profile, args.background_interval)  # fmt: skip
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
