"""The experiment's files: summary.json, report.md and per-hour PNG plots (sale shaded)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from recommender.extras import require

LABELS = {
    "vmis_nightly": "VMIS-kNN nightly",
    "vmis_live": "VMIS-kNN live",
    "also_nightly": "also viewed nightly",
    "also_live": "also viewed live",
    "also_blend": "also viewed live + nightly fill",
    "popular_nightly": "popular nightly",
    "popular_live": "popular live (last hour)",
    "coview_fill": "blend source: co-view live + co-occurrence fill",
    "trending_live": "blend source: trending in the session's categories",
    "popular_mix": "blend source: popularity mixed by the session's categories",
    "session_items": "blend source: the session's own items",
    "blend": "blend (served)",
}
PAIR_LABELS = {"vmis": "VMIS-kNN next item", "also_viewed": "customers also viewed",
               "also_viewed_blend": "also viewed, live + nightly fill",
               "popular": "popularity", "blend": "blend vs nightly VMIS-kNN"}
PLOTS = {
    "hit_rate_per_hour.png": ("hit_rate", ("vmis_nightly", "vmis_live", "popular_nightly",
                                           "popular_live", "blend")),
    "mrr_per_hour.png": ("mrr", ("vmis_nightly", "vmis_live", "popular_nightly",
                                 "popular_live", "blend")),
    "also_viewed_per_hour.png": ("hit_rate", ("also_nightly", "also_live", "also_blend")),
}
STYLE = {"vmis_nightly": ("tab:blue", "-"), "vmis_live": ("tab:red", "-"),
         "popular_nightly": ("tab:blue", ":"), "popular_live": ("tab:red", ":"),
         "also_nightly": ("tab:blue", "-"), "also_live": ("tab:red", "-"),
         "also_blend": ("tab:green", "--"), "blend": ("black", "-")}
METRIC_NAMES = {"hit_rate": "HitRate@20", "mrr": "MRR@20"}


def _plot(path: Path, summary: dict[str, Any], metric: str, models: tuple[str, ...]) -> None:
    matplotlib = require("matplotlib", "experiment")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hourly = summary["hourly"]
    fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
    sale = summary["windows"]["sale_hours"]
    if sale is not None:
        ax.axvspan(sale[0], sale[1], color="orange", alpha=0.18, label="flash sale")
    for name in models:
        rows = hourly[name]
        color, line = STYLE[name]
        ax.plot([r["hour"] + 0.5 for r in rows], [r[metric] for r in rows], line,
                color=color, marker="o", markersize=3, label=LABELS[name])
    title = "customers also viewed: hit rate" if "also" in models[0] else METRIC_NAMES[metric]
    ax.set_title(f"{title} per hour - {summary['replay']}")
    ax.set_xlabel("hour of the replayed day (UTC)")
    ax.set_ylabel(METRIC_NAMES[metric])
    ax.set_ylim(bottom=0)
    ax.set_xlim(0, max(24, max(r["hour"] + 1 for r in hourly[models[0]])))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _fmt(entry: dict[str, Any] | None, pct: bool = False) -> str:
    if entry is None or entry["value"] is None:
        return "n/a"
    scale, unit = (100.0, " %") if pct else (1.0, "")
    text = f"{entry['value'] * scale:.1f}{unit}" if pct else f"{entry['value']:.4f}"
    if entry.get("ci"):
        lo, hi = entry["ci"]
        text += (f" [{lo * scale:.1f}, {hi * scale:.1f}]" if pct else f" [{lo:.4f}, {hi:.4f}]")
    return text


def markdown(summary: dict[str, Any], command: str) -> str:
    """report.md: the run, the metrics per window, the nightly model's drop, per hour, plots."""
    sale_name = "sale" if summary["windows"]["sale_hours"] is not None else "second half"
    lines = [
        *_overview(summary, command, sale_name),
        *_window_table(summary["stats"], sale_name),
        *_drop_table(summary["stats"], sale_name),
        *_hourly_table(summary["hourly"]),
        "", "## Plots", "",
        *[f"![{name}]({name})" for name in PLOTS],
        *_timings(summary),
    ]  # fmt: skip
    return "\n".join(lines)


