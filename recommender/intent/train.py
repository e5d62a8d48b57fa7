"""Train, compare and promote purchase-intent models (scikit-learn), versioned on disk.

Three algorithms, each with a hyper-parameter grid searched by time-ordered cross-validation
on the training split (TimeSeriesSplit: every validation fold lies after its training part).
Metric: PR-AUC (average precision), which ranks by how well the rare positive class is found
and is not inflated by the many negatives (unlike ROC AUC / accuracy). The algorithm with the
best cross-validated PR-AUC is the challenger. It is promoted only if its PR-AUC on the test
split (after the cutoff) beats the current model's PR-AUC on the same test rows. Also
reported: recall at precision >= RECALL_AT_PRECISION and the PR-AUC of a random ranking
(the test's positive rate), the baseline to beat.

Layout: MODEL_DIR/v0001/{model.joblib, meta.json, train_features.npz, report.md, *.png}; the
file MODEL_DIR/CURRENT names the promoted version. Every run gets a version, promoted or not.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from recommender.extras import require
from recommender.intent.dataset import Examples, Split
from recommender.progress import Progress

log = logging.getLogger(__name__)

RECALL_AT_PRECISION = 0.5
CURRENT = "CURRENT"


def signed_log1p(x: np.ndarray) -> np.ndarray:
    """log(1 + |x|) with the sign of x: tames counts and durations for a linear model."""
    return np.sign(x) * np.log1p(np.abs(x))


def algorithms(grid: str = "full", seed: int = 0) -> dict[str, tuple[Any, dict[str, list]]]:
    """name -> (estimator, parameter grid). `grid` is 'full' or 'small' (tests, smoke runs)."""
    require("sklearn", "intent")
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    small = grid == "small"
    logistic = Pipeline([
        ("log", FunctionTransformer(signed_log1p)),
        ("scale", StandardScaler()),
        ("model", LogisticRegression(max_iter=2000, class_weight="balanced")),
    ])
    forest = RandomForestClassifier(class_weight="balanced_subsample", random_state=seed,
                                    n_jobs=1)
    boosting = HistGradientBoostingClassifier(random_state=seed, class_weight="balanced",
                                              early_stopping=False)
    return {
        "logistic_regression": (logistic, {
            "model__C": [0.1, 1.0] if small else [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0],
        }),
        "random_forest": (forest, {
            "n_estimators": [60] if small else [200],
            "max_depth": [6] if small else [6, 12, None],
            "min_samples_leaf": [5] if small else [2, 10],
        }),
        "gradient_boosting": (boosting, {
            "learning_rate": [0.1] if small else [0.05, 0.1],
            "max_iter": [60] if small else [200],
            "max_leaf_nodes": [7] if small else [7, 15, 31],
            "l2_regularization": [0.0] if small else [0.0, 1.0],
        }),
    }


def metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """PR-AUC, recall at precision >= RECALL_AT_PRECISION, ROC AUC, baseline PR-AUC."""
    require("sklearn", "intent")
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

    if len(y) == 0 or y.min() == y.max():
        return {"pr_auc": float("nan"), "recall_at_precision": float("nan"),
                "roc_auc": float("nan"), "baseline_pr_auc": float(y.mean()) if len(y) else 0.0}
    precision, recall, _ = precision_recall_curve(y, p)
    ok = recall[precision >= RECALL_AT_PRECISION]
    return {
        "pr_auc": float(average_precision_score(y, p)),
        "recall_at_precision": float(ok.max()) if len(ok) else 0.0,
        "roc_auc": float(roc_auc_score(y, p)),
        "baseline_pr_auc": float(y.mean()),
    }


@dataclass
class AlgorithmResult:
    name: str
    params: dict[str, Any]
    cv_pr_auc: float
    test: dict[str, float]
    seconds: float
    model: Any = field(repr=False, default=None)
    test_scores: np.ndarray | None = field(repr=False, default=None)


@dataclass
class RunResult:
    """One training run: every algorithm's result, the challenger and the decision."""

    version: str
    path: Path
    results: list[AlgorithmResult]
    best: AlgorithmResult
    promoted: bool
    reason: str
    current_version: str | None
    current_test: dict[str, float] | None
    importances: dict[str, float]
    seconds: float


