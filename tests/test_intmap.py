"""The Numba count table against a Python dict: random adds and removals (keys crowded into
a small table so probe runs wrap around its end), growth mid-stream, and no rebuild at a
steady size."""

from __future__ import annotations

import random

import numba as nb
import numpy as np

from recommender.engine import intmap


@nb.njit(cache=True)
def _apply(cells, meta, ks, deltas):
    out = np.empty(ks.shape[0], np.int64)
    for i in range(ks.shape[0]):
        out[i] = intmap.add(cells, meta, ks[i], deltas[i])
    return out


def _contents(table: intmap.IntCounts) -> dict[int, int]:
    ks, vs = table.at_least(-(2**62))
    return dict(zip(ks.tolist(), vs.tolist(), strict=True))


def test_matches_a_dict() -> None:
    rng = random.Random(5)
    table = intmap.IntCounts(16)
    expected: dict[int, int] = {}
    for step in range(400):
        universe = 40 if step < 200 else 3000  # crowded first, then it must grow
        n = rng.randint(1, 30)
        ks = [rng.randrange(universe) * 7919 for _ in range(n)]
        deltas = [rng.choice([1, 1, 2, -1]) for _ in range(n)]
        if not intmap.room(table.cells, table.meta, n):
            table.grow(n)
        got = _apply(table.cells, table.meta, np.array(ks, np.int64),
                     np.array(deltas, np.int64))  # fmt: skip
        for k, d, g in zip(ks, deltas, got.tolist(), strict=True):
            left = expected.get(k, 0) + d
            assert g == left
            if left:
                expected[k] = left
            else:
                expected.pop(k, None)
        assert _contents(table) == expected
        assert len(table) == len(expected)
        probe = np.array(ks + [123456789], np.int64)
        assert table.get(probe).tolist() == [expected.get(k, 0) for k in probe.tolist()]
    assert table.cells.shape[0] > 16


def test_no_rebuild_at_a_steady_size() -> None:
    """A sliding window of keys (each inserted once, removed later) keeps the table's
    arrays: the churn that makes a typed Dict rebuild itself does not grow this one."""
    table = intmap.IntCounts(4096)
    cells = table.cells
    ones = np.ones(1000, np.int64)
    for start in range(0, 200_000, 1000):
        _apply(table.cells, table.meta, np.arange(start, start + 1000), ones)
        if start >= 2000:
            old = np.arange(start - 2000, start - 1000)
            _apply(table.cells, table.meta, old, -ones)
        assert len(table) <= 2000
    assert table.cells is cells and len(table) == 2000
    assert _contents(table) == dict.fromkeys(range(198_000, 200_000), 1)
