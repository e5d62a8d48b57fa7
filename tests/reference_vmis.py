"""Plain-Python VMIS-kNN, written straight from the algorithm's description (no numpy, no
Numba): the yardstick for udfs.vmisknn in tests and bench/kernel.py.

Same documented choices as the kernel: a session's timestamp is its most recent click; on
equal timestamps the session seen later (in input order) counts as more recent.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any


class ReferenceVMIS:
    """Build from clicks (session id, item id, time); recommend like Serenade."""

    def __init__(
        self,
        clicks: Iterable[tuple[Any, Any, float]],
        m: int = 500,
        max_session_length: int | None = None,
    ) -> None:
        self.m = m
        items_of: dict[Any, set] = {}
        time_of: dict[Any, float] = {}
        rank_of: dict[Any, int] = {}  # arrival order, breaks timestamp ties
        for session, item, t in clicks:
            if session not in rank_of:
                rank_of[session] = len(rank_of)
                items_of[session] = set()
                time_of[session] = t
            items_of[session].add(item)
            time_of[session] = max(time_of[session], t)
        if max_session_length is None:
            max_session_length = _percentile_cut([len(v) for v in items_of.values()])
        self.max_session_length = max_session_length
        kept = [s for s in items_of if len(items_of[s]) <= max_session_length]
        self.session_items = {s: items_of[s] for s in kept}
        self.session_time = {s: time_of[s] for s in kept}
        self.session_rank = {s: rank_of[s] for s in kept}
        holders: dict[Any, list] = {}
        for s in kept:
            for item in items_of[s]:
                holders.setdefault(item, []).append(s)
        pairs = sum(len(v) for v in self.session_items.values())
        self.idf = {item: math.log(pairs / len(ss)) for item, ss in holders.items()}
        self.recent = {
            item: sorted(ss, key=self._age, reverse=True) for item, ss in holders.items()
        }

    def _age(self, s: Any) -> tuple[float, int]:
        return (self.session_time[s], self.session_rank[s])

    def recommend(
        self,
        session: Sequence[Any],
        k: int = 500,
        how_many: int = 21,
        max_items_in_session: int = 2,
        idf_weighting: float = 1.0,
        m: int | None = None,
    ) -> list[tuple[Any, float]]:
        m = m or self.m
        s = list(session)
        if max_items_in_session > 0:
            s = s[-max_items_in_session:]
        if not s:
            return []
        length, n_unique = len(s), len(set(s))
        reversed_s = s[::-1]

        # neighbours: decayed similarity, m most recent candidates
        similarity: dict[Any, float] = {}
        visited: set = set()
        for pos, item in enumerate(reversed_s):
            if item in visited:
                continue
            visited.add(item)
            decay = (length - pos) / n_unique
            for h in self.recent.get(item, [])[:]:
                if h in similarity:
                    similarity[h] += decay
                elif len(similarity) < m:
                    similarity[h] = decay
                else:
                    oldest = min(similarity, key=self._age)
                    if self.session_time[h] > self.session_time[oldest]:
                        del similarity[oldest]
                        similarity[h] = decay
                    else:
                        break
        ranked = sorted(similarity, key=lambda h: (similarity[h], *self._age(h)), reverse=True)
        neighbours = ranked[:k]

        # item scores
        scores: dict[Any, float] = {}
        for n in neighbours:
            items = self.session_items[n]
            p = next(i for i, item in enumerate(reversed_s) if item in items) + 1
            lam = 1.0 - 0.1 * p if p < 100 else 0.0
            sim = similarity[n]
            for item in items:
                idf = self.idf[item] * idf_weighting
                scores[item] = scores.get(item, 0.0) + (lam * idf * sim if idf > 0 else lam * sim)
        scores.pop(s[-1], None)
        return sorted(scores.items(), key=lambda kv: -kv[1])[:how_many]


def _percentile_cut(lengths: list[int]) -> int:
    """99.5th percentile (linear interpolation), rounded half up."""
    if not lengths:
        return 0
    v = sorted(lengths)
    x = 0.995 * (len(v) - 1)
    lo = int(math.floor(x))
    hi = min(lo + 1, len(v) - 1)
    return int(math.floor(v[lo] + (v[hi] - v[lo]) * (x - lo) + 0.5))
