"""An int64 -> int64 count table for Numba kernels that does not rebuild at a steady size.

Numba's typed Dict has CPython's layout: every new key is appended to an entries array and a
deleted key leaves a hole, so under a sliding window's churn the array fills and the whole
table is rebuilt even though its size holds (a pause that grows with the number of
keys). Here: open addressing with linear probing and deletion by backward shift (no
tombstones), so a key that goes makes room for the next; the table doubles only when its
keys pass 70% of its slots. Keys must be >= 0; a count that reaches 0 removes its key.

State is two arrays that the kernels take as arguments: the slots (one row of key and count
each: one cache line per probe) and [number of keys]; `IntCounts` holds them and grows them
between kernel calls.
"""

from __future__ import annotations

import numba as nb
import numpy as np

EMPTY = -1
MAX_LOAD = 0.7


@nb.njit(cache=True, inline="always")
def _home(k: int, mask: int) -> int:
    """The key's first slot (splitmix64's finalizer: neighbouring keys spread out)."""
    x = np.uint64(k)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x = x ^ (x >> np.uint64(31))
    return np.int64(x & np.uint64(mask))


@nb.njit(cache=True)
def slot(cells: np.ndarray, k: int) -> int:
    """The slot holding `k`, or the empty slot where it would go."""
    mask = cells.shape[0] - 1
    i = _home(k, mask)
    while cells[i, 0] != k and cells[i, 0] != EMPTY:
        i = (i + 1) & mask
    return i


@nb.njit(cache=True)
def get(cells: np.ndarray, k: int) -> int:
    i = slot(cells, k)
    return cells[i, 1] if cells[i, 0] == k else 0


@nb.njit(cache=True)
def room(cells: np.ndarray, meta: np.ndarray, extra: int) -> bool:
    """Whether `extra` more keys fit without passing the load limit."""
    return meta[0] + extra <= MAX_LOAD * cells.shape[0]


@nb.njit(cache=True)
def add(cells: np.ndarray, meta: np.ndarray, k: int, delta: int) -> int:
    """counts[k] += delta; returns the new count (0: the key is gone). The caller makes sure
    there is room for a new key (`room`)."""
    i = slot(cells, k)
    if cells[i, 0] == EMPTY:
        if delta == 0:
            return 0
        cells[i, 0] = k
        cells[i, 1] = delta
        meta[0] += 1
        return delta
    n = cells[i, 1] + delta
    if n != 0:
        cells[i, 1] = n
        return n
    _remove_at(cells, i)
    meta[0] -= 1
    return 0


@nb.njit(cache=True)
def _remove_at(cells: np.ndarray, i: int) -> None:
    """Empty slot i, moving back later keys of its probe run that may not skip the hole."""
    mask = cells.shape[0] - 1
    j = i
    while True:
        j = (j + 1) & mask
        if cells[j, 0] == EMPTY:
            break
        h = _home(cells[j, 0], mask)
        # cells[j] stays only if its home lies cyclically in (i, j]
        if (i <= j and (h <= i or h > j)) or (i > j and h <= i and h > j):
            cells[i, 0] = cells[j, 0]
            cells[i, 1] = cells[j, 1]
            i = j
    cells[i, 0] = EMPTY
    cells[i, 1] = 0


@nb.njit(cache=True)
def _rehash(old: np.ndarray, cells: np.ndarray) -> None:
    for i in range(old.shape[0]):
        k = old[i, 0]
        if k != EMPTY:
            j = slot(cells, k)
            cells[j, 0] = k
            cells[j, 1] = old[i, 1]


@nb.njit(cache=True)
def lookup(cells: np.ndarray, ks: np.ndarray) -> np.ndarray:
    out = np.empty(ks.shape[0], np.int64)
    for i in range(ks.shape[0]):
        out[i] = get(cells, ks[i])
    return out


@nb.njit(cache=True)
def at_least(cells: np.ndarray, least: int) -> tuple[np.ndarray, np.ndarray]:
    """(keys, counts) of the keys counted at least `least`."""
    hit = (cells[:, 0] != EMPTY) & (cells[:, 1] >= least)
    return cells[hit, 0], cells[hit, 1]


def _empty(size: int) -> np.ndarray:
    cells = np.zeros((size, 2), np.int64)
    cells[:, 0] = EMPTY
    return cells


class IntCounts:
    """The arrays of one count table; `cells` and `meta` go to the kernels."""

    def __init__(self, capacity: int = 1024) -> None:
        self.cells = _empty(1 << max(4, int(capacity - 1).bit_length()))
        self.meta = np.zeros(1, np.int64)

    def __len__(self) -> int:
        return int(self.meta[0])

    def grow(self, extra: int = 0) -> None:
        """At least double the slots (more if `extra` more keys would not fit)."""
        size = self.cells.shape[0] * 2
        while self.meta[0] + extra > MAX_LOAD * size:
            size *= 2
        cells = _empty(size)
        _rehash(self.cells, cells)
        self.cells = cells

    def get(self, ks: np.ndarray) -> np.ndarray:
        return lookup(self.cells, ks)

    def at_least(self, least: int) -> tuple[np.ndarray, np.ndarray]:
        return at_least(self.cells, least)
