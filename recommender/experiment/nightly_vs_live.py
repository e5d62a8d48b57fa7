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
for quiet hours, when the 30-minute view has few pairs). "blend" is the served blended
recommender (recommender/blend.py, recommender/experiment/blended.py), asked beside each of
its sources.

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

from recommender.blend_tuning import CandidateLog
from recommender.experiment import blended
from recommender.experiment.clicks import VIEW
from recommender.experiment.live import LiveHistory, RollingPopularity, also_viewed_table
from recommender.experiment.scenario import Replay
from recommender.experiment.sqlviews import SqlViews
from udfs.params import VmisParams

log = logging.getLogger(__name__)

RECOMMENDERS = (
    "vmis_nightly", "vmis_live", "also_nightly", "also_live", "also_blend", "popular_nightly",
    "popular_live", *blended.NAMES,
)  # fmt: skip
# the live views' events: co_view_pairs' 30-minute window and a minute more (ms)
FEED_MS = 31 * 60_000


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
    blend: blended.BlendParams = blended.BlendParams()


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
    replay: Replay, params: Params, progress: Callable[[int], None] | None = None,
    log: CandidateLog | None = None,
) -> tuple[Evaluations, dict[str, Any]]:
    """Replay the test period; returns the evaluations and facts about the run. With `log`,
    every question's blend candidates are logged there (for choosing the weights)."""
    c = replay.clicks
    i_cut = c.index_at(replay.cut_ms)
    if i_cut == 0:
        raise ValueError("no events before the cut: the nightly models would be empty")
    timings: dict[str, float] = {}
    started = time.perf_counter()
    nightly = _Nightly.build(replay, params, i_cut)
    timings["nightly_build_s"] = time.perf_counter() - started
    t0 = time.perf_counter()
    live = _Live(replay, params, i_cut, nightly)
    timings["live_start_s"] = time.perf_counter() - t0
    questions = _Questions(params, log)
    loop_start = time.perf_counter()
    _replay_day(replay, params, nightly, live, questions, progress)
    timings.update(
        loop_s=time.perf_counter() - loop_start, refresh_s=live.refresh_s,
        index_update_s=live.index_s, recommend_s=questions.seconds,
    )  # fmt: skip
    evals = questions.evaluations()
    return evals, _facts(replay, params, nightly, live, evals, timings)


@dataclass
class _Nightly:
    """The models built at midnight from the views of sql/, which never change."""

    history: list[tuple[int, list[int], float]]  # vmis_history's rows
    index: Any  # VMIS-kNN over them
    also_viewed: dict[int, list[int]]  # from co_view_pairs over the batch window
    popular: list[int]  # the batch window's most viewed products

    @classmethod
    def build(cls, replay: Replay, params: Params, i_cut: int) -> _Nightly:
        """The nightly batch job over the events before the cut."""
        c = replay.clicks
        window = timedelta(hours=params.nightly_window_h)
        batch = SqlViews(c, {"co_view_pairs": window})
        batch.append(0, i_cut)
        now = int(c.ts_ms[i_cut - 1])
        history = batch.vmis_history(now)
        also_viewed = also_viewed_table(batch.co_view(now), c.product_ids, params.cutoff)
        batch.con.close()
        lo = c.index_at(replay.cut_ms - int(window.total_seconds() * 1000))
        return cls(history, _index(history, params), also_viewed,
                   _popular(c, lo, i_cut, params.cutoff))  # fmt: skip


