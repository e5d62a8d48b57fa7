"""Choosing the blend's weights on validation data: the candidates of every validation
question are logged once, then each weight setting of a grid is scored on the log at once
(HitRate and MRR at the cut-off), with the rank rule of `recommender.blend.blend`."""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from recommender.blend import ROUND, SOURCES, BlendWeights, features

SCORED = SOURCES.index("repeat")  # the sources before `repeat` are weighted values
GRID = {
    "coview": (0.0, 0.25, 0.5, 1.0, 2.0),
    "trending": (0.0, 0.1, 0.25, 0.5, 1.0),
    "popular": (0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0),
    "repeat": (0.0, 0.25, 0.5, 1.0, 2.0),
    "decay": (0.5, 0.8),
    "repeat_newest": (False, True),
}


@dataclass
class CandidateLog:
    """Per validation question: its candidates' source values, their ages in the session
    (-1: not in it), whether each is the newest item, and which one is the target."""

    question: list[np.ndarray] = field(default_factory=list)
    values: list[np.ndarray] = field(default_factory=list)
    age: list[np.ndarray] = field(default_factory=list)
    target: list[int] = field(default_factory=list)  # position in the question's rows, or -1
    count: int = 0

    def add(self, vmis: Sequence[tuple[Hashable, float]], coview: Sequence[Hashable],
            trending: Sequence[Hashable], session: Sequence[Hashable],
            target: Hashable, popular: Sequence[tuple[Hashable, float]] = ()) -> None:  # fmt: skip
        """One question: the sources' lists, the session's items (oldest first), the target."""
        items, values = features(vmis, coview, trending, (), 1.0, True, popular)
        ages: dict[Hashable, int] = {}
        for item in reversed(session):
            ages.setdefault(item, len(ages))
        pos = {item: i for i, item in enumerate(items)}
        extra = [item for item in ages if item not in pos]
        items = items + extra
        values = np.vstack([values, np.zeros((len(extra), values.shape[1]))])
        age = np.asarray([ages.get(item, -1) for item in items], dtype=np.int32)
        self.question.append(np.full(len(items), self.count, dtype=np.int32))
        self.values.append(values[:, :SCORED].astype(np.float64))
        self.age.append(age)
        self.target.append(items.index(target) if target in pos or target in ages else -1)
        self.count += 1


@dataclass(frozen=True)
class Score:
    weights: BlendWeights
    hit_rate: float
    mrr: float


class Scorer:
    """Every question of a log scored under any weights, vectorised."""

    def __init__(self, log: CandidateLog, cutoff: int = 20) -> None:
        self.n = log.count
        self.cutoff = cutoff
        self.q = np.concatenate(log.question) if log.question else np.zeros(0, np.int32)
        self.v = np.concatenate(log.values) if log.values else np.zeros((0, SCORED), np.float64)
        self.age = np.concatenate(log.age) if log.age else np.zeros(0, np.int32)
        starts = np.zeros(self.n, dtype=np.int64)
        if self.n:
            starts[1:] = np.cumsum([len(a) for a in log.question])[:-1]
        self.order = np.arange(len(self.q)) - starts[self.q] if self.n else np.zeros(0)
        target = np.asarray(log.target, dtype=np.int64)
        self.has = target >= 0
        self.t_row = starts[self.has] + target[self.has]

    def ranks(self, w: BlendWeights) -> np.ndarray:
        """Each question's rank of its target under `w` (0: not in the top cut-off)."""
        s = self.v.astype(np.float64) @ np.asarray([w.vmis, w.coview, w.trending, w.popular])
        in_session = self.age >= 0
        newest = self.age == 0
        s = s + np.where(in_session, w.repeat * np.power(w.decay, np.maximum(self.age, 0)), 0)
        s = np.round(s, ROUND)
        valid = (s > 0) & (w.repeat_newest | ~newest)
        out = np.zeros(self.n, dtype=np.int64)
        if not self.has.any():
            return out
        t_q = self.q[self.t_row]
        t_s = np.full(self.n, np.nan)
        t_s[t_q] = s[self.t_row]
        t_o = np.zeros(self.n, dtype=np.int64)
        t_o[t_q] = self.order[self.t_row]
        t_ok = np.zeros(self.n, dtype=bool)
        t_ok[t_q] = valid[self.t_row]
        mine = t_s[self.q]
        ahead = valid & ((s > mine) | ((s == mine) & (self.order < t_o[self.q])))
        rank = 1 + np.bincount(self.q, weights=ahead, minlength=self.n).astype(np.int64)
        rank[~t_ok] = 0
        rank[rank > self.cutoff] = 0
        return rank

    def score(self, w: BlendWeights) -> Score:
        r = self.ranks(w)
        hit = float((r > 0).mean()) if self.n else 0.0
        mrr = float(np.where(r > 0, 1.0 / np.maximum(r, 1), 0.0).mean()) if self.n else 0.0
        return Score(w, hit, mrr)


def settings(grid: dict[str, Iterable[object]] | None = None) -> list[BlendWeights]:
    """Every weight setting of the grid (vmis fixed at 1: only ratios matter); settings that
    differ only in a rule with no effect (decay or repeat_newest with repeat 0) once."""
    grid = grid or GRID
    names = list(grid)
    out, seen = [], set()
    for combo in itertools.product(*(tuple(grid[n]) for n in names)):
        w = BlendWeights(**dict(zip(names, combo, strict=True)))  # type: ignore[arg-type]
        if w.repeat == 0:
            w = replace(w, repeat=0.0, decay=BlendWeights.decay, repeat_newest=False)
        if w not in seen:
            seen.add(w)
            out.append(w)
    return out


def search(log: CandidateLog, cutoff: int = 20,
           grid: dict[str, Iterable[object]] | None = None) -> list[Score]:  # fmt: skip
    """Every setting scored on the log, best first: MRR, then HitRate, then the simpler
    setting (fewer sources on)."""
    scorer = Scorer(log, cutoff)
    grid = dict(grid or GRID)
    if not scorer.v[:, SOURCES.index("popular")].any():  # no popular candidates logged
        grid["popular"] = (0.0,)
    results = [scorer.score(w) for w in settings(grid)]

    def simpler(r: Score) -> int:
        w = r.weights
        return sum(x > 0 for x in (w.coview, w.trending, w.popular, w.repeat))

    results.sort(key=lambda r: (-round(r.mrr, 4), -round(r.hit_rate, 4), simpler(r)))
    return results
