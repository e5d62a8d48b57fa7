"""Dense integer codes for ids of any hashable type (ints, strings, ...).

Codes are given in order of first appearance: 0 for the first id seen, 1 for the next new one,
and so on. Codes are never reused, so their order is the order in which ids arrived (the
VMIS-kNN index uses it to break ties between sessions with equal timestamps).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import numpy as np


def _canonical(value: Any) -> Hashable:
    """numpy scalars as plain Python values (they hash alike, but keep the stored ids plain)."""
    return value.item() if isinstance(value, np.generic) else value


def first_appearance_codes(values: Sequence[Any] | np.ndarray) -> tuple[list[Any], np.ndarray]:
    """(unique ids in order of first appearance, int64 code of every value)."""
    if not isinstance(values, np.ndarray):
        # a Python list may mix types (1 and "1"): never let numpy coerce them to one type
        values = list(values)
        kinds = {type(v) for v in values}
        arr = np.asarray(values) if kinds <= {int} or kinds <= {str} else np.empty(0, object)
        if arr.dtype.kind == "O":
            arr = np.empty(len(values), dtype=object)
            arr[:] = values
    else:
        arr = values
    if arr.ndim != 1:
        raise ValueError("ids must be one-dimensional")
    if arr.dtype.kind in "iubU":
        # vectorised: np.unique sorts, then re-rank the uniques by their first position
        uniq, first, inverse = np.unique(arr, return_index=True, return_inverse=True)
        order = np.argsort(first, kind="stable")
        rank = np.empty(len(uniq), dtype=np.int64)
        rank[order] = np.arange(len(uniq), dtype=np.int64)
        return uniq[order].tolist(), rank[inverse.reshape(-1)]
    ids: list[Any] = []
    seen: dict[Hashable, int] = {}
    codes = np.empty(len(arr), dtype=np.int64)
    for n, value in enumerate(arr.tolist()):
        code = seen.get(value)
        if code is None:
            code = seen[value] = len(ids)
            ids.append(value)
        codes[n] = code
    return ids, codes


class IdMap:
    """Two-way map between original ids and dense codes 0..n-1 (first appearance order)."""

    def __init__(self, ids: Iterable[Any] = ()) -> None:
        self._ids: list[Any] = []
        self._codes: dict[Hashable, int] = {}
        for value in ids:
            self.add(value)

    @classmethod
    def from_values(cls, values: Sequence[Any] | np.ndarray) -> tuple[IdMap, np.ndarray]:
        """A map of the distinct values and the code of every value (vectorised for ints)."""
        ids, codes = first_appearance_codes(values)
        mapping = cls()
        mapping._ids = ids
        mapping._codes = {value: n for n, value in enumerate(ids)}
        if len(mapping._codes) != len(ids):
            raise ValueError("ids that compare equal but are not identical (e.g. 1 and 1.0)")
        return mapping, codes

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, value: Any) -> bool:
        return _canonical(value) in self._codes

    def code(self, value: Any) -> int | None:
        """The code of `value`, or None when it was never added."""
        return self._codes.get(_canonical(value))

    def add(self, value: Any) -> int:
        """The code of `value`, giving it the next free code when it is new."""
        value = _canonical(value)
        code = self._codes.get(value)
        if code is None:
            code = self._codes[value] = len(self._ids)
            self._ids.append(value)
        return code

    def encode(self, values: Iterable[Any], add: bool = False) -> np.ndarray:
        """int64 codes of `values`; unknown ids get -1 (or a new code when `add`)."""
        if add:
            return np.fromiter((self.add(v) for v in values), dtype=np.int64)
        get = self._codes.get
        return np.fromiter((get(_canonical(v), -1) for v in values), dtype=np.int64)

    def decode(self, codes: Iterable[int]) -> list[Any]:
        """The original ids of `codes`."""
        ids = self._ids
        return [ids[int(c)] for c in codes]

    def id_of(self, code: int) -> Any:
        return self._ids[int(code)]

    @property
    def ids(self) -> list[Any]:
        """All ids, index = code (do not modify)."""
        return self._ids
