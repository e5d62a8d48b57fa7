"""VMIS-kNN (Serenade's session-based kNN) over a growing index of historical sessions.

Behaviour: docs/evaluation.md and ../shared/design/vmis-knn.md. Kernels: udfs/kernel.py.

Layout (flat numpy arrays, dense codes from recommender.ids.IdMap, first-appearance order):

* session -> items: `se_pool` (int32 item codes) with per-session `se_start`, `se_len`,
  `se_cap`; each session's unique items sorted by code. `se_time` = time of its most recent
  event; `se_indexed` = 1 when it takes part in the index (0 < length <= max_session_length).
* item -> sessions: `it_pool` (int32 session codes) with per-item `it_start`, `it_len`,
  `it_cap`; each list holds EVERY indexed session with the item, oldest first, ordered by
  (timestamp, session code). Recommend reads the newest `m` from the end. Keeping full lists
  (not only m) makes removals exact: after a session leaves, the next most recent one is
  there. Memory is O(pairs), whatever the catalogue size (no items x m matrix): 2 x 4 bytes
  per (session, item) pair (up to 2x with list slack), 33 bytes per session and 40 per item
  in arrays (up to 2x while they grow), plus the id maps' dict entries (~100 bytes per id).
  Session codes are never reused: see `rebuilt()` for long-running indexes.
* idf(j) = ln(P / n_j) = ln P - ln n_j with P = pairs in the index, n_j = len(list of j);
  `item_logn` keeps ln n_j so recommend computes no logarithm.

Growth: each item list lives in a region [it_base, it_base + it_cap) of the pool and may
slide inside it (it_start): a write opens or closes its slot from the nearer end, so both
common cases are O(1) per item: a new or updated session lands at the newest end, an
expiring session leaves from the oldest end. A full list moves to the end of the pool with
doubled capacity; abandoned ranges are reclaimed by compaction once waste exceeds the live
part (checked when a pool has grown by half, so amortised O(1) per write).

Thread-safety: reads (recommend*) allocate their own scratch and release the GIL, so several
may run at once. Writes (append, upsert_session, remove_session, compact) change the arrays
in place and may swap them: the caller must not run a read concurrently with a write. One lock
(or a readers-writer lock) held by the caller around every call is enough.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from recommender.ids import IdMap
from udfs import kernel
from udfs.params import VmisParams

_DEFAULTS = VmisParams()
DEFAULT_M = _DEFAULTS.m
DEFAULT_K = _DEFAULTS.k
DEFAULT_HOW_MANY = _DEFAULTS.how_many
DEFAULT_MAX_ITEMS = _DEFAULTS.max_items_in_session
DEFAULT_IDF_WEIGHTING = _DEFAULTS.idf_weighting
LENGTH_PERCENTILE = 99.5
MAX_CODE = 2**31 - 1
COMPACT_FLOOR = 16384  # pool entries of waste tolerated before compacting


def length_threshold(lengths: np.ndarray) -> int:
    """Serenade's cut: the 99.5th percentile of session lengths (unique items), rounded."""
    lengths = lengths[lengths > 0]
    if len(lengths) == 0:
        return 0
    return int(math.floor(float(np.percentile(lengths, LENGTH_PERCENTILE)) + 0.5))


def _grow(arr: np.ndarray, size: int, fill: Any) -> np.ndarray:
    out = np.full(size, fill, dtype=arr.dtype)
    out[: len(arr)] = arr
    return out


