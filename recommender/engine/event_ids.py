"""Which event_ids the store already holds, answered without scanning the store.

Duplicate detection used to join each batch with every stored event (a scan of millions of
ids per batch). This index keeps DuckDB's 64-bit `hash(event_id)` of every stored event in
sorted numpy arrays: a batch asks which of its hashes are present (a binary search each, in
the hashes' order, so the searches walk the arrays forward), and only those candidates are
checked against the store by id,
so a hash collision never refuses a valid event. The entries of pruned events are removed
with them, so the index holds what the store holds.
"""

from __future__ import annotations

import numpy as np
from numba import njit

MERGE_CHUNKS = 32  # recent batches kept apart before they are merged into the main array


@njit(cache=True)
def _merge(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Two sorted arrays as one sorted array."""
    out = np.empty(len(a) + len(b), a.dtype)
    i = j = k = 0
    while i < len(a) and j < len(b):
        if a[i] <= b[j]:
            out[k] = a[i]
            i += 1
        else:
            out[k] = b[j]
            j += 1
        k += 1
    out[k : k + len(a) - i] = a[i:]
    k += len(a) - i
    out[k : k + len(b) - j] = b[j:]
    return out


def _contains(sorted_values: np.ndarray, values: np.ndarray) -> np.ndarray:
    if not len(sorted_values):
        return np.zeros(len(values), bool)
    at = np.searchsorted(sorted_values, values)
    at[at == len(sorted_values)] = 0
    return sorted_values[at] == values


class EventIdIndex:
    """Hashes of the stored event_ids: a main sorted array and a few recent sorted chunks."""

    def __init__(self) -> None:
        self.main = np.empty(0, np.uint64)
        self.recent: list[np.ndarray] = []
        _merge(self.main, self.main)  # compiled (or loaded) now, not at the first merge

    def __len__(self) -> int:
        return len(self.main) + sum(len(c) for c in self.recent)

    def rebuild(self, con) -> None:
        """Read the hashes of every stored event (start-up)."""
        hashes = con.execute("SELECT hash(event_id) AS h FROM flashrec_events").fetchnumpy()["h"]
        self.main = np.sort(np.asarray(hashes, np.uint64))
        self.recent = []

    def maybe_present(self, hashes: np.ndarray) -> np.ndarray:
        """Per hash: True when an event with that hash may be stored (check by id)."""
        order = np.argsort(hashes, kind="stable")
        ordered = np.asarray(hashes, np.uint64)[order]
        hit = _contains(self.main, ordered)
        for chunk in self.recent:
            hit |= _contains(chunk, ordered)
        found = np.empty(len(hashes), bool)
        found[order] = hit
        return found

    def add(self, hashes: np.ndarray) -> None:
        """Record the hashes of newly stored events."""
        if not len(hashes):
            return
        self.recent.append(np.sort(np.asarray(hashes, np.uint64)))
        if len(self.recent) > MERGE_CHUNKS:
            merged = np.sort(np.concatenate(self.recent))
            self.main = _merge(self.main, merged)
            self.recent = []

    def remove(self, hashes: np.ndarray) -> None:
        """Forget one entry per hash of events that left the store (an event still stored
        with a colliding hash keeps its own entry)."""
        if not len(hashes):
            return
        main = self.main
        if self.recent:
            main = _merge(main, np.sort(np.concatenate(self.recent)))
        values, counts = np.unique(np.asarray(hashes, np.uint64), return_counts=True)
        first = np.searchsorted(main, values)
        held = np.searchsorted(main, values, side="right") - first
        counts = np.minimum(counts, held)  # never more than the index holds
        starts = np.repeat(first, counts)
        offsets = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        keep = np.ones(len(main), bool)
        keep[starts + offsets] = False
        self.main, self.recent = main[keep], []