def _overview(summary: dict[str, Any], command: str, sale_name: str) -> list[str]:
    """The title, the command and what was replayed."""
    s, run, win = summary["stats"], summary["run"], summary["windows"]
    return [
        f"# Live versus nightly recommendations: {summary['replay']}",
        "",
        "```bash",
        command,
        "```",
        "",
        f"- Events: {run['events_total']:,} ({run['events_history']:,} before midnight, "
        f"{run['events_test']:,} on the replayed day); {run['products']:,} products.",
        f"- Evaluations (next-item questions): {run['evaluations']:,} in "
        f"{run['test_sessions']:,} sessions; normal hours {s['evaluations|normal']['value']:,}, "
        f"{sale_name} window {s['evaluations|sale']['value']:,}.",
        f"- Normal hours: {win['normal'][0]} to {win['normal'][1]}; {sale_name} window: "
        f"{win['sale'][0]} to {win['sale'][1]}.",
        f"- Nightly models: built at midnight from the views of sql/ (index: "
        f"{run['nightly_index']['sessions']:,} sessions, {run['nightly_index']['items']:,} "
        f"items). Live: index updated on every click (at the end "
        f"{run['live_index_end']['sessions']:,} sessions), views refreshed every "
        f"{run['params']['refresh_s']:g} s of event time ({run['live_refreshes']:,} refreshes).",
        f"- 95% intervals: percentile bootstrap over sessions, "
        f"{summary['bootstrap']['replicates']} replicates.",
    ]


def _window_table(s: dict[str, Any], sale_name: str) -> list[str]:
    """Each model's HitRate and MRR in normal hours and in the sale window."""
    lines = [
        "",
        "## Metrics by window",
        "",
        f"| model | HitRate@20 normal | HitRate@20 {sale_name} | MRR@20 normal | "
        f"MRR@20 {sale_name} |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, label in LABELS.items():
        lines.append(
            f"| {label} | {_fmt(s[f'{name}|hit_rate|normal'])} | "
            f"{_fmt(s[f'{name}|hit_rate|sale'])} | {_fmt(s[f'{name}|mrr|normal'])} | "
            f"{_fmt(s[f'{name}|mrr|sale'])} |"
        )
    return lines


def _drop_table(s: dict[str, Any], sale_name: str) -> list[str]:
    """Per model pair and metric: the nightly and live drops and what live recovers."""
    lines = [
        "",
        f"## Drop of the nightly model in the {sale_name} window and what live recovers",
        "",
        "nightly drop = 1 - M(nightly, sale) / M(nightly, normal); recovered share = "
        "(M(live, sale) - M(nightly, sale)) / (M(nightly, normal) - M(nightly, sale)).",
        "",
        "| model | metric | nightly drop | live drop | recovered share | live - nightly "
        f"({sale_name}) | live - nightly (normal) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for pair, label in PAIR_LABELS.items():
        for metric in ("hit_rate", "mrr"):
            k = f"{pair}|{metric}"
            lines.append(
                f"| {label} | {METRIC_NAMES[metric]} | {_fmt(s[f'{k}|nightly_drop'], True)} | "
                f"{_fmt(s[f'{k}|live_drop'], True)} | "
                f"{_fmt(s[f'{k}|recovered_share'], True)} | "
                f"{_fmt(s[f'{k}|live_minus_nightly_sale'])} | "
                f"{_fmt(s[f'{k}|live_minus_nightly_normal'])} |"
            )
    return lines


HOURLY = (("vmis_nightly", "hit_rate"), ("vmis_live", "hit_rate"), ("blend", "hit_rate"),
          ("vmis_nightly", "mrr"), ("vmis_live", "mrr"), ("blend", "mrr"),
          ("also_nightly", "hit_rate"), ("also_live", "hit_rate"))  # fmt: skip


def _hourly_table(h: dict[str, Any]) -> list[str]:
    """Per hour of the replayed day: evaluations and the VMIS, blend and also-viewed metrics."""
    names = " | ".join(f"{LABELS[m]} {METRIC_NAMES[k]}" for m, k in HOURLY)
    lines = ["", "## Per hour", "", f"| hour | evaluations | {names} |",
             "|---:|---:|" + "---:|" * len(HOURLY)]  # fmt: skip
    for i, row in enumerate(h["vmis_nightly"]):
        cells = " | ".join(f"{h[m][i][k]:.3f}" for m, k in HOURLY)
        lines.append(f"| {row['hour']:02d} | {row['evaluations']:,} | {cells} |")
    return lines


def _timings(summary: dict[str, Any]) -> list[str]:
    """Where the run's time went."""
    t = summary["run"]["timings_s"]
    return [
        "",
        "## Run",
        "",
        f"Total {summary['seconds']:.1f} s: generate/read {summary['load_s']:.1f} s, nightly "
        f"build {t['nightly_build_s']:.1f} s, replay loop {t['loop_s']:.1f} s (view refreshes "
        f"{t['refresh_s']:.1f} s, index updates {t['index_update_s']:.1f} s, recommendations "
        f"{t['recommend_s']:.1f} s), bootstrap {summary['bootstrap']['seconds']:.1f} s.",
        "",
    ]


def write(out: Path, summary: dict[str, Any], command: str) -> list[Path]:
    """summary.json, report.md and the plots in `out`; returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, (metric, models) in PLOTS.items():
        _plot(out / name, summary, metric, models)
        paths.append(out / name)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    (out / "report.md").write_text(markdown(summary, command))
    return [out / "summary.json", out / "report.md", *paths]
