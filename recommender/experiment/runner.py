"""One experiment: the nightly-vs-live replay, its scores, files."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recommender import blend_tuning
from recommender.blend_tuning import CandidateLog
from recommender.experiment import nightly_vs_live, report, scores
from recommender.experiment.scenario import Replay

log = logging.getLogger(__name__)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def run(
    load: Callable[[], Replay],
    params: nightly_vs_live.Params,
    out: Path | None,
    command: str,
    replicates: int = 1000,
    progress: Callable[[int], None] | None = None,
    on_loaded: Callable[[Replay], None] | None = None,
    tune: bool = False,
) -> dict[str, Any]:
    """Load the replay, run it, summarise it and (with `out`) write the report files. With
    `tune`, every setting of the blend's weight grid is also scored on the replay
    ("blend_tuning", best first)."""
    logging.getLogger("sqlglot").setLevel(logging.ERROR)  # sql/ statements it cannot check
    started = time.perf_counter()
    data = load()
    load_s = time.perf_counter() - started
    log.info("loaded %s: %d events in %.1f s", data.name, len(data.clicks), load_s)
    if on_loaded is not None:
        on_loaded(data)
    candidates = CandidateLog() if tune else None
    evals, info = nightly_vs_live.run(data, params, progress, candidates)
    log.info("replayed %d evaluations in %.1f s", len(evals), info["timings_s"]["loop_s"])
    t0 = time.perf_counter()
    stats = scores.summarize(evals, data.split_ms, replicates, seed=0)
    boot_s = time.perf_counter() - t0
    hour = scores.HOUR_MS
    sale_hours = None
    if data.sale_start_ms is not None:
        sale_hours = [(data.sale_start_ms - data.cut_ms) / hour, (data.end_ms - data.cut_ms) / hour]
    summary = {
        "replay": data.name,
        "scenario": data.info,
        "run": info,
        "windows": {
            "normal": [_iso(data.cut_ms), _iso(data.split_ms)],
            "sale": [_iso(data.split_ms), _iso(data.end_ms)],
            "sale_hours": sale_hours,
        },
        "stats": stats,
        "hourly": scores.hourly(evals, data.cut_ms),
        "bootstrap": {"replicates": replicates, "unit": "session", "seed": 0,
                      "seconds": round(boot_s, 2)},
        "load_s": round(load_s, 2),
        "seconds": round(time.perf_counter() - started, 2),
    }
    if candidates is not None:
        summary["blend_tuning"] = [
            {"weights": r.weights.text(), "mrr": round(r.mrr, 5), "hit_rate": round(r.hit_rate, 5)}
            for r in blend_tuning.search(candidates, params.cutoff)
        ]  # fmt: skip
    if out is not None:
        for path in report.write(out, summary, command):
            log.info("wrote %s", path)
    return summary
