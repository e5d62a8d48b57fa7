"""HitRate@20 and MRR@20 per hour and per window, with bootstrap intervals over sessions.

Windows: "normal" = evaluations before the split (the sale start), "sale" = from it to the end.
For a nightly/live pair of models and a metric M:
  nightly drop     = 1 - M(nightly, sale) / M(nightly, normal)
  recovered share  = (M(live, sale) - M(nightly, sale)) / (M(nightly, normal) - M(nightly, sale))
                     (the share of the nightly model's loss that the live one wins back;
                     above 1 when live in the sale beats nightly in normal hours)
The recovered share is reported (not null) only when the nightly drop's interval lies above 0.
Intervals: percentile bootstrap, resampling whole sessions (evaluations of one session are
not independent), `replicates` times with a seeded generator.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recommender.experiment.nightly_vs_live import RECOMMENDERS, Evaluations

WINDOWS = ("normal", "sale")
METRICS = ("hit_rate", "mrr")
PAIRS = {
    "vmis": ("vmis_nightly", "vmis_live"),
    "also_viewed": ("also_nightly", "also_live"),
    "also_viewed_blend": ("also_nightly", "also_blend"),
    "popular": ("popular_nightly", "popular_live"),
    "blend": ("vmis_nightly", "blend"),  # the share of nightly VMIS-kNN's drop the blend wins
}
HOUR_MS = 3_600_000


def hourly(evals: Evaluations, cut_ms: int) -> dict[str, list[dict[str, Any]]]:
    """Per model, per hour since the cut: evaluations, HitRate and MRR."""
    hour = (evals.ts_ms - cut_ms) // HOUR_MS
    hours = np.unique(hour)
    out: dict[str, list[dict[str, Any]]] = {}
    for name, ranks in evals.ranks.items():
        hit = (ranks > 0).astype(np.float64)
        rr = np.where(ranks > 0, 1.0 / np.maximum(ranks, 1), 0.0)
        rows = []
        for h in hours.tolist():
            sel = hour == h
            n = int(sel.sum())
            rows.append({"hour": int(h), "evaluations": n,
                         "hit_rate": float(hit[sel].mean()), "mrr": float(rr[sel].mean())})
        out[name] = rows
    return out


def _features(evals: Evaluations, split_ms: int) -> tuple[np.ndarray, list[str]]:
    """Per-session sums (sessions x features): evaluations per window, then hits and
    reciprocal ranks per model and window."""
    _, sid = np.unique(evals.session, return_inverse=True)
    n_s = int(sid.max()) + 1 if len(sid) else 0
    w = (evals.ts_ms >= split_ms).astype(np.int64)
    cell = sid * 2 + w
    cols, names = [], []

    def add(name: str, weights: np.ndarray) -> None:
        sums = np.bincount(cell, weights=weights, minlength=2 * n_s).reshape(n_s, 2)
        for j, window in enumerate(WINDOWS):
            cols.append(sums[:, j])
            names.append(f"{name}|{window}")

    add("n", np.ones(len(cell)))
    for rec in RECOMMENDERS:
        ranks = evals.ranks[rec]
        add(f"{rec}|hit_rate", (ranks > 0).astype(np.float64))
        add(f"{rec}|mrr", np.where(ranks > 0, 1.0 / np.maximum(ranks, 1), 0.0))
    return np.column_stack(cols) if cols else np.zeros((0, 0)), names


def _stats(sums: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """Every reported statistic from feature sums (last axis = features)."""
    col = {name: sums[..., i] for i, name in enumerate(names)}
    out: dict[str, np.ndarray] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for rec in RECOMMENDERS:
            for metric in METRICS:
                for window in WINDOWS:
                    out[f"{rec}|{metric}|{window}"] = (
                        col[f"{rec}|{metric}|{window}"] / col[f"n|{window}"]
                    )
        for pair, (night, live) in PAIRS.items():
            for metric in METRICS:
                nn, ns = out[f"{night}|{metric}|normal"], out[f"{night}|{metric}|sale"]
                ln, ls = out[f"{live}|{metric}|normal"], out[f"{live}|{metric}|sale"]
                out[f"{pair}|{metric}|nightly_drop"] = 1.0 - ns / nn
                out[f"{pair}|{metric}|live_drop"] = 1.0 - ls / ln
                out[f"{pair}|{metric}|recovered_share"] = (ls - ns) / (nn - ns)
                out[f"{pair}|{metric}|live_minus_nightly_normal"] = ln - nn
                out[f"{pair}|{metric}|live_minus_nightly_sale"] = ls - ns
    return out


def _clean(x: float) -> float | None:
    return None if not np.isfinite(x) else round(float(x), 5)


def summarize(
    evals: Evaluations, split_ms: int, replicates: int = 1000, seed: int = 0
) -> dict[str, dict[str, Any]]:
    """{statistic: {"value", "ci": [lo, hi]}} with 95% session-bootstrap intervals."""
    feats, names = _features(evals, split_ms)
    point = _stats(feats.sum(axis=0), names)
    rng = np.random.default_rng(seed)
    n_s = feats.shape[0]
    draws = np.empty((replicates if n_s else 0, feats.shape[1]))
    for b in range(len(draws)):  # resample sessions: weight = times each one is drawn
        weights = np.bincount(rng.integers(0, n_s, size=n_s), minlength=n_s)
        draws[b] = weights @ feats
    boot = _stats(draws, names) if len(draws) else {}
    out: dict[str, dict[str, Any]] = {}
    for key, value in point.items():
        entry: dict[str, Any] = {"value": _clean(value), "ci": None}
        if key in boot:
            sample = boot[key][np.isfinite(boot[key])]
            if len(sample) >= 0.9 * replicates and np.isfinite(value):
                lo, hi = np.percentile(sample, [2.5, 97.5])
                entry["ci"] = [_clean(lo), _clean(hi)]
        out[key] = entry
    for key in [k for k in out if k.endswith("|recovered_share")]:
        drop = out[key.replace("recovered_share", "nightly_drop")]
        if not drop["ci"] or drop["ci"][0] <= 0:  # no real drop: nothing to recover
            out[key] = {"value": None, "ci": None, "note": "no significant nightly drop"}
    n = {w: int(feats[:, names.index(f"n|{w}")].sum()) if n_s else 0 for w in WINDOWS}
    out["evaluations|normal"] = {"value": n["normal"], "ci": None}
    out["evaluations|sale"] = {"value": n["sale"], "ci": None}
    return out
