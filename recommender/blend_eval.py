"""Offline evaluation of the blend and of each of its sources (`flashrec evaluate --blend`).

Protocol as recommender/evaluation.py (every prefix of every test session is a question;
consecutive repeats count). The sources are built from the training clicks only, as a
nightly job would: VMIS-kNN over the training sessions, a co-occurrence table over them
(`blend.cooccurrence`), the most clicked items of the training data's last day (in place of
trending-now: the files have no categories), and the session's own items. Intervals: 95%
percentile bootstrap over test sessions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from recommender import blend
from recommender.blend_tuning import CandidateLog, search
from recommender.sessions_io import Sessions, group_sessions
from udfs.params import VmisParams

MODELS = ("vmis", "coview", "popular", "session_items", "blend")
SESSION_ITEMS = 20  # the session's newest clicks the blend sees
DAY_S = 86_400.0


@dataclass
class Sources:
    """What the blend reads, built from the training clicks."""

    index: Any
    coview: dict[Any, list[Any]]
    popular: list[Any]
    vmis: VmisParams
    cutoff: int

    @classmethod
    def build(cls, train: Sessions, vmis: VmisParams, cutoff: int = 20,
              min_sessions: int = 3) -> Sources:  # fmt: skip
        from udfs.vmisknn import VMISIndex

        index = VMISIndex.build(train.session_ids, train.item_ids, train.timestamps, m=vmis.m)
        sessions = [items.tolist() for _, items in group_sessions(train)]
        coview = blend.cooccurrence(sessions, min_sessions, cutoff)
        last_day = train.timestamps >= train.timestamps.max() - DAY_S
        items, counts = np.unique(train.item_ids[last_day], return_counts=True)
        order = np.lexsort((np.arange(len(items)), -counts))[:cutoff]
        return cls(index, coview, items[order].tolist(), vmis, cutoff)

    def lists(self, prefix: list[Any]) -> tuple[list[tuple[Any, float]], list[Any], list[Any]]:
        """VMIS-kNN's scored list (twice the cut-off deep), co-view and popular for a prefix."""
        v = self.vmis
        vmis = self.index.recommend(prefix, k=v.k, how_many=2 * self.cutoff,
                                    max_items_in_session=v.max_items_in_session,
                                    idf_weighting=v.idf_weighting)  # fmt: skip
        return vmis, self.coview.get(prefix[-1], []), self.popular


@dataclass
class Ranks:
    """Per question: its test session and each model's rank of the target (0: not in top)."""

    session: np.ndarray
    ranks: dict[str, np.ndarray]


def _rank(top: list[Any], target: Any) -> int:
    try:
        return top.index(target) + 1
    except ValueError:
        return 0


def run(sources: Sources, test: Sessions, weights: blend.BlendWeights,
        log: CandidateLog | None = None) -> Ranks:  # fmt: skip
    """Every question of `test` to every model (and, with `log`, its candidates logged)."""
    c = sources.cutoff
    sessions: list[int] = []
    ranks: dict[str, list[int]] = {m: [] for m in MODELS}
    for s, (_, items) in enumerate(group_sessions(test)):
        clicks = items.tolist()
        for t in range(1, len(clicks)):
            prefix, target = clicks[max(0, t - SESSION_ITEMS) : t], clicks[t]
            vmis, coview, popular = sources.lists(prefix)
            own = list(dict.fromkeys(reversed(prefix)))
            if log is not None:
                log.add(vmis, coview, popular, prefix, target)
            mixed = blend.blend(vmis, coview, popular, prefix, c, weights)
            tops = {"vmis": [i for i, _ in vmis[:c]], "coview": coview, "popular": popular,
                    "session_items": own[:c], "blend": [i for i, _ in mixed]}  # fmt: skip
            sessions.append(s)
            for name, top in tops.items():
                ranks[name].append(_rank(top, target))
    return Ranks(np.asarray(sessions, dtype=np.int64),
                 {m: np.asarray(r, dtype=np.int64) for m, r in ranks.items()})  # fmt: skip


def tune(
    train: Sessions, valid: Sessions, vmis: VmisParams, cutoff: int = 20,
    min_sessions: tuple[int, ...] = (1, 2, 3),
) -> tuple[blend.BlendWeights, int, Any]:  # fmt: skip
    """The weights and co-occurrence threshold with the best MRR on the validation split."""
    best = None
    for n in min_sessions:
        log = CandidateLog()
        run(Sources.build(train, vmis, cutoff, n), valid, blend.DEFAULT, log)
        top = search(log, cutoff)[0]
        if best is None or round(top.mrr, 4) > round(best[2].mrr, 4):
            best = (top.weights, n, top)
    assert best is not None
    return best


def summary(r: Ranks, replicates: int = 1000, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Per model: MRR and HitRate with 95% session-bootstrap intervals."""
    _, sid = np.unique(r.session, return_inverse=True)
    n_s = int(sid.max()) + 1 if len(sid) else 0
    count = np.bincount(sid, minlength=n_s).astype(np.float64)
    rng = np.random.default_rng(seed)
    draws = [np.bincount(rng.integers(0, n_s, n_s), minlength=n_s) for _ in range(replicates)]
    weights = np.asarray(draws, dtype=np.float64) if n_s else np.zeros((0, 0))
    out: dict[str, dict[str, Any]] = {}
    for name, ranks in r.ranks.items():
        out[name] = {}
        for metric, per in (("mrr", np.where(ranks > 0, 1.0 / np.maximum(ranks, 1), 0.0)),
                            ("hit_rate", (ranks > 0).astype(np.float64))):  # fmt: skip
            sums = np.bincount(sid, weights=per, minlength=n_s)
            value = float(sums.sum() / count.sum()) if n_s else None
            ci = None
            if n_s and replicates:
                boot = (weights @ sums) / (weights @ count)
                lo, hi = np.percentile(boot, [2.5, 97.5])
                ci = [round(float(lo), 5), round(float(hi), 5)]
            out[name][metric] = {"value": None if value is None else round(value, 5), "ci": ci}
    return out
