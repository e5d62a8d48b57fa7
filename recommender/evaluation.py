"""Offline evaluation of VMIS-kNN with the Serenade / session-rec protocol.

Every test session is ordered by time; every prefix position t >= 1 is one evaluation: the
input is the last `max_items_in_session` items of items[:t], the target is items[t], and the
remaining items are items[t:].
  MRR@c       1 / rank of the target in the top c (0 when absent)
  HitRate@c   1 when the target is in the top c
  Precision@c |top c  intersect  set(items[t:])| / c
Each is averaged over all evaluations (Serenade's evaluator; session-rec's `MRR`, `HitRate`
and `Precision` classes compute the same). Recommendations are the top `how_many` items; the
metrics look at the first min(how_many, c).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from recommender.sessions_io import Sessions, group_sessions
from udfs.params import VmisParams

CHUNK = 2048  # evaluations per kernel call (one progress step)


_VMIS = VmisParams()


@dataclass(frozen=True)
class EvalParams:
    """VMIS-kNN's parameters (defaults: udfs.params.VmisParams) and the metrics' cut-off."""

    m: int = _VMIS.m
    k: int = _VMIS.k
    max_items_in_session: int = _VMIS.max_items_in_session
    how_many: int = _VMIS.how_many
    cutoff: int = 20
    idf_weighting: float = _VMIS.idf_weighting

    @classmethod
    def of(cls, vmis: VmisParams, cutoff: int = 20) -> EvalParams:
        """These VMIS-kNN parameters with this cut-off."""
        return cls(cutoff=cutoff, **asdict(vmis))


@dataclass
class EvalResult:
    mrr: float | None
    hit_rate: float | None
    precision: float | None
    evaluations: int
    cutoff: int
    params: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The keys of `flashrec evaluate --json`."""
        out = asdict(self)
        out.pop("info")
        return out


@dataclass
class Cases:
    """All evaluations of a test set as flat arrays of item codes (unknown items negative)."""

    input_offsets: np.ndarray  # evaluation e's input is codes[input_offsets[e]:...[e + 1]]
    input_codes: np.ndarray
    targets: np.ndarray
    rest_offsets: np.ndarray  # remaining items of evaluation e
    rest_codes: np.ndarray
    test_sessions: int

    def __len__(self) -> int:
        return len(self.targets)


def build_cases(index: Any, test: Sessions, max_items_in_session: int) -> Cases:
    """Every prefix of every test session, encoded with the index's item codes."""
    sessions = group_sessions(test)
    unknown: dict[Any, int] = {}
    known = index.items

    def code(item: Any) -> int:
        c = known.code(item)
        if c is None:
            c = unknown.setdefault(item, -1 - len(unknown))
        return c

    in_off, in_codes, targets, rest_off, rest_codes = [0], [], [], [0], []
    for _, items in sessions:
        codes = [code(i) for i in items.tolist()]
        for t in range(1, len(codes)):
            lo = max(0, t - max_items_in_session) if max_items_in_session > 0 else 0
            in_codes.extend(codes[lo:t])
            in_off.append(len(in_codes))
            targets.append(codes[t])
            rest_codes.extend(codes[t:])
            rest_off.append(len(rest_codes))
    as_i64 = lambda xs: np.asarray(xs, dtype=np.int64)  # noqa: E731
    return Cases(
        as_i64(in_off), as_i64(in_codes), as_i64(targets), as_i64(rest_off), as_i64(rest_codes),
        len(sessions),
    )  # fmt: skip


def score_chunk(
    counts: np.ndarray, items: np.ndarray, cases: Cases, lo: int, cutoff: int
) -> tuple[float, float, float]:
    """(sum of reciprocal ranks, hits, sum of precisions) of evaluations lo.. lo+len(counts)."""
    rr = hits = prec = 0.0
    for row, n in enumerate(counts.tolist()):
        e = lo + row
        top = items[row, : min(n, cutoff)].tolist()
        target = int(cases.targets[e])
        if target in top:
            rr += 1.0 / (top.index(target) + 1)
            hits += 1.0
        rest = cases.rest_codes[cases.rest_offsets[e] : cases.rest_offsets[e + 1]]
        prec += len(set(top).intersection(rest.tolist())) / cutoff
    return rr, hits, prec


def evaluate(
    index: Any,
    test: Sessions,
    params: EvalParams,
    progress: Callable[[int, int], None] | None = None,
) -> EvalResult:
    """Metrics of `index` (a udfs.vmisknn.VMISIndex) on a test set."""
    if params.cutoff < 1:
        raise ValueError("cutoff must be at least 1")
    started = time.perf_counter()
    cases = build_cases(index, test, params.max_items_in_session)
    n = len(cases)
    rr = hits = prec = 0.0
    for lo in range(0, n, CHUNK):
        hi = min(n, lo + CHUNK)
        offsets = cases.input_offsets[lo : hi + 1] - cases.input_offsets[lo]
        codes = cases.input_codes[cases.input_offsets[lo] : cases.input_offsets[hi]]
        counts, items, _ = index.recommend_codes(
            offsets, codes, k=params.k, how_many=params.how_many,
            max_items_in_session=params.max_items_in_session,
            idf_weighting=params.idf_weighting, m=params.m,
        )  # fmt: skip
        a, b, c = score_chunk(counts, items, cases, lo, params.cutoff)
        rr, hits, prec = rr + a, hits + b, prec + c
        if progress is not None:
            progress(hi, n)
    elapsed = time.perf_counter() - started
    mean = (lambda total: total / n) if n else (lambda total: None)
    return EvalResult(
        mrr=mean(rr),
        hit_rate=mean(hits),
        precision=mean(prec),
        evaluations=n,
        cutoff=params.cutoff,
        params=asdict(params),
        info={"test_sessions": cases.test_sessions, "seconds": elapsed},
    )


def grid_search(
    train: Sessions,
    valid: Sessions,
    ms: list[int],
    ks: list[int],
    max_items: list[int],
    cutoff: int = 20,
) -> list[EvalResult]:
    """Evaluate every (m, k, max_items) on a validation split, best MRR first. The index
    keeps every session per item, so one build serves all m (m only limits reading)."""
    from udfs.vmisknn import VMISIndex

    index = VMISIndex.build(train.session_ids, train.item_ids, train.timestamps, m=max(ms))
    results = [
        evaluate(index, valid, EvalParams(m=m, k=k, max_items_in_session=n, cutoff=cutoff))
        for m in ms
        for k in ks
        if k <= m
        for n in max_items
    ]
    return sorted(results, key=lambda r: -(r.mrr or 0.0))
