"""Numba kernels of VMIS-kNN: recommend (one session or a batch) and in-place index updates.

Everything works on dense integer codes and flat numpy arrays (layout in udfs/vmisknn.py).
No Python object is touched on the hot path, so the kernels run without the GIL (nogil).

`recommend_one` runs in steps: the session's unique items; the candidate sessions that hold
them, with their similarity; the k nearest of those; the scores of their items; the best
`how_many` items. Small open-addressing hash tables (udfs/tables.py, sized per call from m
and the neighbours' lengths) hold the candidate sessions and the item scores: memory per
call is O(m + items of the k neighbours), independent of the catalogue size, and nothing is
shared between calls. The steps are inlined into `recommend_one` (one compiled function).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from udfs.tables import EMPTY, delete, heap_push, heap_sift_down, probe, table_bits

# state vector shared by the write kernels (int64[8])
P_PAIRS = 0  # (session, item) pairs in the index
IT_TOP = 1  # used length of the item -> sessions pool
SE_TOP = 2  # used length of the session -> items pool
NEED_IT = 3  # pool space a refused write needs (item pool)
NEED_SE = 4  # pool space a refused write needs (session pool)
N_INDEXED = 5  # sessions in the index
N_ITEMS = 6  # items with at least one session in the index


# --- orderings of the heaps ---------------------------------------------------------------


@njit(cache=True, inline="always")
def _older(a, b, ages):
    """Candidate slot a is older than b: earlier timestamp, then smaller (earlier) code."""
    c_time, c_sess = ages
    if c_time[a] != c_time[b]:
        return c_time[a] < c_time[b]
    return c_sess[a] < c_sess[b]


@njit(cache=True, inline="always")
def _weaker(a, b, candidates):
    """Neighbour slot a ranks below b: lower similarity, then older."""
    c_score, c_time, c_sess = candidates
    if c_score[a] != c_score[b]:
        return c_score[a] < c_score[b]
    if c_time[a] != c_time[b]:
        return c_time[a] < c_time[b]
    return c_sess[a] < c_sess[b]


@njit(cache=True, inline="always")
def _item_weaker(a, b, items):
    """Item entry a ranks below b: lower score, then larger code."""
    s_item, s_score = items
    if s_score[a] != s_score[b]:
        return s_score[a] < s_score[b]
    return s_item[a] > s_item[b]


# --- the steps of recommend_one -----------------------------------------------------------


@njit(cache=True, inline="always")
def _unique_items(session):
    """The session's unique items, newest first, with the position of their most recent
    click (0: the newest click). Returns (items, positions, count)."""
    n_clicks = len(session)
    u_item = np.empty(n_clicks, dtype=np.int64)
    u_pos = np.empty(n_clicks, dtype=np.int64)
    n_unique = 0
    for pos in range(n_clicks):
        item = session[n_clicks - 1 - pos]
        seen = False
        for u in range(n_unique):
            if u_item[u] == item:
                seen = True
                break
        if not seen:
            u_item[n_unique] = item
            u_pos[n_unique] = pos
            n_unique += 1
    return u_item, u_pos, n_unique


@njit(cache=True, inline="always")
def _candidates(u_item, u_pos, n_unique, n_clicks, m, it_start, it_len, it_pool, se_time):
    """1. Candidate sessions: the m most recent sessions that hold an item of the session
    (the oldest evicted), each with its similarity, the sum of its matches' decay
    (n_clicks - position) / n_unique. Returns (sessions, similarities, timestamps, count)."""
    n_items_known = len(it_len)
    room = 0  # scratch for at most min(m, sessions listed under the session's items)
    for u in range(n_unique):
        if 0 <= u_item[u] < n_items_known:
            room += it_len[u_item[u]]
    room = max(1, min(m, room))
    c_sess = np.empty(room, dtype=np.int64)
    c_score = np.empty(room, dtype=np.float64)
    c_time = np.empty(room, dtype=np.float64)
    age_heap = np.empty(room, dtype=np.int64)
    ages = (c_time, c_sess)
    bits = table_bits(room)
    shift = np.uint64(64 - bits)
    mask = (1 << bits) - 1
    keys = np.full(1 << bits, EMPTY, dtype=np.int64)  # session -> candidate slot
    vals = np.empty(1 << bits, dtype=np.int64)
    n_cand = 0
    heap_ready = False
    for u in range(n_unique):
        item = u_item[u]
        if item < 0 or item >= n_items_known or it_len[item] == 0:
            continue
        decay = (n_clicks - u_pos[u]) / n_unique
        first = it_start[item]
        for idx in range(first + it_len[item] - 1, first - 1, -1):  # newest first
            h = np.int64(it_pool[idx])
            t = probe(keys, h, shift, mask)
            if keys[t] == h:
                c_score[vals[t]] += decay
            elif n_cand < m:
                keys[t] = h
                vals[t] = n_cand
                c_sess[n_cand] = h
                c_score[n_cand] = decay
                c_time[n_cand] = se_time[h]
                n_cand += 1
            else:
                if not heap_ready:  # first eviction check: order the m candidates by age
                    for c in range(n_cand):
                        heap_push(age_heap, c, c, _older, ages)
                    heap_ready = True
                oldest = age_heap[0]
                if not se_time[h] > c_time[oldest]:
                    break  # the rest of this list is older still
                delete(keys, vals, probe(keys, c_sess[oldest], shift, mask), shift, mask)
                t = probe(keys, h, shift, mask)
                keys[t] = h
                vals[t] = oldest
                c_sess[oldest] = h
                c_score[oldest] = decay
                c_time[oldest] = se_time[h]
                heap_sift_down(age_heap, n_cand, _older, ages)
    return c_sess, c_score, c_time, n_cand


@njit(cache=True)
def _top_k(n_cand, k, c_score, c_time, c_sess):
    """2. Slots of the k nearest candidates (similarity, then recency), in no particular
    order."""
    if n_cand <= k:
        return np.arange(n_cand)
    candidates = (c_score, c_time, c_sess)
    heap = np.empty(k, dtype=np.int64)
    for c in range(k):
        heap_push(heap, c, c, _weaker, candidates)
    for c in range(k, n_cand):
        if _weaker(heap[0], c, candidates):
            heap[0] = c
            heap_sift_down(heap, k, _weaker, candidates)
    return heap


@njit(cache=True, inline="always")
def _score_items(
    best, c_sess, c_score, u_item, u_pos, n_unique, n_clicks, idf_weighting, log_p,
    se_start, se_len, se_pool, item_logn,
):  # fmt: skip
    """3. Item scores: lambda(first match) * idf * similarity, summed over the neighbours.
    Returns the table (item keys, scores) and its used slots in the order first scored."""
    total = 0
    for b in range(len(best)):
        total += se_len[c_sess[best[b]]]
    bits = table_bits(total)
    shift = np.uint64(64 - bits)
    mask = (1 << bits) - 1
    s_keys = np.full(1 << bits, EMPTY, dtype=np.int64)
    s_vals = np.empty(1 << bits, dtype=np.float64)
    touched = np.empty(total, dtype=np.int64)
    n_touched = 0
    for b in range(len(best)):
        slot = best[b]
        n = c_sess[slot]
        first = se_start[n]
        last = first + se_len[n]
        # p = 1 + position of the newest click whose item is in n (items of n are sorted)
        p = n_clicks + 1
        for u in range(n_unique):
            item = u_item[u]
            if item < 0:
                continue
            lo = first
            hi = last
            while lo < hi:
                mid = (lo + hi) >> 1
                if se_pool[mid] < item:
                    lo = mid + 1
                else:
                    hi = mid
            if lo < last and se_pool[lo] == item:
                p = u_pos[u] + 1
                break
        lam = 1.0 - 0.1 * p if p < 100 else 0.0
        sim = c_score[slot]
        for idx in range(first, last):
            j = np.int64(se_pool[idx])
            idf = (log_p - item_logn[j]) * idf_weighting
            t = probe(s_keys, j, shift, mask)
            if s_keys[t] == EMPTY:
                s_keys[t] = j
                s_vals[t] = 0.0
                touched[n_touched] = t
                n_touched += 1
            if idf > 0.0:
                s_vals[t] += lam * idf * sim
            else:
                s_vals[t] += lam * sim
    return s_keys, s_vals, touched, n_touched


@njit(cache=True, inline="always")
def _top_n(s_keys, s_vals, touched, n_touched, newest, how_many, out_items, out_scores):
    """4. The best how_many items but `newest` (score, then smaller code) into
    out_items/out_scores, best first; returns how many were written."""
    items = (s_keys, s_vals)
    heap = np.empty(how_many, dtype=np.int64)  # table slots
    n_heap = 0
    for e in range(n_touched):
        t = touched[e]
        if s_keys[t] == newest:
            continue
        if n_heap < how_many:
            heap_push(heap, n_heap, t, _item_weaker, items)
            n_heap += 1
        elif _item_weaker(heap[0], t, items):
            heap[0] = t
            heap_sift_down(heap, n_heap, _item_weaker, items)
    # heap order -> best first (insertion sort; how_many is small)
    for a in range(1, n_heap):
        x = heap[a]
        b = a - 1
        while b >= 0 and _item_weaker(heap[b], x, items):
            heap[b + 1] = heap[b]
            b -= 1
        heap[b + 1] = x
    for a in range(n_heap):
        out_items[a] = s_keys[heap[a]]
        out_scores[a] = s_vals[heap[a]]
    return n_heap


@njit(cache=True, nogil=True)
def recommend_one(
    session, m, k, how_many, idf_weighting, log_p,
    it_start, it_len, it_pool, se_start, se_len, se_pool, se_time, item_logn,
    out_items, out_scores,
):  # fmt: skip
    """Top `how_many` next items of an evolving session (item codes, oldest click first;
    negative codes are unknown items: they count for lengths and positions only).
    Writes into out_items/out_scores (best first) and returns how many were written."""
    n_clicks = len(session)
    if n_clicks == 0 or m <= 0 or k <= 0 or how_many <= 0:
        return 0
    u_item, u_pos, n_unique = _unique_items(session)
    c_sess, c_score, c_time, n_cand = _candidates(
        u_item, u_pos, n_unique, n_clicks, m, it_start, it_len, it_pool, se_time
    )
    if n_cand == 0:
        return 0
    best = _top_k(n_cand, k, c_score, c_time, c_sess)
    s_keys, s_vals, touched, n_touched = _score_items(
        best, c_sess, c_score, u_item, u_pos, n_unique, n_clicks, idf_weighting, log_p,
        se_start, se_len, se_pool, item_logn,
    )  # fmt: skip
    newest = session[n_clicks - 1]
    return _top_n(s_keys, s_vals, touched, n_touched, newest, how_many, out_items, out_scores)


@njit(cache=True, nogil=True)
def recommend_batch(
    offsets, codes, max_items, m, k, how_many, idf_weighting, log_p,
    it_start, it_len, it_pool, se_start, se_len, se_pool, se_time, item_logn,
):  # fmt: skip
    """Session b is codes[offsets[b]:offsets[b+1]], of which the last `max_items` are used.
    Returns (counts[n], items[n, how_many], scores[n, how_many]); row b holds counts[b]."""
    n = len(offsets) - 1
    counts = np.zeros(n, dtype=np.int64)
    items = np.full((n, max(how_many, 0)), -1, dtype=np.int64)
    scores = np.zeros((n, max(how_many, 0)), dtype=np.float64)
    for b in range(n):
        lo = offsets[b]
        hi = offsets[b + 1]
        if max_items > 0 and hi - lo > max_items:
            lo = hi - max_items
        counts[b] = recommend_one(
            codes[lo:hi], m, k, how_many, idf_weighting, log_p,
            it_start, it_len, it_pool, se_start, se_len, se_pool, se_time, item_logn,
            items[b], scores[b],
        )  # fmt: skip
    return counts, items, scores


# --- writes ------------------------------------------------------------------------------


@njit(cache=True, inline="always")
def _before(a, b, se_time):
    """Session a sorts before b in an item list (ascending age: older first)."""
    return se_time[a] < se_time[b] or (se_time[a] == se_time[b] and a < b)


@njit(cache=True)
def _list_position(it_pool, first, length, s, se_time):
    """First position in the list whose session does not sort before s."""
    lo = first
    hi = first + length
    while lo < hi:
        mid = (lo + hi) >> 1
        if _before(np.int64(it_pool[mid]), s, se_time):
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True)
def _unindex(s, it_base, it_start, it_len, it_pool, item_logn, se_start, se_len, se_pool,
             se_time, se_indexed, state):  # fmt: skip
    first = se_start[s]
    n = se_len[s]
    for idx in range(first, first + n):
        j = se_pool[idx]
        start = it_start[j]
        length = it_len[j]
        pos = _list_position(it_pool, start, length, s, se_time)
        if pos < start + length and it_pool[pos] == s:
            # close the gap from the nearer end: expiring (oldest) sessions cost O(1)
            if pos - start <= start + length - 1 - pos:
                for q in range(pos, start, -1):
                    it_pool[q] = it_pool[q - 1]
                it_start[j] = start + 1
            else:
                for q in range(pos, start + length - 1):
                    it_pool[q] = it_pool[q + 1]
            it_len[j] = length - 1
            if length - 1 > 0:
                item_logn[j] = np.log(length - 1)
            else:
                it_start[j] = it_base[j]
                item_logn[j] = 0.0
                state[N_ITEMS] -= 1
    state[P_PAIRS] -= n
    state[N_INDEXED] -= 1
    se_indexed[s] = 0


@njit(cache=True, inline="always")
def _must_move(j, it_base, it_start, it_len, it_cap):
    """The list of j has no room at its newest end and too little at its oldest end to be
    re-centred cheaply: it moves to a new region of 2 * len + 4."""
    length = it_len[j]
    room_left = it_start[j] - it_base[j]
    room_right = it_base[j] + it_cap[j] - (it_start[j] + length)
    return room_right == 0 and (room_left == 0 or 2 * room_left < length)


@njit(cache=True)
def _index(s, it_base, it_start, it_len, it_cap, it_pool, item_logn, se_start, se_len, se_pool,
           se_time, se_indexed, state):  # fmt: skip
    first = se_start[s]
    n = se_len[s]
    for idx in range(first, first + n):
        j = se_pool[idx]
        length = it_len[j]
        start = it_start[j]
        if _must_move(j, it_base, it_start, it_len, it_cap):
            new_cap = 2 * length + 4
            top = state[IT_TOP]
            for q in range(length):
                it_pool[top + q] = it_pool[start + q]
            it_base[j] = top
            it_cap[j] = new_cap
            state[IT_TOP] = top + new_cap
            start = top
        elif it_base[j] + it_cap[j] == start + length:  # re-centre: slide to the region start
            base = it_base[j]
            for q in range(length):
                it_pool[base + q] = it_pool[start + q]
            start = base
        it_start[j] = start
        # open the slot by shifting the newer part (new sessions land at the end: O(1))
        pos = _list_position(it_pool, start, length, s, se_time)
        for q in range(start + length, pos, -1):
            it_pool[q] = it_pool[q - 1]
        it_pool[pos] = s
        it_len[j] = length + 1
        item_logn[j] = np.log(length + 1)
        if length == 0:
            state[N_ITEMS] += 1
    state[P_PAIRS] += n
    state[N_INDEXED] += 1
    se_indexed[s] = 1


@njit(cache=True)
def upsert(s, items, t, max_len,
           it_base, it_start, it_len, it_cap, it_pool, item_logn,
           se_start, se_len, se_cap, se_pool, se_time, se_indexed, state):  # fmt: skip
    """Set session s to `items` (sorted unique codes) at time t; index it when
    0 < len <= max_len. Returns False (changing nothing) when a pool lacks space:
    state[NEED_IT], state[NEED_SE] then say how much is needed."""
    n = len(items)
    need_se = 0
    if n > se_cap[s]:
        need_se = max(n, 2 * se_cap[s], 4)
    need_it = 0
    if 0 < n <= max_len:
        for idx in range(n):
            j = items[idx]
            if _must_move(j, it_base, it_start, it_len, it_cap):
                need_it += 2 * it_len[j] + 4
    if state[IT_TOP] + need_it > len(it_pool) or state[SE_TOP] + need_se > len(se_pool):
        state[NEED_IT] = need_it
        state[NEED_SE] = need_se
        return False
    if se_indexed[s]:
        _unindex(s, it_base, it_start, it_len, it_pool, item_logn, se_start, se_len, se_pool,
                 se_time, se_indexed, state)  # fmt: skip
    if need_se > 0:
        se_start[s] = state[SE_TOP]
        se_cap[s] = need_se
        state[SE_TOP] += need_se
    first = se_start[s]
    for idx in range(n):
        se_pool[first + idx] = items[idx]
    se_len[s] = n
    se_time[s] = t
    if 0 < n <= max_len:
        _index(s, it_base, it_start, it_len, it_cap, it_pool, item_logn, se_start, se_len,
               se_pool, se_time, se_indexed, state)  # fmt: skip
    return True


@njit(cache=True)
def remove(s, it_base, it_start, it_len, it_pool, item_logn, se_start, se_len, se_cap, se_pool,
           se_time, se_indexed, state):  # fmt: skip
    """Forget session s entirely (its pool range is left for the next compaction)."""
    if se_indexed[s]:
        _unindex(s, it_base, it_start, it_len, it_pool, item_logn, se_start, se_len, se_pool,
                 se_time, se_indexed, state)  # fmt: skip
    se_len[s] = 0
    se_cap[s] = 0
    se_time[s] = -np.inf


@njit(cache=True)
def compact(base, start, length, cap, pool, n_rows, slack):
    """A new pool holding every row's range contiguously; caps shrink to at most
    2*len + slack. Updates base/start/cap in place (base and start may be the same array);
    returns (new pool, used length)."""
    total = 0
    for r in range(n_rows):
        cap[r] = min(cap[r], 2 * length[r] + slack) if length[r] > 0 else 0
        total += cap[r]
    out = np.empty(max(total + total // 2, 16), dtype=pool.dtype)
    top = 0
    for r in range(n_rows):
        first = start[r]
        for q in range(length[r]):
            out[top + q] = pool[first + q]
        base[r] = top
        start[r] = top
        top += cap[r]
    return out, top