def search(name: str, estimator: Any, grid: dict[str, list], data: Examples, test: Examples,
           folds: int) -> AlgorithmResult:
    """Grid search with time-ordered CV on `data`; the refit best model scored on `test`."""
    require("sklearn", "intent")
    from sklearn.metrics import get_scorer
    from sklearn.model_selection import GridSearchCV, ParameterGrid, TimeSeriesSplit

    started = time.perf_counter()
    average_precision = get_scorer("average_precision")
    fits = len(ParameterGrid(grid)) * folds
    with Progress(f"intent train: {name}", total=fits, unit="fits") as bar:

        def scored(model: Any, X: np.ndarray, y: np.ndarray) -> float:
            bar.advance()  # one per fold of each candidate: the search's progress
            return average_precision(model, X, y)

        gs = GridSearchCV(estimator, grid, scoring=scored,
                          cv=TimeSeriesSplit(n_splits=folds), n_jobs=1, error_score=0.0)
        with warnings.catch_warnings():  # a fold without a purchase scores 0: expected
            warnings.filterwarnings("ignore", message="No positive class found")
            gs.fit(data.X, data.y)
    scores = gs.best_estimator_.predict_proba(test.X)[:, 1] if len(test) else np.zeros(0)
    took = time.perf_counter() - started
    log.info("%s: CV PR-AUC %.4f with %s (%.1f s)", name, gs.best_score_, gs.best_params_, took)
    return AlgorithmResult(name, dict(gs.best_params_), float(gs.best_score_),
                           metrics(test.y, scores), took, gs.best_estimator_, scores)


def importances(model: Any, test: Examples, names: list[str], seed: int = 0,
                max_rows: int = 3000) -> dict[str, float]:
    """Permutation importance (drop in PR-AUC) on the test split, for any model."""
    require("sklearn", "intent")
    from sklearn.inspection import permutation_importance

    if len(test) == 0 or test.y.min() == test.y.max():
        return {}
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(test), min(len(test), max_rows), replace=False))
    result = permutation_importance(model, test.X[idx], test.y[idx], scoring="average_precision",
                                    n_repeats=3, random_state=seed, n_jobs=1)
    pairs = sorted(zip(names, result.importances_mean, strict=True), key=lambda p: -p[1])
    return {k: float(v) for k, v in pairs}


# --- versions on disk ----------------------------------------------------------------------


def versions(model_dir: Path) -> list[str]:
    """Version folder names, oldest first."""
    if not model_dir.is_dir():
        return []
    return sorted(p.name for p in model_dir.iterdir()
                  if p.is_dir() and p.name.startswith("v") and p.name[1:].isdigit())


def current_version(model_dir: Path) -> str | None:
    path = model_dir / CURRENT
    if not path.is_file():
        return None
    name = path.read_text().strip()
    return name if (model_dir / name / "model.joblib").is_file() else None


def load_model(model_dir: Path, version: str | None = None) -> tuple[Any, dict[str, Any]]:
    """(model, meta) of `version` (default: the current one). FileNotFoundError if none."""
    joblib = require("joblib", "intent")
    require("sklearn", "intent")  # the stored models are scikit-learn's

    version = version or current_version(model_dir)
    if version is None:
        raise FileNotFoundError(f"no promoted intent model in {model_dir}")
    folder = model_dir / version
    meta = json.loads((folder / "meta.json").read_text())
    return joblib.load(folder / "model.joblib"), meta


