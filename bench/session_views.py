"""Session views benchmark: the incremental maintainer (recommender/engine/sessions.py) against
the SQL path (partial recompute of the touched sessions), same events, same process.

Stores a flash-sale history (rate x history seconds, in event time), builds both runners'
views, then for each step stores `--step-seconds` more events and refreshes session_features
and vmis_history on both runners (each on its own DuckDB cursor over the one store,
alternating which goes first), with the engine's GC handling (automatic GC off during the
refresh, survivors frozen after). Prints per path the median / p90 / p99 of the two views'
refresh time together and the ratio SQL / maintainer, for live-sized steps and for
catch-up-sized ones (`--catch-up-seconds`).

    .venv/bin/python bench/session_views.py --rate 5000 --history-seconds 300 --steps 30
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import stats  # noqa: E402

from producers.flash_sale import FlashSaleConfig, generate  # noqa: E402
from recommender import sqlfiles  # noqa: E402
from recommender.engine import sessions  # noqa: E402
from recommender.engine.engine import gc_paused  # noqa: E402
from recommender.engine.refresh import ViewRunner  # noqa: E402
from recommender.engine.store import StateStore  # noqa: E402


def _refresh(runner: ViewRunner, now: datetime) -> float:
    started = time.perf_counter()
    with gc_paused():
        runner.refresh(now)
    runner.commit()
    gc.freeze()
    return (time.perf_counter() - started) * 1000


def run(rate: float, history_s: float, steps: int, step_s: float, catch_up_s: float,
        catch_up_steps: int) -> dict[str, Any]:  # fmt: skip
    from rich.progress import track

    objects = [o for o in sqlfiles.load() if o.name in sessions.VIEWS]
    cfg = FlashSaleConfig(seed=1, start=datetime(2026, 1, 1, tzinfo=UTC), events=None,
                          rate=rate, bot_share=0.02)  # fmt: skip
    events = (e for e in generate(cfg) if isinstance(e, dict))
    store = StateStore(None, threads=1)
    batch = 50_000
    for _ in track(range(0, int(rate * history_s), batch), description="history",
                   transient=True):  # fmt: skip
        store.apply([next(events) for _ in range(batch)], {})
    now = store.max_event_time()
    runners = {
        "maintainer": ViewRunner(store.con, objects, sessions.maintainers(
            sqlfiles.views(objects))),
        "sql": ViewRunner(store.con.cursor(), objects),
    }  # fmt: skip
    build = {name: round(_refresh(r, now)) for name, r in runners.items()}
    out: dict[str, Any] = {"rate": rate, "history_events": store.count(),
                           "full_build_ms": build}  # fmt: skip
    for label, n, seconds in (("live", steps, step_s), ("catch_up", catch_up_steps, catch_up_s)):
        times: dict[str, list[float]] = {name: [] for name in runners}
        for i in track(range(n), description=label, transient=True):
            store.apply([next(events) for _ in range(int(rate * seconds))], {})
            now = store.max_event_time()
            order = list(runners) if i % 2 else list(reversed(runners))
            for name in order:
                times[name].append(_refresh(runners[name], now))
        medians = {name: statistics.median(t) for name, t in times.items()}
        out[label] = {"step_events": int(rate * seconds), "steps": n,
                      **{name: stats(t) for name, t in times.items()},
                      "ratio_sql_over_maintainer": round(medians["sql"] / medians["maintainer"],
                                                         2)}  # fmt: skip
    state = runners["maintainer"].overrides[sessions.VIEWS[0]].state
    out["sessions_in_memory"] = len(state.sessions)
    out["sessions_rebuilt"] = state.rebuilt
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=5000.0, help="events per second")
    parser.add_argument("--history-seconds", type=float, default=300.0)
    parser.add_argument("--steps", type=int, default=30, help="live-sized steps")
    parser.add_argument("--step-seconds", type=float, default=0.5)
    parser.add_argument("--catch-up-steps", type=int, default=5)
    parser.add_argument("--catch-up-seconds", type=float, default=20.0,
                        help="events per catch-up step (a backlog drained in 5 s refreshes)")
    args = parser.parse_args()
    print(json.dumps(run(args.rate, args.history_seconds, args.steps, args.step_seconds,
                         args.catch_up_seconds, args.catch_up_steps), indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
