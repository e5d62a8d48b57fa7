"""An int64 -> int64 count table for Numba kernels that does not rebuild at a steady size.

Numba's typed Dict has CPython's layout: every new key is appended to an entries array and a
deleted key leaves a hole, so under a sliding window's churn the array fills and the whole
table is rebuilt even though its size holds (measured: ~0.3 s at 2.6M keys, every ~3M new
keys). Here: open addressing with linear probing and deletion by backward shift (no
tombstones), so a key that goes makes room for the next; the table doubles only when its
keys pass 70% of its slots. Keys must be >= 0; a count that reaches 0 removes its key.

State is three arrays (slots' keys, slots' counts, [number of keys]) that the kernels take as
arguments; `IntCounts` holds them and grows them between kernel calls.
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
def slot(keys: np.ndarray, k: int) -> int:
    """The slot holding `k`, or the empty slot where it would go."""
    mask = keys.shape[0] - 1
    i = _home(k, mask)
    while keys[i] != k and keys[i] != EMPTY:
        i = (i + 1) & mask
    return i


@nb.njit(cache=True)
def get(keys: np.ndarray, vals: np.ndarray, k: int) -> int:
    i = slot(keys, k)
    return vals[i] if keys[i] == k else 0


@nb.njit(cache=True)
def room(keys: np.ndarray, meta: np.ndarray, extra: int) -> bool:
    """Whether `extra` more keys fit without passing the load limit."""
    return meta[0] + extra <= MAX_LOAD * keys.shape[0]


@nb.njit(cache=True)
def add(keys: np.ndarray, vals: np.ndarray, meta: np.ndarray, k: int, delta: int) -> int:
    """counts[k] += delta; returns the new count (0: the key is gone). The caller makes sure
    there is room for a new key (`room`)."""
    i = slot(keys, k)
    if keys[i] == EMPTY:
        if delta == 0:
            return 0
        keys[i] = k
        vals[i] = delta
        meta[0] += 1
        return delta
    n = vals[i] + delta
    if n != 0:
        vals[i] = n
        return n
    _remove_at(keys, vals, i)
    meta[0] -= 1
    return 0


@nb.njit(cache=True)
def _remove_at(keys: np.ndarray, vals: np.ndarray, i: int) -> None:
    """Empty slot i, moving back later keys of its probe run that may not skip the hole."""
    mask = keys.shape[0] - 1
    j = i
    while True:
        j = (j + 1) & mask
        if keys[j] == EMPTY:
            break
        h = _home(keys[j], mask)
        # keys[j] stays only if its home lies cyclically in (i, j]
        if (i <= j and (h <= i or h > j)) or (i > j and h <= i and h > j):
            keys[i] = keys[j]
            vals[i] = vals[j]
            i = j
    keys[i] = EMPTY
    vals[i] = 0


@nb.njit(cache=True)
def _rehash(old_keys: np.ndarray, old_vals: np.ndarray, keys: np.ndarray,
            vals: np.ndarray) -> None:  # fmt: skip
    for i in range(old_keys.shape[0]):
        k = old_keys[i]
        if k != EMPTY:
            j = slot(keys, k)
            keys[j] = k
            vals[j] = old_vals[i]


@nb.njit(cache=True)
def lookup(keys: np.ndarray, vals: np.ndarray, ks: np.ndarray) -> np.ndarray:
    out = np.empty(ks.shape[0], np.int64)
    for i in range(ks.shape[0]):
        out[i] = get(keys, vals, ks[i])
    return out


@nb.njit(cache=True)
def at_least(keys: np.ndarray, vals: np.ndarray, least: int) -> tuple[np.ndarray, np.ndarray]:
    """(keys, counts) of the keys counted at least `least`."""
    hit = (keys != EMPTY) & (vals >= least)
    return keys[hit], vals[hit]


class IntCounts:
    """The arrays of one count table; `keys`, `vals`, `meta` go to the kernels."""

    def __init__(self, capacity: int = 1024) -> None:
        size = 1 << max(4, int(capacity - 1).bit_length())
        self.keys = np.full(size, EMPTY, np.int64)
        self.vals = np.zeros(size, np.int64)
        self.meta = np.zeros(1, np.int64)

    def __len__(self) -> int:
        return int(self.meta[0])

    def grow(self, extra: int = 0) -> None:
        """At least double the slots (more if `extra` more keys would not fit)."""
        size = self.keys.shape[0] * 2
        while self.meta[0] + extra > MAX_LOAD * size:
            size *= 2
        keys, vals = np.full(size, EMPTY, np.int64), np.zeros(size, np.int64)
        _rehash(self.keys, self.vals, keys, vals)
        self.keys, self.vals = keys, vals

    def get(self, ks: np.ndarray) -> np.ndarray:
        return lookup(self.keys, self.vals, ks)

    def at_least(self, least: int) -> tuple[np.ndarray, np.ndarray]:
        return at_least(self.keys, self.vals, least)