def _decide(best: AlgorithmResult, test: Examples, model_dir: Path
            ) -> tuple[bool, str, str | None, dict[str, float] | None]:
    current = current_version(model_dir)
    if current is None:
        return True, "no current model", None, None
    model, meta = load_model(model_dir, current)
    if meta.get("feature_names") != test.feature_names:
        return True, f"current {current} uses other features", current, None
    theirs = metrics(test.y, model.predict_proba(test.X)[:, 1]) if len(test) else None
    ours = best.test.get("pr_auc", float("nan"))
    if theirs is None or not np.isfinite(ours):
        return False, "no test rows with both classes to compare on", current, theirs
    if not np.isfinite(theirs["pr_auc"]) or ours > theirs["pr_auc"]:
        return True, (f"test PR-AUC {ours:.4f} beats current {current}'s "
                      f"{theirs['pr_auc']:.4f} on the same test split"), current, theirs
    return False, (f"test PR-AUC {ours:.4f} does not beat current {current}'s "
                   f"{theirs['pr_auc']:.4f}"), current, theirs


def train(split: Split, model_dir: Path, grid: str = "full", folds: int = 4, seed: int = 0,
          settings: dict[str, Any] | None = None, only: list[str] | None = None) -> RunResult:
    """Search every algorithm (or `only` these), pick the challenger, decide promotion, save
    a new version."""
    joblib = require("joblib", "intent")

    started = time.perf_counter()
    data, test = split.train, split.test
    if len(data) == 0 or data.y.min() == data.y.max():
        raise ValueError(f"the training split needs both classes: {len(data)} rows, "
                         f"{int(data.y.sum())} positive")
    folds = max(2, min(folds, int(data.y.sum())))
    candidates = algorithms(grid, seed)
    unknown = sorted(set(only or []) - set(candidates))
    if unknown:
        raise ValueError(f"unknown algorithm(s) {', '.join(unknown)} "
                         f"(known: {', '.join(candidates)})")
    results = [search(name, est, g, data, test, folds)
               for name, (est, g) in candidates.items() if not only or name in only]
    best = max(results, key=lambda r: r.cv_pr_auc)
    promoted, reason, current, current_test = _decide(best, test, model_dir)
    imp = importances(best.model, test, data.feature_names, seed)

    existing = versions(model_dir)
    number = int(existing[-1][1:]) + 1 if existing else 1
    version = f"v{number:04d}"
    folder = model_dir / version
    folder.mkdir(parents=True)
    joblib.dump(best.model, folder / "model.joblib")
    np.savez_compressed(folder / "train_features.npz", X=data.X, y=data.y,
                        names=np.array(data.feature_names))
    seconds = time.perf_counter() - started
    meta = {
        "version": version,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "algorithm": best.name,
        "params": best.params,
        "selection_metric": "PR-AUC (average precision), time-ordered CV",
        "cv_pr_auc": best.cv_pr_auc,
        "test": best.test,
        "promoted": promoted,
        "decision": reason,
        "compared_with": current,
        "compared_test": current_test,
        "feature_names": data.feature_names,
        "data": {
            "first_event": split.first.isoformat(), "last_event": split.last.isoformat(),
            "cutoff": split.cutoff.isoformat(), "events": split.events,
            "train_rows": len(data), "train_positive": int(data.y.sum()),
            "test_rows": len(test), "test_positive": int(test.y.sum()),
        },
        "settings": settings or {},
        "algorithms": {r.name: {"params": r.params, "cv_pr_auc": r.cv_pr_auc, "test": r.test,
                                "seconds": r.seconds} for r in results},
        "importances": imp,
        "train_seconds": seconds,
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=2, default=str))
    if promoted:
        tmp = model_dir / (CURRENT + ".tmp")
        tmp.write_text(version + "\n")
        tmp.replace(model_dir / CURRENT)  # atomic: a scorer never reads half a name
    log.info("version %s: %s, %s", version, "promoted" if promoted else "kept aside", reason)
    return RunResult(version, folder, results, best, promoted, reason, current, current_test,
                     imp, seconds)
