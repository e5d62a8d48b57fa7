"""The hash table and the heap of the VMIS-kNN kernels (udfs/kernel.py).

Table: int64 keys (>= 0, EMPTY marks a free slot) in an array of 2**bits slots; the values
sit in a parallel array (any dtype) at the same slot. Fibonacci hashing (the key times
2**64 / phi, top `bits` bits), linear probing, deletion by backward shift (no tombstones).
`table_bits(n)` sizes a table for n keys at most half full.

Heap: a binary heap of int64 entries with the weakest at the root. `weaker(a, b, data)` is
a Numba function that says whether entry a ranks below entry b, reading the tuple of arrays
`data`; each ordering compiles its own copy of the heap functions.

Numba's cache of a kernel that inlines these functions does not notice edits here: touch
udfs/kernel.py after changing this file.
"""

from __future__ import annotations

import numpy as np
from numba import njit

EMPTY = -1
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@njit(cache=True, inline="always")
def table_bits(n):
    """log2 of the slots for up to n keys: at least 2n slots, 16 at least."""
    bits = 4
    while (1 << bits) < 2 * n:
        bits += 1
    return bits


@njit(cache=True, inline="always")
def home(key, shift):
    """The key's first slot; shift = 64 - bits."""
    return np.int64((np.uint64(key) * _GOLDEN) >> shift)


@njit(cache=True, inline="always")
def probe(keys, key, shift, mask):
    """Index of `key` in the table, or of the empty slot where it would go."""
    i = home(key, shift)
    while True:
        found = keys[i]
        if found == key or found == EMPTY:
            return i
        i = (i + 1) & mask


@njit(cache=True, inline="always")
def delete(keys, vals, i, shift, mask):
    """Remove the entry at slot i, moving back later entries of its probe run."""
    j = i
    while True:
        j = (j + 1) & mask
        if keys[j] == EMPTY:
            break
        first = home(keys[j], shift)
        if i <= j:
            stays = i < first <= j
        else:
            stays = first > i or first <= j
        if not stays:
            keys[i] = keys[j]
            vals[i] = vals[j]
            i = j
    keys[i] = EMPTY


@njit(cache=True, inline="always")
def heap_push(heap, n, x, weaker, data):
    """Add entry x to the heap held in heap[:n] (it then holds n + 1 entries)."""
    heap[n] = x
    i = n
    while i > 0:
        parent = (i - 1) // 2
        if weaker(heap[i], heap[parent], data):
            heap[i], heap[parent] = heap[parent], heap[i]
            i = parent
        else:
            break


@njit(cache=True, inline="always")
def heap_sift_down(heap, n, weaker, data):
    """Restore the heap of n entries after its root was replaced or now ranks higher."""
    i = 0
    while True:
        left = 2 * i + 1
        if left >= n:
            break
        small = left
        if left + 1 < n and weaker(heap[left + 1], heap[left], data):
            small = left + 1
        if weaker(heap[small], heap[i], data):
            heap[i], heap[small] = heap[small], heap[i]
            i = small
        else:
            break
