"""The Markdown report of a training run, with PNG plots, written into the version folder.

Sections: data window, class balance, metrics per algorithm, chosen parameters and the
promotion decision, feature importances, and Kolmogorov-Smirnov tests of each feature's
training distribution against the previous run's (a shift hint: p < SHIFT_P).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recommender.extras import require
from recommender.intent.dataset import Split
from recommender.intent.train import RECALL_AT_PRECISION, RunResult, versions

SHIFT_P = 0.01
TOP_FEATURES = 20


def ks_shift(current: np.ndarray, previous: np.ndarray, names: list[str],
             previous_names: list[str]) -> list[tuple[str, float, float]]:
    """(feature, KS statistic, p-value) for features present in both runs, most shifted first."""
    require("scipy", "intent")
    from scipy.stats import ks_2samp

    where = {n: i for i, n in enumerate(previous_names)}
    out = []
    for i, name in enumerate(names):
        if name in where and len(current) and len(previous):
            res = ks_2samp(current[:, i], previous[:, where[name]])
            out.append((name, float(res.statistic), float(res.pvalue)))
    return sorted(out, key=lambda r: (r[2], -r[1]))


def _previous(run: RunResult) -> Path | None:
    older = [v for v in versions(run.path.parent) if v < run.version]
    return run.path.parent / older[-1] if older else None


def _plots(run: RunResult, split: Split) -> list[str]:
    matplotlib = require("matplotlib", "intent")
    matplotlib.use("Agg")
    require("sklearn", "intent")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve

    files = []
    fig, ax = plt.subplots(figsize=(5, 3.2))
    labels = ["train", "test"]
    pos = [int(split.train.y.sum()), int(split.test.y.sum())]
    neg = [len(split.train) - pos[0], len(split.test) - pos[1]]
    ax.bar(labels, neg, label="no purchase", color="#9bb")
    ax.bar(labels, pos, bottom=neg, label="purchase", color="#d64")
    ax.set_ylabel("rows")
    ax.legend()
    ax.set_title("Class balance")
    fig.tight_layout()
    fig.savefig(run.path / "class_balance.png", dpi=100)
    plt.close(fig)
    files.append("class_balance.png")

    y = split.test.y
    if len(y) and y.min() != y.max():
        fig, ax = plt.subplots(figsize=(5.5, 4))
        for r in run.results:
            precision, recall, _ = precision_recall_curve(y, r.test_scores)
            ax.plot(recall, precision, label=f"{r.name} (AP {r.test['pr_auc']:.3f})")
        ax.axhline(y.mean(), color="grey", linestyle="--", label=f"random ({y.mean():.3f})")
        ax.axhline(RECALL_AT_PRECISION, color="grey", linestyle=":", linewidth=0.8)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title("Precision-recall on the test split")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(run.path / "precision_recall.png", dpi=100)
        plt.close(fig)
        files.append("precision_recall.png")

    if run.importances:
        top = list(run.importances.items())[:TOP_FEATURES]
        fig, ax = plt.subplots(figsize=(6, 0.25 * len(top) + 1.2))
        ax.barh([k for k, _ in reversed(top)], [v for _, v in reversed(top)], color="#47a")
        ax.set_xlabel("drop in PR-AUC when shuffled")
        ax.set_title(f"Feature importance ({run.best.name})")
        ax.tick_params(axis="y", labelsize=7)
        fig.tight_layout()
        fig.savefig(run.path / "importances.png", dpi=100)
        plt.close(fig)
        files.append("importances.png")
    return files


def _f(value: float | None) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.4f}"


def write_report(run: RunResult, split: Split, settings: dict[str, object]) -> Path:
    """Write report.md (and its PNGs) into the run's folder; returns the report's path."""
    plots = _plots(run, split)
    tr, te = split.train, split.test
    lines = [
        f"# Purchase-intent training run {run.version}",
        "",
        f"Decision: **{'promoted' if run.promoted else 'not promoted'}** ({run.reason}).",
        f"Chosen algorithm: `{run.best.name}` with `{run.best.params}`.",
        f"Training took {run.seconds:.1f} s (search, test scoring, importances).",
        "",
        "## Data window",
        "",
        f"- Events: {split.events:,} from {split.first:%Y-%m-%d %H:%M} to "
        f"{split.last:%Y-%m-%d %H:%M} UTC; settings: `{settings}`.",
        f"- Time-ordered split at {split.cutoff:%Y-%m-%d %H:%M} UTC: training rows come from "
        "events up to the cutoff only; test rows are the sessions scored after it.",
        "",
        "## Class balance",
        "",
        "| split | rows | purchase | share |",
        "|---|---:|---:|---:|",
        f"| train | {len(tr):,} | {int(tr.y.sum()):,} | {_f(tr.y.mean() if len(tr) else 0)} |",
        f"| test | {len(te):,} | {int(te.y.sum()):,} | {_f(te.y.mean() if len(te) else 0)} |",
        "",
        "![class balance](class_balance.png)",
        "",
        "## Metrics per algorithm",
        "",
        "Selection by PR-AUC (average precision) in time-ordered cross-validation on the "
        "training split; test figures on the rows after the cutoff. Baseline: a random "
        f"ranking's PR-AUC = the test positive rate ({_f(te.y.mean() if len(te) else None)}).",
        "",
        f"| algorithm | CV PR-AUC | test PR-AUC | recall at precision {RECALL_AT_PRECISION} "
        "| test ROC AUC | search s | parameters |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in run.results:
        lines.append(
            f"| {r.name} | {_f(r.cv_pr_auc)} | {_f(r.test['pr_auc'])} | "
            f"{_f(r.test['recall_at_precision'])} | {_f(r.test['roc_auc'])} | "
            f"{r.seconds:.1f} | `{r.params}` |")
    if run.current_test is not None:
        lines += ["", f"Current model {run.current_version} on the same test rows: PR-AUC "
                      f"{_f(run.current_test['pr_auc'])}, recall at precision "
                      f"{RECALL_AT_PRECISION} {_f(run.current_test['recall_at_precision'])}."]
    if "precision_recall.png" in plots:
        lines += ["", "![precision-recall](precision_recall.png)"]
    lines += ["", "## Feature importances", ""]
    if run.importances:
        lines += ["Permutation importance of the chosen model on the test split (drop in "
                  "PR-AUC when the feature is shuffled).", "",
                  "| feature | importance |", "|---|---:|"]
        lines += [f"| {k} | {v:.4f} |" for k, v in list(run.importances.items())[:TOP_FEATURES]]
        lines += ["", "![importances](importances.png)"]
    else:
        lines.append("Not computed: the test split lacks one of the classes.")
    lines += ["", "## Feature shift against the previous run", ""]
    prev = _previous(run)
    if prev is None or not (prev / "train_features.npz").is_file():
        lines.append("No previous run: nothing to compare.")
    else:
        old = np.load(prev / "train_features.npz")
        rows = ks_shift(tr.X, old["X"], tr.feature_names, [str(n) for n in old["names"]])
        shifted = [r for r in rows if r[2] < SHIFT_P]
        lines += [f"Two-sample Kolmogorov-Smirnov test of each feature's training "
                  f"distribution against {prev.name}: {len(shifted)} of {len(rows)} features "
                  f"differ at p < {SHIFT_P}.", "",
                  "| feature | KS statistic | p-value | shifted |", "|---|---:|---:|---|"]
        lines += [f"| {n} | {s:.4f} | {p:.3g} | {'yes' if p < SHIFT_P else ''} |"
                  for n, s, p in rows]
    path = run.path / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