class _Live:
    """The live models, from the nightly state on: the VMIS-kNN index gets every click;
    co_view_pairs and popularity are recomputed every `refresh_s` of event time."""

    def __init__(self, replay: Replay, params: Params, i_cut: int, nightly: _Nightly) -> None:
        c = self.clicks = replay.clicks
        self.params = params
        self.index = _index(nightly.history, params)
        self.history = LiveHistory()  # the same history, kept incrementally
        for i in range(i_cut):
            self.history.add(int(c.session[i]), int(c.product[i]), int(c.action[i]),
                             int(c.ts_ms[i]))  # fmt: skip
        pop_ms = int(params.popular_window_min * 60_000)
        self.rolling = RollingPopularity(pop_ms, params.cutoff)
        for i in range(c.index_at(replay.cut_ms - pop_ms), i_cut):
            if c.action[i] == VIEW:
                self.rolling.add(int(c.product[i]), int(c.ts_ms[i]))
        self.stream = SqlViews(c, incremental=params.incremental)
        self.stream.append(c.index_at(replay.cut_ms - FEED_MS), i_cut)
        self.fed = i_cut  # events before this one are in the views' table
        self.also_viewed = nightly.also_viewed
        self.popular = nightly.popular
        self.refresh_ms = max(1, int(params.refresh_s * 1000))
        self.next_refresh = int(c.ts_ms[i_cut])  # refresh before the first click of the day
        self.refreshes = 0
        self.refresh_s = self.index_s = 0.0
        self.sources = blended.BlendSources(params.blend, c.categories)

    def refresh(self, i: int, t: int) -> None:
        """Feed the events before click i (at t) to the views; recompute the live lists."""
        started = time.perf_counter()
        c = self.clicks
        self.stream.append(self.fed, i)
        self.fed = i
        clock = int(c.ts_ms[i - 1])
        self.also_viewed = also_viewed_table(self.stream.co_view(clock), c.product_ids,
                                             self.params.cutoff)  # fmt: skip
        self.popular = self.rolling.top(clock)
        self.sources.update_trending(self.stream.trending(clock))
        self.sources.maybe_rebuild(self.history, clock, self.params.cutoff)
        self.sources.maybe_find_surge(self.history, clock)
        self.refreshes += 1
        if self.refreshes % 64 == 0:
            self.stream.drop_before(clock - FEED_MS)
        self.next_refresh = (t // self.refresh_ms + 1) * self.refresh_ms
        self.refresh_s += time.perf_counter() - started

    def click(self, s: int, p: int, a: int, t: int) -> None:
        """One click into the index: its session's vmis_history row, or out as a bot."""
        started = time.perf_counter()
        self.history.add(s, p, a, t)
        row = self.history.row(s)
        if row is not None:
            self.index.upsert_session(s, row[0], row[1])
        elif s in self.history.items:  # turned into a bot: out of the index
            self.index.remove_session(s)
        self.index_s += time.perf_counter() - started


class _Questions:
    """The evaluations asked so far: each model's rank of the viewed product."""

    def __init__(self, params: Params, log: CandidateLog | None = None) -> None:
        self.cutoff = params.cutoff
        self.log = log
        self.kw = dict(k=params.k, how_many=params.cutoff, max_items_in_session=params.max_items,
                       idf_weighting=params.idf_weighting)  # fmt: skip
        # the blend reads a longer VMIS-kNN list; its first `cutoff` are VMIS-kNN's answer
        self.kw_long = {**self.kw, "how_many": 2 * params.cutoff}
        self.ts: list[int] = []
        self.sessions: list[int] = []
        self.ranks: dict[str, list[int]] = {name: [] for name in RECOMMENDERS}
        self.seconds = 0.0

    def ask(self, t: int, s: int, p: int, tail: list[int], nightly: _Nightly,
            live: _Live) -> None:  # fmt: skip
        """Every model's rank of p, viewed at t in session s after the views in `tail`
        (oldest first; VMIS-kNN reads its newest `max_items`)."""
        started = time.perf_counter()
        self.ts.append(t)
        self.sessions.append(s)
        ranks, kw = self.ranks, self.kw
        ranks["vmis_nightly"].append(_rank([x for x, _ in nightly.index.recommend(tail, **kw)], p))
        vmis = live.index.recommend(tail, **self.kw_long)
        ranks["vmis_live"].append(_rank([x for x, _ in vmis[: self.cutoff]], p))
        night_list = nightly.also_viewed.get(tail[-1], [])
        live_list = live.also_viewed.get(tail[-1], [])
        ranks["also_nightly"].append(_rank(night_list, p))
        ranks["also_live"].append(_rank(live_list, p))
        ranks["also_blend"].append(_rank(_blend(live_list, night_list, self.cutoff), p))
        ranks["popular_nightly"].append(_rank(nightly.popular, p))
        ranks["popular_live"].append(_rank(live.popular, p))
        lists = blended.ask(live.sources, vmis, live_list, tail, self.cutoff, self.log, p)
        for name, top in lists.items():
            ranks[name].append(_rank(top, p))
        self.seconds += time.perf_counter() - started

    def evaluations(self) -> Evaluations:
        return Evaluations(
            np.asarray(self.ts, dtype=np.int64),
            np.asarray(self.sessions, dtype=np.int64),
            {name: np.asarray(v, dtype=np.int16) for name, v in self.ranks.items()},
        )


def _running_tails(replay: Replay, params: Params, i_cut: int) -> dict[int, list[int]]:
    """The last views of the sessions running at midnight (the hour before the cut)."""
    c = replay.clicks
    tails: dict[int, list[int]] = {}
    for i in range(max(0, c.index_at(replay.cut_ms - 3_600_000)), i_cut):
        if c.action[i] == VIEW:
            tail = tails.setdefault(int(c.session[i]), [])
            if not tail or tail[-1] != c.product[i]:
                tail.append(int(c.product[i]))
                del tail[: -blended.SESSION_ITEMS]
    return tails


def _replay_day(replay: Replay, params: Params, nightly: _Nightly, live: _Live,
                questions: _Questions, progress: Callable[[int], None] | None) -> None:  # fmt: skip
    """The test period click by click: each view with an earlier view in its session is a
    question to every model, asked before the click updates the live state."""
    c = replay.clicks
    ts, sess, prod, act = c.ts_ms, c.session, c.product, c.action
    i_cut, i_end = c.index_at(replay.cut_ms), c.index_at(replay.end_ms)
    tails = _running_tails(replay, params, i_cut)
    for i in range(i_cut, i_end):
        t, s, p, a = int(ts[i]), int(sess[i]), int(prod[i]), int(act[i])
        if t >= live.next_refresh:
            live.refresh(i, t)
        if a == VIEW:
            tail = tails.setdefault(s, [])
            if tail and tail[-1] != p:
                questions.ask(t, s, p, tail, nightly, live)
            if not tail or tail[-1] != p:
                tail.append(p)
                del tail[: -blended.SESSION_ITEMS]
            live.rolling.add(p, t)
        live.click(s, p, a, t)
        if progress is not None and (i & 4095) == 0:
            progress(t)
    if progress is not None:
        progress(replay.end_ms)
    live.stream.con.close()


def _facts(replay: Replay, params: Params, nightly: _Nightly, live: _Live,
           evals: Evaluations, timings: dict[str, float]) -> dict[str, Any]:  # fmt: skip
    """Facts about the run, for the summary."""
    c = replay.clicks
    i_cut, i_end = c.index_at(replay.cut_ms), c.index_at(replay.end_ms)
    return {
        "params": asdict(params),
        "events_total": len(c),
        "events_history": i_cut,
        "events_test": i_end - i_cut,
        "evaluations": len(evals),
        "test_sessions": int(len(np.unique(evals.session))),
        "products": len(c.product_ids),
        "nightly_index": {"sessions": nightly.index.n_sessions, "items": nightly.index.n_items},
        "live_index_end": {"sessions": live.index.n_sessions, "items": live.index.n_items},
        "nightly_co_view_products": len(nightly.also_viewed),
        "live_refreshes": live.refreshes,
        "blend_fill_rebuilds": live.sources.rebuilds,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }
