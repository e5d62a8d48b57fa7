"""The Numba VMIS-kNN kernel: same top lists as the plain-Python reference on real data, and
an index that grows (append / upsert / remove) equal to one rebuilt from scratch."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_vmis import ReferenceVMIS

from recommender.ids import IdMap
from recommender.sessions_io import group_sessions, read_sessions
from udfs.vmisknn import VMISIndex

# name: (fixture holding the files, train, test); shared_data skips where the data is absent
DATASETS = {
    "sample": ("sample_data", "sessions_train.tsv", "sessions_test.tsv"),
    "yoochoose": (
        "shared_data",
        "yoochoose_rsc15/yoochoose-clicks-100k_train_full.txt",
        "yoochoose_rsc15/yoochoose-clicks-100k_test.txt",
    ),
    "serenade": ("shared_data", "serenade_example/train.txt", "serenade_example/test.txt"),
}


def same_top(got: list, want: list, rel: float = 1e-9) -> bool:
    """Equal top lists, ties aside: same scores position by position, and an item may differ
    only where its score ties with another item's."""
    if len(got) != len(want):
        return False
    for (_, gs), (_, ws) in zip(got, want, strict=True):
        if not math.isclose(gs, ws, rel_tol=rel, abs_tol=1e-12):
            return False
    want_score = dict(want)
    cut = want[-1][1] if want else 0.0
    for item, score in got:
        if item in want_score:
            if not math.isclose(score, want_score[item], rel_tol=rel, abs_tol=1e-12):
                return False
        elif not math.isclose(score, cut, rel_tol=rel, abs_tol=1e-12):
            return False  # a different item is only allowed at a tie on the boundary
    return True


@pytest.fixture(scope="module", params=sorted(DATASETS))
def real(request: pytest.FixtureRequest):
    where, train_path, test_path = DATASETS[request.param]
    found = request.getfixturevalue(where)
    root: Path = found.root if where == "sample_data" else found
    train = read_sessions(root / train_path)
    test = read_sessions(root / test_path)
    return request.param, train, test


def _prefixes(test, n_sessions: int) -> list[list]:
    out = []
    for _, items in group_sessions(test)[:n_sessions]:
        items = items.tolist()
        out.extend(items[:t] for t in range(1, len(items)))
    return out


@pytest.mark.parametrize(
    ("m", "k", "max_items", "idf"),
    [(500, 500, 2, 1.0), (500, 100, 3, 1.0), (15, 8, 0, 2.0), (60, 60, 1, 0.0)],
)
def test_kernel_matches_reference_on_real_data(real, m, k, max_items, idf) -> None:
    name, train, test = real
    index = VMISIndex.build(train.session_ids, train.item_ids, train.timestamps, m=m)
    columns = (train.session_ids.tolist(), train.item_ids.tolist(), train.timestamps.tolist())
    clicks = zip(*columns, strict=True)
    ref = ReferenceVMIS(clicks, m=m)
    assert index.max_session_length == ref.max_session_length
    assert index.n_sessions == len(ref.session_items)
    prefixes = _prefixes(test, 80)
    assert len(prefixes) > 150
    nonempty = 0
    for prefix in prefixes:
        args = dict(k=k, how_many=21, max_items_in_session=max_items, idf_weighting=idf)
        got = index.recommend(prefix, **args)
        want = ref.recommend(prefix, **args)
        assert same_top(got, want), (name, prefix, got[:5], want[:5])
        nonempty += bool(got)
    assert nonempty > len(prefixes) // 2


def test_batch_path_equals_single_calls(real) -> None:
    _, train, test = real
    index = VMISIndex.build(train.session_ids, train.item_ids, train.timestamps)
    prefixes = _prefixes(test, 40) + [[], ["never-seen"]]
    batch = index.recommend_batch(prefixes, k=100, how_many=10)
    assert batch == [index.recommend(p, k=100, how_many=10) for p in prefixes]
    offsets = np.cumsum([0] + [len(p) for p in prefixes])
    flat = [item for p in prefixes for item in p]
    out_offsets, ids, scores = index.recommend_flat(offsets, flat, k=100, how_many=10)
    rebuilt = [
        list(zip(ids[a:b], scores[a:b].tolist(), strict=True))
        for a, b in zip(out_offsets[:-1], out_offsets[1:], strict=True)
    ]
    assert rebuilt == batch


# --- small hand-made cases ----------------------------------------------------------------