class VMISIndex:
    """Historical sessions for VMIS-kNN; build once, then append/upsert/remove in place."""

    def __init__(self, m: int = DEFAULT_M, max_session_length: int | None = None) -> None:
        if m < 1:
            raise ValueError("m must be at least 1")
        self.m = int(m)
        self.max_session_length = max_session_length
        self.items = IdMap()
        self.sessions = IdMap()
        self.state = np.zeros(8, dtype=np.int64)
        self.it_base = np.zeros(0, dtype=np.int64)
        self.it_start = np.zeros(0, dtype=np.int64)
        self.it_len = np.zeros(0, dtype=np.int64)
        self.it_cap = np.zeros(0, dtype=np.int64)
        self.item_logn = np.zeros(0, dtype=np.float64)
        self.it_pool = np.zeros(0, dtype=np.int32)
        self.se_start = np.zeros(0, dtype=np.int64)
        self.se_len = np.zeros(0, dtype=np.int64)
        self.se_cap = np.zeros(0, dtype=np.int64)
        self.se_time = np.zeros(0, dtype=np.float64)
        self.se_indexed = np.zeros(0, dtype=np.uint8)
        self.se_pool = np.zeros(0, dtype=np.int32)
        self._check_it = 0  # pool lengths at which _maybe_compact looks again
        self._check_se = 0

    # --- building ----------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        session_ids: Sequence[Any] | np.ndarray,
        item_ids: Sequence[Any] | np.ndarray,
        timestamps: Sequence[float] | np.ndarray,
        m: int = DEFAULT_M,
        max_session_length: int | None = None,
    ) -> VMISIndex:
        """Index clicks (one row per click; ids of any hashable type, times in seconds).

        A session's timestamp is its most recent click; sessions with more unique items than
        `max_session_length` (default: the 99.5th percentile of the data, as Serenade) are
        kept out of the index. The threshold is then fixed for later writes (an index built
        from no clicks, or made with VMISIndex(), has none).
        """
        timestamps = np.asarray(timestamps, dtype=np.float64)
        if not (len(session_ids) == len(item_ids) == len(timestamps)):
            raise ValueError("session_ids, item_ids and timestamps differ in length")
        if not np.all(np.isfinite(timestamps)):
            raise ValueError("timestamps must be finite")
        index = cls(m=m, max_session_length=max_session_length)
        index.sessions, s_codes = IdMap.from_values(session_ids)
        index.items, i_codes = IdMap.from_values(item_ids)
        n_s, n_i = len(index.sessions), len(index.items)
        if max(n_s, n_i) > MAX_CODE:
            raise ValueError("more than 2**31 - 1 sessions or items")
        se_time = np.full(n_s, -np.inf)
        np.maximum.at(se_time, s_codes, timestamps)
        pairs = np.unique(s_codes * max(n_i, 1) + i_codes)  # (session, item) sorted
        p_sess, p_item = pairs // max(n_i, 1), pairs % max(n_i, 1)
        se_len = np.bincount(p_sess, minlength=n_s).astype(np.int64)
        if max_session_length is None and n_s > 0:
            index.max_session_length = length_threshold(se_len)
        limit = 2**62 if index.max_session_length is None else index.max_session_length
        keep = se_len[p_sess] <= limit
        indexed = (se_len > 0) & (se_len <= limit)
        se_start = np.zeros(n_s, dtype=np.int64)
        se_start[1:] = np.cumsum(se_len)[:-1]
        k_sess, k_item = p_sess[keep], p_item[keep]
        order = np.lexsort((k_sess, se_time[k_sess], k_item))  # item, then age, then code
        it_len = np.bincount(k_item, minlength=n_i).astype(np.int64)
        it_start = np.zeros(n_i, dtype=np.int64)
        it_start[1:] = np.cumsum(it_len)[:-1]
        with np.errstate(divide="ignore"):
            logn = np.where(it_len > 0, np.log(np.maximum(it_len, 1)), 0.0)
        index.it_start, index.it_len, index.it_cap = it_start, it_len, it_len.copy()
        index.it_base = it_start.copy()
        index.item_logn = logn
        index.it_pool = k_sess[order].astype(np.int32)
        index.se_start, index.se_len, index.se_cap = se_start, se_len, se_len.copy()
        index.se_time = se_time
        index.se_indexed = indexed.astype(np.uint8)
        index.se_pool = p_item.astype(np.int32)
        st = index.state
        st[kernel.P_PAIRS] = len(k_sess)
        st[kernel.IT_TOP] = len(index.it_pool)
        st[kernel.SE_TOP] = len(index.se_pool)
        st[kernel.N_INDEXED] = int(indexed.sum())
        st[kernel.N_ITEMS] = int((it_len > 0).sum())
        return index

    # --- writes (caller serialises them against reads) ---------------------------------------
    def _ensure_rows(self) -> None:
        n_i, n_s = len(self.items), len(self.sessions)
        if max(n_i, n_s) > MAX_CODE:
            raise ValueError("more than 2**31 - 1 sessions or items")
        if n_i > len(self.it_len):
            size = max(n_i, 2 * len(self.it_len), 64)
            self.it_base = _grow(self.it_base, size, 0)
            self.it_start = _grow(self.it_start, size, 0)
            self.it_len = _grow(self.it_len, size, 0)
            self.it_cap = _grow(self.it_cap, size, 0)
            self.item_logn = _grow(self.item_logn, size, 0.0)
        if n_s > len(self.se_len):
            size = max(n_s, 2 * len(self.se_len), 64)
            self.se_start = _grow(self.se_start, size, 0)
            self.se_len = _grow(self.se_len, size, 0)
            self.se_cap = _grow(self.se_cap, size, 0)
            self.se_time = _grow(self.se_time, size, -np.inf)
            self.se_indexed = _grow(self.se_indexed, size, 0)

    def _upsert_code(self, s: int, items: np.ndarray, t: float) -> None:
        limit = self.max_session_length if self.max_session_length is not None else 2**62
        while not kernel.upsert(
            s, items, t, limit,
            self.it_base, self.it_start, self.it_len, self.it_cap, self.it_pool, self.item_logn,
            self.se_start, self.se_len, self.se_cap, self.se_pool, self.se_time,
            self.se_indexed, self.state,
        ):  # fmt: skip
            st = self.state
            if st[kernel.IT_TOP] + st[kernel.NEED_IT] > len(self.it_pool):
                size = max(2 * len(self.it_pool), st[kernel.IT_TOP] + st[kernel.NEED_IT], 1024)
                self.it_pool = _grow(self.it_pool, size, 0)
            if st[kernel.SE_TOP] + st[kernel.NEED_SE] > len(self.se_pool):
                size = max(2 * len(self.se_pool), st[kernel.SE_TOP] + st[kernel.NEED_SE], 1024)
                self.se_pool = _grow(self.se_pool, size, 0)

    def _maybe_compact(self) -> None:
        """Compact a pool whose waste exceeds its live part. The O(rows) look runs only when
        the used length has grown by half since the last look (amortised O(1) per write)."""
        st = self.state
        if st[kernel.IT_TOP] > self._check_it:
            if self._wasteful(int(st[kernel.IT_TOP]), int(self.it_cap.sum())):
                self._compact_items()
            top = int(st[kernel.IT_TOP])
            self._check_it = top + max(top // 2, COMPACT_FLOOR)
        if st[kernel.SE_TOP] > self._check_se:
            if self._wasteful(int(st[kernel.SE_TOP]), int(self.se_cap.sum())):
                self._compact_sessions()
            top = int(st[kernel.SE_TOP])
            self._check_se = top + max(top // 2, COMPACT_FLOOR)

    @staticmethod
    def _wasteful(top: int, live: int) -> bool:
        return top - live > max(live, COMPACT_FLOOR)

    def upsert_session(self, session_id: Any, items: Iterable[Any], timestamp: float) -> None:
        """Replace a session's items and timestamp (a new session, or a new row of a live one).
        An empty item list removes the session."""
        t = float(timestamp)
        if not math.isfinite(t):
            raise ValueError("timestamp must be finite")
        items = list(items)
        if not items:
            self.remove_session(session_id)
            return
        s = self.sessions.add(session_id)
        codes = np.unique(self.items.encode(items, add=True))
        self._ensure_rows()
        self._upsert_code(s, codes, t)
        self._maybe_compact()

    def remove_session(self, session_id: Any) -> bool:
        """Drop a session from the index (expired, or flagged as a bot). False if unknown."""
        s = self.sessions.code(session_id)
        if s is None or s >= len(self.se_len) or self.se_len[s] == 0:
            return False
        kernel.remove(
            s, self.it_base, self.it_start, self.it_len, self.it_pool, self.item_logn,
            self.se_start, self.se_len, self.se_cap, self.se_pool, self.se_time,
            self.se_indexed, self.state,
        )  # fmt: skip
        self._maybe_compact()
        return True

    def append(
        self,
        session_ids: Sequence[Any] | np.ndarray,
        item_ids: Sequence[Any] | np.ndarray,
        timestamps: Sequence[float] | np.ndarray,
    ) -> None:
        """Add clicks of new or live sessions: each session gains the new items and its
        timestamp becomes its most recent click. Equal to rebuilding from all clicks (with
        the same max_session_length)."""
        timestamps = np.asarray(timestamps, dtype=np.float64)
        if not (len(session_ids) == len(item_ids) == len(timestamps)):
            raise ValueError("session_ids, item_ids and timestamps differ in length")
        if len(timestamps) == 0:
            return
        if not np.all(np.isfinite(timestamps)):
            raise ValueError("timestamps must be finite")
        s_codes = self.sessions.encode(session_ids, add=True)
        i_codes = self.items.encode(item_ids, add=True)
        self._ensure_rows()
        order = np.lexsort((i_codes, s_codes))
        s_sorted = s_codes[order]
        cuts = np.flatnonzero(np.diff(s_sorted)) + 1
        starts = np.concatenate(([0], cuts))
        ends = np.concatenate((cuts, [len(order)]))
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
            s = int(s_sorted[a])
            rows = order[a:b]
            new_items = i_codes[rows]
            t = float(timestamps[rows].max())
            old_n = int(self.se_len[s])
            if old_n:
                first = int(self.se_start[s])
                old = self.se_pool[first : first + old_n].astype(np.int64)
                new_items = np.union1d(old, new_items)
                t = max(t, float(self.se_time[s]))
            else:
                new_items = np.unique(new_items)
            self._upsert_code(s, new_items, t)
        self._maybe_compact()

    def compact(self) -> None:
        """Reclaim all unused pool space now (normally done automatically)."""
        self._compact_items()
        self._compact_sessions()

    def _compact_items(self) -> None:
        self.it_pool, top = kernel.compact(
            self.it_base, self.it_start, self.it_len, self.it_cap, self.it_pool,
            len(self.it_len), 4,
        )  # fmt: skip
        self.state[kernel.IT_TOP] = top

    def _compact_sessions(self) -> None:
        self.se_pool, top = kernel.compact(
            self.se_start, self.se_start, self.se_len, self.se_cap, self.se_pool,
            len(self.se_len), 4,
        )  # fmt: skip
        self.state[kernel.SE_TOP] = top

    def rebuilt(self) -> VMISIndex:
        """A fresh index of the current sessions only (same m and length threshold, same
        order). Session codes are never reused, so a long-running index that sees many
        sessions come and go holds ~40 bytes (plus the id map entry) per session ever seen:
        swap in `rebuilt()` now and then to shed them (docs/production.md, Tuning)."""
        live = np.flatnonzero(self.se_len[: len(self.sessions)] > 0)
        lens = self.se_len[live]
        firsts = self.se_start[live]
        total = int(lens.sum())
        pos = np.repeat(firsts - (np.cumsum(lens) - lens), lens) + np.arange(total)
        session_ids = np.empty(len(self.sessions), dtype=object)
        session_ids[:] = self.sessions.ids
        item_ids = np.empty(len(self.items), dtype=object)
        item_ids[:] = self.items.ids
        codes = np.repeat(live, lens)
        return VMISIndex.build(
            session_ids[codes],
            item_ids[self.se_pool[pos]],
            self.se_time[codes],
            m=self.m,
            max_session_length=(
                2**62 if self.max_session_length is None else self.max_session_length
            ),
        )

    # --- reads -----------------------------------------------------------------------------
    @property
    def n_sessions(self) -> int:
        """Sessions taking part in the index."""
        return int(self.state[kernel.N_INDEXED])

    @property
    def n_items(self) -> int:
        """Items in at least one indexed session."""
        return int(self.state[kernel.N_ITEMS])

    @property
    def n_clicks(self) -> int:
        """(session, item) pairs in the index (P of the idf; repeated clicks count once)."""
        return int(self.state[kernel.P_PAIRS])

    def _log_p(self) -> float:
        p = self.n_clicks
        return math.log(p) if p > 0 else 0.0

    def _cap(self, how_many: int) -> int:
        """No answer holds more items than the index knows (bounds the output arrays)."""
        return max(0, min(int(how_many), len(self.items)))

    def _arrays(self) -> tuple:
        return (
            self.it_start, self.it_len, self.it_pool, self.se_start, self.se_len,
            self.se_pool, self.se_time, self.item_logn,
        )  # fmt: skip

    def encode_session(self, items: Iterable[Any]) -> np.ndarray:
        """Item codes of an evolving session; every distinct unknown item gets its own
        negative code (it still counts for the session's length and positions)."""
        unknown: dict[Any, int] = {}
        out = []
        for item in items:
            code = self.items.code(item)
            if code is None:
                code = unknown.setdefault(item, -1 - len(unknown))
            out.append(code)
        return np.asarray(out, dtype=np.int64)

    def recommend_codes(
        self,
        offsets: np.ndarray,
        codes: np.ndarray,
        k: int = DEFAULT_K,
        how_many: int = DEFAULT_HOW_MANY,
        max_items_in_session: int = DEFAULT_MAX_ITEMS,
        idf_weighting: float = DEFAULT_IDF_WEIGHTING,
        m: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Low-level batch path on dense codes: session b = codes[offsets[b]:offsets[b+1]]
        (oldest click first, negative = unknown). Returns (counts, items[n, how_many],
        scores[n, how_many]); row b's first counts[b] entries are its recommendations."""
        return kernel.recommend_batch(
            np.ascontiguousarray(offsets, dtype=np.int64),
            np.ascontiguousarray(codes, dtype=np.int64),
            int(max_items_in_session), int(m or self.m), int(k), self._cap(how_many),
            float(idf_weighting), self._log_p(), *self._arrays(),
        )  # fmt: skip

    def recommend_flat(
        self,
        offsets: Sequence[int] | np.ndarray,
        items: Sequence[Any] | np.ndarray,
        k: int = DEFAULT_K,
        how_many: int = DEFAULT_HOW_MANY,
        max_items_in_session: int = DEFAULT_MAX_ITEMS,
        idf_weighting: float = DEFAULT_IDF_WEIGHTING,
        m: int | None = None,
    ) -> tuple[np.ndarray, list[Any], np.ndarray]:
        """Array-in/array-out path for a whole Arrow batch: session b is
        items[offsets[b]:offsets[b+1]] (a ListArray's offsets and values, original ids).
        Returns (out_offsets, item ids, scores) in the same flat layout, best first."""
        unknown: dict[Any, int] = {}
        get = self.items.code

        def code(value: Any) -> int:
            c = get(value)
            return unknown.setdefault(value, -1 - len(unknown)) if c is None else c

        values = items.tolist() if isinstance(items, np.ndarray) else items
        codes = np.fromiter((code(v) for v in values), dtype=np.int64, count=len(values))
        counts, out_items, out_scores = self.recommend_codes(
            np.asarray(offsets, dtype=np.int64), codes, k, how_many, max_items_in_session,
            idf_weighting, m,
        )  # fmt: skip
        keep = np.arange(out_items.shape[1]) < counts[:, None]
        out_offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=out_offsets[1:])
        return out_offsets, self.items.decode(out_items[keep]), out_scores[keep]

    def recommend_batch(
        self,
        sessions: Sequence[Sequence[Any]],
        k: int = DEFAULT_K,
        how_many: int = DEFAULT_HOW_MANY,
        max_items_in_session: int = DEFAULT_MAX_ITEMS,
        idf_weighting: float = DEFAULT_IDF_WEIGHTING,
        m: int | None = None,
    ) -> list[list[tuple[Any, float]]]:
        """Array-in path for whole batches (e.g. one Arrow batch of the UDF server): one list
        of (item id, score) per evolving session, in one kernel call."""
        offsets = np.zeros(len(sessions) + 1, dtype=np.int64)
        parts = []
        for b, session in enumerate(sessions):
            tail = list(session or [])
            if max_items_in_session > 0:
                tail = tail[-max_items_in_session:]
            parts.append(self.encode_session(tail))
            offsets[b + 1] = offsets[b] + len(tail)
        codes = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        counts, items, scores = self.recommend_codes(
            offsets, codes, k, how_many, max_items_in_session, idf_weighting, m
        )
        ids = self.items.ids
        out = []
        for b, n in enumerate(counts.tolist()):
            codes, values = items[b, :n].tolist(), scores[b, :n].tolist()
            out.append([(ids[c], s) for c, s in zip(codes, values, strict=True)])
        return out

    def recommend(
        self,
        items: Sequence[Any],
        k: int = DEFAULT_K,
        how_many: int = DEFAULT_HOW_MANY,
        max_items_in_session: int = DEFAULT_MAX_ITEMS,
        idf_weighting: float = DEFAULT_IDF_WEIGHTING,
        m: int | None = None,
    ) -> list[tuple[Any, float]]:
        """Next items for an evolving session (original item ids, oldest click first), best
        first, as (item id, score). Only the last `max_items_in_session` clicks are used
        (0 = all). Unknown items count for positions but match nothing; an empty or all-unknown
        session gives []. `m` defaults to the index's m."""
        tail = list(items)
        if max_items_in_session > 0:
            tail = tail[-max_items_in_session:]
        how_many = self._cap(how_many)
        if not tail or how_many <= 0:
            return []
        codes = self.encode_session(tail)
        out_items = np.empty(how_many, dtype=np.int64)
        out_scores = np.empty(how_many, dtype=np.float64)
        n = kernel.recommend_one(
            codes, int(m or self.m), int(k), how_many, float(idf_weighting),
            self._log_p(), *self._arrays(), out_items, out_scores,
        )  # fmt: skip
        ids = self.items.ids
        codes, values = out_items[:n].tolist(), out_scores[:n].tolist()
        return [(ids[c], s) for c, s in zip(codes, values, strict=True)]

    # --- inspection (tests, debugging) ---------------------------------------------------------
    def item_sessions(self, item_id: Any) -> list[Any]:
        """Session ids holding the item, newest first (all of them, not only m)."""
        j = self.items.code(item_id)
        if j is None or j >= len(self.it_len):
            return []
        first, n = int(self.it_start[j]), int(self.it_len[j])
        return self.sessions.decode(self.it_pool[first : first + n][::-1])

    def session_items(self, session_id: Any) -> list[Any]:
        """A session's unique items (indexed or not), in code order."""
        s = self.sessions.code(session_id)
        if s is None or s >= len(self.se_len):
            return []
        first, n = int(self.se_start[s]), int(self.se_len[s])
        return self.items.decode(self.se_pool[first : first + n])

    def session_time(self, session_id: Any) -> float | None:
        s = self.sessions.code(session_id)
        if s is None or s >= len(self.se_len) or self.se_len[s] == 0:
            return None
        return float(self.se_time[s])

    def idf(self, item_id: Any) -> float:
        """ln(P / n_j) for an indexed item (without idf_weighting), 0 otherwise."""
        j = self.items.code(item_id)
        if j is None or j >= len(self.it_len) or self.it_len[j] == 0:
            return 0.0
        return self._log_p() - float(self.item_logn[j])
