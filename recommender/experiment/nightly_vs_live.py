"""The evaluation loop: every view of the test day is a next-item question to each model.

At the cut (midnight) the nightly models are built from the views of sql/ at that clock:
VMIS-kNN from vmis_history, "also viewed" from co_view_pairs over the previous day (the
batch job's window), popularity from the previous day's views. They never change again.
The live models start from the same state: the VMIS-kNN index gets every click (the session's
vmis_history row, upserted as the serving layer does from the change feed), and co_view_pairs
(30-minute window, as in sql/) and the last hour's popularity are recomputed every
`refresh_s` seconds of event time, as the embedded engine does (co_view_pairs by its
incremental maintainer, or recomputed from the SQL with `incremental=False`).

"also_blend" is the live also-viewed list filled up with the nightly one (a serving choice
for quiet hours, when the 30-minute view has few pairs).

Each view whose session has an earlier view (consecutive repeats of a product dropped, as
Serenade's serving does) is one evaluation: input the session's last `max_items` views,
target the viewed product; every model is asked before the click updates the live state.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

import numpy as np

from recommender.experiment.clicks import VIEW
from recommender.experiment.live import LiveHistory, RollingPopularity, also_viewed_table
from recommender.experiment.scenario import Replay
from recommender.experiment.sqlviews import SqlViews
from udfs.params import VmisParams

log = logging.getLogger(__name__)

RECOMMENDERS = (
    "vmis_nightly", "vmis_live", "also_nightly", "also_live", "also_blend", "popular_nightly",
    "popular_live",
)  # fmt: skip


_VMIS = VmisParams()


@dataclass(frozen=True)
class Params:
    m: int = _VMIS.m
    k: int = _VMIS.k
    max_items: int = _VMIS.max_items_in_session  # newest clicks of the session used as input
    cutoff: int = 20
    idf_weighting: float = _VMIS.idf_weighting
    refresh_s: float = 30.0  # live views are recomputed this often (event time)
    nightly_window_h: float = 24.0  # look-back of the nightly co_view_pairs batch
    popular_window_min: float = 60.0  # look-back of the live popularity baseline
    incremental: bool = True  # live co_view_pairs by the engine's incremental maintainer


@dataclass
class Evaluations:
    """One row per evaluation; ranks are 1..cutoff, 0 when the target is not in the top."""

    ts_ms: np.ndarray
    session: np.ndarray
    ranks: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.ts_ms)


def _rank(top: list[int], target: int) -> int:
    try:
        return top.index(target) + 1
    except ValueError:
        return 0


def _blend(first: list[int], then: list[int], how_many: int) -> list[int]:
    """`first`, filled up to `how_many` with the items of `then` it lacks."""
    if len(first) >= how_many or not then:
        return first
    out = list(first)
    for x in then:
        if x not in out:
            out.append(x)
            if len(out) == how_many:
                break
    return out


def _index(rows: list[tuple[int, list[int], float]], params: Params) -> Any:
    from udfs.vmisknn import VMISIndex

    sessions = [s for s, items, _ in rows for _ in items]
    items = [i for _, its, _ in rows for i in its]
    times = [t for _, its, t in rows for _ in its]
    return VMISIndex.build(sessions, items, np.asarray(times, dtype=np.float64), m=params.m)


def _popular(clicks: Any, lo: int, hi: int, how_many: int) -> list[int]:
    views = clicks.product[lo:hi][clicks.action[lo:hi] == VIEW]
    counts = np.bincount(views, minlength=len(clicks.product_ids))
    order = np.lexsort((np.arange(len(counts)), -counts))
    return [int(p) for p in order[:how_many] if counts[p] > 0]


def run(
    replay: Replay, params: Params, progress: Callable[[int], None] | None = None
) -> tuple[Evaluations, dict[str, Any]]:
    """Replay the test period; returns the evaluations and facts about the run."""
    c = replay.clicks
    ts, sess, prod, act = c.ts_ms, c.session, c.product, c.action
    i_cut, i_end = c.index_at(replay.cut_ms), c.index_at(replay.end_ms)
    if i_cut == 0:
        raise ValueError("no events before the cut: the nightly models would be empty")
    timings: dict[str, float] = {}
    started = time.perf_counter()

    # --- midnight: the nightly batch job -----------------------------------------------------
    window = timedelta(hours=params.nightly_window_h)
    batch = SqlViews(c, {"co_view_pairs": window})
    batch.append(0, i_cut)
    now = int(ts[i_cut - 1])
    history = batch.vmis_history(now)
    also_nightly = also_viewed_table(batch.co_view(now), c.product_ids, params.cutoff)
    batch.con.close()
    nightly, live = _index(history, params), _index(history, params)
    lo = c.index_at(replay.cut_ms - int(window.total_seconds() * 1000))
    popular_nightly = _popular(c, lo, i_cut, params.cutoff)
    timings["nightly_build_s"] = time.perf_counter() - started

    # --- the live state at midnight: the same history, kept incrementally ---------------------
    t0 = time.perf_counter()
    state = LiveHistory()
    for i in range(i_cut):
        state.add(int(sess[i]), int(prod[i]), int(act[i]), int(ts[i]))
    pop_ms = int(params.popular_window_min * 60_000)
    rolling = RollingPopularity(pop_ms, params.cutoff)
    for i in range(c.index_at(replay.cut_ms - pop_ms), i_cut):
        if act[i] == VIEW:
            rolling.add(int(prod[i]), int(ts[i]))
    stream = SqlViews(c, incremental=params.incremental)
    feed_from = c.index_at(replay.cut_ms - 31 * 60_000)
    stream.append(feed_from, i_cut)
    fed = i_cut
    timings["live_start_s"] = time.perf_counter() - t0

    # --- the test period, click by click -----------------------------------------------------
    tails: dict[int, list[int]] = {}
    for i in range(max(0, c.index_at(replay.cut_ms - 3_600_000)), i_cut):
        if act[i] == VIEW:  # sessions running at midnight keep their last views
            tail = tails.setdefault(int(sess[i]), [])
            if not tail or tail[-1] != prod[i]:
                tail.append(int(prod[i]))
                del tail[: -params.max_items]
    refresh_ms = max(1, int(params.refresh_s * 1000))
    next_refresh = int(ts[i_cut])  # refresh before the first click of the day
    also_live: dict[int, list[int]] = also_nightly
    popular_live = popular_nightly
    out_ts: list[int] = []
    out_sess: list[int] = []
    ranks: dict[str, list[int]] = {name: [] for name in RECOMMENDERS}
    r_vn, r_vl = ranks["vmis_nightly"], ranks["vmis_live"]
    r_an, r_al, r_ab = ranks["also_nightly"], ranks["also_live"], ranks["also_blend"]
    r_pn, r_pl = ranks["popular_nightly"], ranks["popular_live"]
    kw = dict(k=params.k, how_many=params.cutoff, max_items_in_session=params.max_items,
              idf_weighting=params.idf_weighting)
    refreshes, refresh_s, index_s, rec_s = 0, 0.0, 0.0, 0.0
    loop_start = time.perf_counter()
    for i in range(i_cut, i_end):
        t, s, p, a = int(ts[i]), int(sess[i]), int(prod[i]), int(act[i])
        if t >= next_refresh:
            r0 = time.perf_counter()
            stream.append(fed, i)
            fed = i
            clock = int(ts[i - 1])
            also_live = also_viewed_table(stream.co_view(clock), c.product_ids, params.cutoff)
            popular_live = rolling.top(clock)
            refreshes += 1
            if refreshes % 64 == 0:
                stream.drop_before(clock - 31 * 60_000)
            next_refresh = (t // refresh_ms + 1) * refresh_ms
            refresh_s += time.perf_counter() - r0
        if a == VIEW:
            tail = tails.setdefault(s, [])
            if tail and tail[-1] != p:
                r0 = time.perf_counter()
                out_ts.append(t)
                out_sess.append(s)
                r_vn.append(_rank([x for x, _ in nightly.recommend(tail, **kw)], p))
                r_vl.append(_rank([x for x, _ in live.recommend(tail, **kw)], p))
                night_list = also_nightly.get(tail[-1], [])
                live_list = also_live.get(tail[-1], [])
                r_an.append(_rank(night_list, p))
                r_al.append(_rank(live_list, p))
                r_ab.append(_rank(_blend(live_list, night_list, params.cutoff), p))
                r_pn.append(_rank(popular_nightly, p))
                r_pl.append(_rank(popular_live, p))
                rec_s += time.perf_counter() - r0
            if not tail or tail[-1] != p:
                tail.append(p)
                del tail[: -params.max_items]
            rolling.add(p, t)
        r0 = time.perf_counter()
        state.add(s, p, a, t)
        row = state.row(s)
        if row is not None:
            live.upsert_session(s, row[0], row[1])
        elif s in state.items:  # turned into a bot: out of the index
            live.remove_session(s)
        index_s += time.perf_counter() - r0
        if progress is not None and (i & 4095) == 0:
            progress(t)
    if progress is not None:
        progress(replay.end_ms)
    stream.con.close()
    timings.update(
        loop_s=time.perf_counter() - loop_start, refresh_s=refresh_s, index_update_s=index_s,
        recommend_s=rec_s,
    )  # fmt: skip
    evals = Evaluations(
        np.asarray(out_ts, dtype=np.int64),
        np.asarray(out_sess, dtype=np.int64),
        {name: np.asarray(v, dtype=np.int16) for name, v in ranks.items()},
    )
    info = {
        "params": asdict(params),
        "events_total": len(c),
        "events_history": i_cut,
        "events_test": i_end - i_cut,
        "evaluations": len(evals),
        "test_sessions": int(len(np.unique(evals.session))),
        "products": len(c.product_ids),
        "nightly_index": {"sessions": nightly.n_sessions, "items": nightly.n_items},
        "live_index_end": {"sessions": live.n_sessions, "items": live.n_items},
        "nightly_co_view_products": len(also_nightly),
        "live_refreshes": refreshes,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }
    return evals, info