def _index(sessions: dict, m: int = 500, max_len: int | None = 100) -> VMISIndex:
    s, i, t = [], [], []
    for sid, (items, ts) in sessions.items():
        for item in items:
            s.append(sid)
            i.append(item)
            t.append(ts)
    return VMISIndex.build(s, i, t, m=m, max_session_length=max_len)


def test_serenade_unit_case() -> None:
    # Serenade's own test: two sessions, the query item's neighbours give 4 items, 920004 first
    index = _index({1: ([920006, 920005, 920004], 1.0), 2: ([920005, 920004, 920003, 920002], 1.0)})
    recs = index.recommend([920005], how_many=20)
    assert len(recs) == 4
    assert recs[0][0] == 920004
    assert 920005 not in [item for item, _ in recs]


def test_scores_by_hand() -> None:
    # P = 5 pairs; idf(a) = ln(5/2), idf(b) = idf(c) = ln(5/1) (b in s1, c in s2), a in both
    index = _index({"s1": (["a", "b"], 10.0), "s2": (["a", "c", "d"], 20.0)})
    recs = dict(index.recommend(["a"]))
    # one click: decay 1, sim 1 for both sessions, p = 1 -> lambda 0.9
    assert recs["b"] == pytest.approx(0.9 * math.log(5 / 1))
    assert recs["c"] == pytest.approx(0.9 * math.log(5 / 1))
    assert "a" not in recs  # newest item removed
    recs = dict(index.recommend(["b", "a"]))
    # L=2, U=2: a (pos 0) decay 1, b (pos 1) decay 0.5: s1 sim 1.5, s2 sim 1; p = 1 for both
    assert recs["b"] == pytest.approx(0.9 * math.log(5) * 1.5)
    assert recs["c"] == pytest.approx(0.9 * math.log(5) * 1.0)
    assert index.idf("a") == pytest.approx(math.log(5 / 2))


def test_lambda_goes_negative_like_serenade() -> None:
    # the only match is 12 clicks back: p = 12 -> lambda = 1 - 1.2 = -0.2
    index = _index({"h": (["a", "x"], 1.0), "other": (["y", "z"], 2.0)})
    session = ["a"] + [f"unknown{n}" for n in range(11)]
    recs = dict(index.recommend(session, max_items_in_session=0))
    # L = U = 12; a at pos 11: decay 1/12; idf(x) = ln(4/1)
    assert recs["x"] == pytest.approx(-0.2 * math.log(4) / 12)
    assert recs["x"] < 0


def test_edge_cases() -> None:
    index = _index({1: ([10, 11], 1.0), 2: ([11, 12], 2.0), 3: ([12, 13, 14], 3.0)})
    assert index.recommend([]) == []
    assert index.recommend([999]) == []
    assert index.recommend([998, 999], max_items_in_session=0) == []
    assert index.recommend([10], how_many=0) == []
    assert [i for i, _ in index.recommend([10], how_many=100)] == [11]  # fewer than asked
    # absurd sizes allocate nothing big (scratch is bounded by the index)
    huge = index.recommend([11], m=10**12, k=10**12, how_many=10**12, max_items_in_session=0)
    assert huge == index.recommend([11], how_many=5)
    # an unknown item still counts for positions: a newer unknown click halves the decay
    assert index.recommend([10, 999], max_items_in_session=0) != index.recommend([10])
    assert {i for i, _ in index.recommend([11, 999], max_items_in_session=0)} == {10, 11, 12}
    # repeated clicks: only the most recent counts, and the newest item is removed
    assert 12 not in [i for i, _ in index.recommend([12, 11, 12], max_items_in_session=0)]
    empty = VMISIndex.build([], [], [])
    assert empty.recommend([1]) == [] and empty.max_session_length is None
    empty.upsert_session("a", [1, 2], 1.0)
    assert [i for i, _ in empty.recommend([1])] == [2]
    one = VMISIndex.build([1], [10], [1.0], max_session_length=5)
    assert one.recommend([10]) == []
    assert (one.n_sessions, one.n_items, one.n_clicks) == (1, 1, 1)


def test_long_sessions_are_left_out() -> None:
    rng = np.random.default_rng(7)
    sessions = {s: (list(rng.choice(50, size=3, replace=False)), float(s)) for s in range(400)}
    sessions[1000] = (list(range(100, 140)), 500.0)  # far above the 99.5th percentile
    index = _index(sessions, max_len=None)
    assert index.max_session_length == 3
    assert index.item_sessions(100) == []
    assert index.n_sessions == 400


