"""Numba kernels of VMIS-kNN: recommend (one session or a batch) and in-place index updates.

Everything works on dense integer codes and flat numpy arrays (layout in udfs/vmisknn.py).
No Python object is touched on the hot path, so the kernels run without the GIL (nogil).

Small open-addressing hash tables (linear probing, sized per call from m and the neighbours'
lengths) hold the candidate sessions and the item scores: memory per call is O(m + items of
the k neighbours), independent of the catalogue size, and nothing is shared between calls.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)

# state vector shared by the write kernels (int64[8])
P_PAIRS = 0  # (session, item) pairs in the index
IT_TOP = 1  # used length of the item -> sessions pool
SE_TOP = 2  # used length of the session -> items pool
NEED_IT = 3  # pool space a refused write needs (item pool)
NEED_SE = 4  # pool space a refused write needs (session pool)
N_INDEXED = 5  # sessions in the index
N_ITEMS = 6  # items with at least one session in the index


@njit(cache=True, inline="always")
def _table_bits(n):
    bits = 4
    while (1 << bits) < 2 * n:
        bits += 1
    return bits


@njit(cache=True, inline="always")
def _home(key, shift):
    return np.int64((np.uint64(key) * _GOLDEN) >> shift)


@njit(cache=True, inline="always")
def _probe(keys, key, shift, mask):
    """Index of `key` in the table, or of the empty slot where it would go."""
    i = _home(key, shift)
    while True:
        found = keys[i]
        if found == key or found == -1:
            return i
        i = (i + 1) & mask


@njit(cache=True, inline="always")
def _delete(keys, vals, i, shift, mask):
    """Remove the entry at table index i (backward-shift deletion, no tombstones)."""
    j = i
    while True:
        j = (j + 1) & mask
        if keys[j] == -1:
            break
        home = _home(keys[j], shift)
        if i <= j:
            stays = i < home <= j
        else:
            stays = home > i or home <= j
        if not stays:
            keys[i] = keys[j]
            vals[i] = vals[j]
            i = j
    keys[i] = -1


@njit(cache=True, inline="always")
def _older(a, b, c_time, c_sess):
    """Candidate slot a is older than b: earlier timestamp, then smaller (earlier) code."""
    return c_time[a] < c_time[b] or (c_time[a] == c_time[b] and c_sess[a] < c_sess[b])


@njit(cache=True, inline="always")
def _weaker(a, b, c_score, c_time, c_sess):
    """Neighbour slot a ranks below b: lower similarity, then older."""
    if c_score[a] != c_score[b]:
        return c_score[a] < c_score[b]
    return _older(a, b, c_time, c_sess)


@njit(cache=True, inline="always")
def _item_weaker(a, b, s_item, s_score):
    """Item entry a ranks below b: lower score, then larger code."""
    if s_score[a] != s_score[b]:
        return s_score[a] < s_score[b]
    return s_item[a] > s_item[b]


@njit(cache=True)
def _age_sift_down(heap, n, c_time, c_sess):
    i = 0
    while True:
        left = 2 * i + 1
        if left >= n:
            break
        small = left
        if left + 1 < n and _older(heap[left + 1], heap[left], c_time, c_sess):
            small = left + 1
        if _older(heap[small], heap[i], c_time, c_sess):
            heap[i], heap[small] = heap[small], heap[i]
            i = small
        else:
            break


@njit(cache=True)
def _age_push(heap, n, slot, c_time, c_sess):
    heap[n] = slot
    i = n
    while i > 0:
        parent = (i - 1) // 2
        if _older(heap[i], heap[parent], c_time, c_sess):
            heap[i], heap[parent] = heap[parent], heap[i]
            i = parent
        else:
            break


@njit(cache=True)
def _top_k(n_cand, k, c_score, c_time, c_sess):
    """Slots of the k best candidates (similarity, then recency), in no particular order."""
    if n_cand <= k:
        return np.arange(n_cand)
    heap = np.empty(k, dtype=np.int64)
    for c in range(k):
        heap[c] = c
        i = c
        while i > 0:
            parent = (i - 1) // 2
            if _weaker(heap[i], heap[parent], c_score, c_time, c_sess):
                heap[i], heap[parent] = heap[parent], heap[i]
                i = parent
            else:
                break
    for c in range(k, n_cand):
        if _weaker(heap[0], c, c_score, c_time, c_sess):
            heap[0] = c
            i = 0
            while True:
                left = 2 * i + 1
                if left >= k:
                    break
                small = left
                if left + 1 < k and _weaker(heap[left + 1], heap[left], c_score, c_time, c_sess):
                    small = left + 1
                if _weaker(heap[small], heap[i], c_score, c_time, c_sess):
                    heap[i], heap[small] = heap[small], heap[i]
                    i = small
                else:
                    break
    return heap


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
    # unique items, newest first, with the position of their most recent click
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

    # 1. candidate sessions: decayed matches, m most recent, oldest evicted
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
    bits = _table_bits(room)
    shift = np.uint64(64 - bits)
    mask = (1 << bits) - 1
    keys = np.full(1 << bits, -1, dtype=np.int64)
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
            t = _probe(keys, h, shift, mask)
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
                        _age_push(age_heap, c, c, c_time, c_sess)
                    heap_ready = True
                oldest = age_heap[0]
                if se_time[h] > c_time[oldest]:
                    _delete(keys, vals, _probe(keys, c_sess[oldest], shift, mask), shift, mask)
                    t = _probe(keys, h, shift, mask)
                    keys[t] = h
                    vals[t] = oldest
                    c_sess[oldest] = h
                    c_score[oldest] = decay
                    c_time[oldest] = se_time[h]
                    _age_sift_down(age_heap, n_cand, c_time, c_sess)
                else:
                    break  # the rest of this list is older still
    if n_cand == 0:
        return 0

    # 2. the k nearest neighbours
    best = _top_k(n_cand, k, c_score, c_time, c_sess)

    # 3. item scores: lambda(first match) * idf * similarity, summed over neighbours
    total = 0
    for b in range(len(best)):
        total += se_len[c_sess[best[b]]]
    bits = _table_bits(total)
    shift = np.uint64(64 - bits)
    mask = (1 << bits) - 1
    s_keys = np.full(1 << bits, -1, dtype=np.int64)
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
            t = _probe(s_keys, j, shift, mask)
            if s_keys[t] == -1:
                s_keys[t] = j
                s_vals[t] = 0.0
                touched[n_touched] = t
                n_touched += 1
            if idf > 0.0:
                s_vals[t] += lam * idf * sim
            else:
                s_vals[t] += lam * sim

    # 4. drop the newest item, keep the best how_many (score, then smaller code)
    newest = session[n_clicks - 1]
    heap = np.empty(how_many, dtype=np.int64)  # table indices
    n_heap = 0
    for e in range(n_touched):
        t = touched[e]
        j = s_keys[t]
        if j == newest:
            continue
        if n_heap < how_many:
            heap[n_heap] = t
            i = n_heap
            n_heap += 1
            while i > 0:
                parent = (i - 1) // 2
                if _item_weaker(heap[i], heap[parent], s_keys, s_vals):
                    heap[i], heap[parent] = heap[parent], heap[i]
                    i = parent
                else:
                    break
        elif _item_weaker(heap[0], t, s_keys, s_vals):
            heap[0] = t
            i = 0
            while True:
                left = 2 * i + 1
                if left >= n_heap:
                    break
                small = left
                if left + 1 < n_heap and _item_weaker(heap[left + 1], heap[left], s_keys, s_vals):
                    small = left + 1
                if _item_weaker(heap[small], heap[i], s_keys, s_vals):
                    heap[i], heap[small] = heap[small], heap[i]
                    i = small
                else:
                    break
    # heap order -> best first (insertion sort; how_many is small)
    for a in range(1, n_heap):
        x = heap[a]
        b = a - 1
        while b >= 0 and _item_weaker(heap[b], x, s_keys, s_vals):
            heap[b + 1] = heap[b]
            b -= 1
        heap[b + 1] = x
    for a in range(n_heap):
        out_items[a] = s_keys[heap[a]]
        out_scores[a] = s_vals[heap[a]]
    return n_heap


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