def test_recent_sessions_and_eviction() -> None:
    # item 1 is in sessions 0..9 (time = id); m = 3 keeps the three newest
    sessions = {s: ([1, 100 + s], float(s)) for s in range(10)}
    index = _index(sessions, m=3)
    assert index.item_sessions(1) == list(range(9, -1, -1))
    assert {i for i, _ in index.recommend([1])} == {109, 108, 107}
    assert {i for i, _ in index.recommend([1], m=5, k=2)} == {109, 108}


# --- a growing index equals a rebuilt one -----------------------------------------------------


def assert_same_index(got: VMISIndex, want: VMISIndex, probes: list[list]) -> None:
    assert (got.n_sessions, got.n_items, got.n_clicks) == (
        want.n_sessions,
        want.n_items,
        want.n_clicks,
    )
    for item in want.items.ids:
        assert got.item_sessions(item) == want.item_sessions(item), item
        assert got.idf(item) == pytest.approx(want.idf(item), rel=1e-12, abs=1e-12)
    for session in want.sessions.ids:
        assert set(got.session_items(session)) == set(want.session_items(session))
        assert got.session_time(session) == want.session_time(session)
    for probe in probes:
        for k in (500, 20):
            assert same_top(got.recommend(probe, k=k), want.recommend(probe, k=k)), probe


def test_append_equals_rebuild(real) -> None:
    _, train, test = real
    n = len(train)
    order = np.argsort(train.timestamps, kind="stable")
    sids, iids, ts = train.session_ids[order], train.item_ids[order], train.timestamps[order]
    cut = int(n * 0.8)
    full = VMISIndex.build(sids, iids, ts, m=100)
    # the length cut is fixed at build: the early part uses the full data's threshold
    grown = VMISIndex.build(
        sids[:cut], iids[:cut], ts[:cut], m=100, max_session_length=full.max_session_length
    )
    for lo in range(cut, n, 997):  # uneven chunks: sessions are split across appends
        hi = min(n, lo + 997)
        grown.append(sids[lo:hi], iids[lo:hi], ts[lo:hi])
    probes = _prefixes(test, 60)
    assert_same_index(grown, full, probes)


def test_upsert_and_remove_equal_rebuild(real) -> None:
    _, train, test = real
    rng = random.Random(11)
    groups = group_sessions(train)[:3000]
    rows = {
        sid: (list(dict.fromkeys(items.tolist())), float(i))
        for i, (sid, items) in enumerate(groups)
    }
    index = _index(rows, m=50, max_len=30)
    state = dict(rows)  # expected content: session -> (items, time), in first-appearance order
    items_pool = list(dict.fromkeys(i for items, _ in rows.values() for i in items))[:2000]
    items_pool += ["new-a", "new-b"]
    session_ids = list(rows)
    clock = 5000.0
    for step in range(2500):
        op = rng.random()
        clock += rng.choice([0.0, 1.0])  # equal timestamps happen
        if op < 0.45:  # a live session gets a new item: its row is replaced
            sid = rng.choice(session_ids)
            items = list(state.get(sid, ([], 0))[0]) + [rng.choice(items_pool)]
            items = list(dict.fromkeys(items))
            index.upsert_session(sid, items, clock)
            state[sid] = (items, clock)
        elif op < 0.65:  # a brand-new session
            sid = f"new{step}"
            session_ids.append(sid)
            items = rng.sample(items_pool, rng.randint(1, 4))
            index.upsert_session(sid, items, clock)
            state[sid] = (items, clock)
        elif op < 0.97:  # a session expires or is flagged as a bot
            sid = rng.choice(session_ids)
            assert index.remove_session(sid) == (sid in state)
            state.pop(sid, None)
        else:  # too long: kept out of the index
            sid = rng.choice(session_ids)
            items = rng.sample(items_pool, 31)
            index.upsert_session(sid, items, clock)
            state[sid] = (items, clock)
        if step == 1200:
            index.compact()
    # rebuild from the resulting sessions, in the order the growing index first saw them
    code = {sid: index.sessions.code(sid) for sid in state}
    ordered = {sid: state[sid] for sid in sorted(state, key=code.__getitem__)}
    want = _index(ordered, m=50, max_len=30)
    probes = _prefixes(test, 40)
    assert_same_index(index, want, probes)
    assert_same_index(index.rebuilt(), want, probes[:20])
    assert index.n_sessions == sum(1 for items, _ in state.values() if len(set(items)) <= 30)


def test_upsert_into_empty_index_and_string_ids() -> None:
    index = VMISIndex(m=10, max_session_length=10)
    assert index.recommend(["a"]) == []
    index.upsert_session("s1", ["a", "b"], 1.0)
    index.upsert_session("s2", ["a", "c"], 2.0)
    index.append(["s2", "s3"], ["d", "a"], [3.0, 4.0])
    assert index.item_sessions("a") == ["s3", "s2", "s1"]
    assert index.session_time("s2") == 3.0
    assert {i for i, _ in index.recommend(["a"])} == {"b", "c", "d"}
    assert index.remove_session("s2") is True
    assert index.remove_session("s2") is False
    assert index.remove_session("never") is False
    assert {i for i, _ in index.recommend(["a"])} == {"b"}
    index.upsert_session("s1", [], 5.0)  # empty row = removal
    assert index.n_sessions == 1 and index.n_clicks == 1


def test_id_map_first_appearance() -> None:
    mapping, codes = IdMap.from_values(np.array([30, 10, 30, 20, 10]))
    assert mapping.ids == [30, 10, 20]
    assert codes.tolist() == [0, 1, 0, 2, 1]
    smap, scodes = IdMap.from_values(["b", "a", "b"])
    assert smap.ids == ["b", "a"] and scodes.tolist() == [0, 1, 0]
    assert mapping.code(np.int64(20)) == 2 and mapping.code(99) is None
    assert mapping.encode([20, 99]).tolist() == [2, -1]
    assert mapping.add(99) == 3 and mapping.decode([3, 0]) == [99, 30]


@settings(max_examples=60, deadline=None)
@given(
    clicks=st.lists(
        st.tuples(st.integers(0, 25), st.integers(0, 12), st.integers(0, 5)),
        min_size=1,
        max_size=120,
    ),
    session=st.lists(st.integers(0, 14), min_size=1, max_size=6),
    m=st.integers(1, 8),
    k=st.integers(1, 8),
    max_items=st.integers(0, 4),
)
def test_random_small_indexes_match_reference(clicks, session, m, k, max_items) -> None:
    # few distinct timestamps and items: many ties in time, similarity and score
    sids, iids, ts = zip(*clicks, strict=True)
    index = VMISIndex.build(list(sids), list(iids), [float(t) for t in ts], m=m)
    ref = ReferenceVMIS([(s, i, float(t)) for s, i, t in clicks], m=m)
    assert index.max_session_length == ref.max_session_length
    args = dict(k=k, how_many=5, max_items_in_session=max_items)
    assert same_top(index.recommend(session, **args), ref.recommend(session, **args))


def test_pools_are_compacted_automatically() -> None:
    index = VMISIndex(m=20, max_session_length=10)
    index.upsert_session("keep", [1, 2, 3], 0.0)
    tops = []
    for n in range(30_000):  # sessions come and go: their pool ranges become waste
        index.upsert_session(n, [n % 50, 50 + n % 7, 100], float(n))
        if n >= 100:
            index.remove_session(n - 100)
        tops.append(int(index.state[2]))
    assert max(tops) > tops[-1]  # the session pool was compacted at least once
    assert len(index.se_pool) < 200_000
    want = index.rebuilt()
    assert_same_index(index, want, [[1], [100], [3, 100], [52, 7]])


def test_lists_slide_inside_their_regions() -> None:
    # expiries leave from the oldest end, new sessions arrive at the newest end; a list whose
    # region is full at the newest end but has room at the oldest end slides back
    index = _index({s: ([1, 2], float(s)) for s in range(12)}, max_len=10)
    for s in range(4):
        assert index.remove_session(s)
    assert int(index.it_start[0]) > int(index.it_base[0])  # slid, not shifted
    for s in range(12, 16):
        index.upsert_session(s, [1], float(s))
    index.upsert_session(99, [1, 2], 6.5)  # lands in the middle
    index.upsert_session(5, [1, 2, 3], 20.0)  # moves to the newest end
    want = index.rebuilt()
    assert index.item_sessions(1) == want.item_sessions(1)
    assert index.item_sessions(1)[:3] == [5, 15, 14]
    assert_same_index(index, want, [[1], [2], [3], [2, 1]])
