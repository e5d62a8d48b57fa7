"""The VMIS-kNN index over the shop's own ids (strings), kept live while the API reads it.

A thin layer over udfs.vmisknn.VMISIndex (which maps ids to dense codes itself): one lock
serialises writes (upsert/remove from the change feed) against reads (the kernel changes its
arrays in place), the parameters are fixed per index, and popularity (sessions per item, read
from the index) backs answers for sessions whose items are all unknown. The kernel's index
keeps the code and id of every session it has seen; `shed` swaps in a fresh index of the live
sessions once those that left are as many as the live ones, so memory follows the view's
horizon, not the uptime.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from udfs.params import VmisParams

MIN_SESSIONS_FOR_CUT = 1000
SMALL_HISTORY_MAX_LENGTH = 100
DAY_S = 86_400
SHED_MIN = 50_000  # sessions gone before `shed` rebuilds the index

_warm_lock = threading.Lock()
_warmed = False


Params = VmisParams  # VMIS-kNN's parameters, defined in udfs/params.py
log = logging.getLogger(__name__)


def warm_kernels(params: Params) -> None:
    """Load the compiled kernels (Numba) with one small call of each path the API and the UDF
    server take, so that the first request does not wait for them. Once per process."""
    global _warmed
    with _warm_lock:
        if _warmed:
            return
        from udfs.vmisknn import VMISIndex

        tiny = VMISIndex.build(
            np.asarray(["w1", "w1", "w2", "w2"], dtype=str),
            np.asarray(["a", "b", "a", "c"], dtype=str),
            np.asarray([1.0, 1.0, 2.0, 2.0]),
            m=params.m,
            max_session_length=SMALL_HISTORY_MAX_LENGTH,
        )
        args = dict(k=params.k, how_many=params.how_many,
                    max_items_in_session=params.max_items_in_session,
                    idf_weighting=params.idf_weighting)  # fmt: skip
        tiny.recommend(["a", "b"], **args)
        tiny.recommend_flat([0, 1], ["a"], **args)
        tiny.upsert_session("w3", ["b", "c"], 3.0)
        tiny.remove_session("w3")
        _warmed = True


class LiveIndex:
    """VMIS-kNN over string ids: build from history, upsert/remove sessions, recommend."""

    def __init__(self, params: Params | None = None) -> None:
        self.params = params or Params()
        self._lock = threading.Lock()
        self._index = None
        self._popular: tuple[float, list[tuple[str, float]]] = (0.0, [])
        self.last_change = 0.0  # epoch seconds of the newest history row applied
        self.updates = 0
        self.shed_min = SHED_MIN
        self.sheds = 0

    # --- building --------------------------------------------------------------------------
    def build(self, rows: Iterable[tuple[str, Sequence[str], float]]) -> None:
        """Replace the index with history rows (session_id, item ids, last event epoch s)."""
        sessions: list[str] = []
        items: list[str] = []
        times: list[float] = []
        for session_id, session_items, ts in rows:
            for item in dict.fromkeys(session_items):
                sessions.append(str(session_id))
                items.append(str(item))
                times.append(float(ts))
        self.build_clicks(sessions, items, times)

    def build_clicks(
        self,
        session_ids: Sequence[str] | np.ndarray,
        item_ids: Sequence[str] | np.ndarray,
        timestamps: Sequence[float] | np.ndarray,
    ) -> None:
        """Replace the index with clicks (ids as strings, epoch seconds)."""
        from udfs.vmisknn import VMISIndex

        times = np.asarray(timestamps, dtype=np.float64)
        sessions = np.asarray(session_ids, dtype=str)
        # Serenade leaves out sessions longer than the 99.5th percentile, fixed at build time.
        # A live index often starts from a short history (a fresh `flashrec up`), whose
        # percentile would shut out every longer session to come: cap at 100 items instead.
        small = len(np.unique(sessions)) < MIN_SESSIONS_FOR_CUT
        index = VMISIndex.build(
            sessions,
            np.asarray(item_ids, dtype=str),
            times,
            m=self.params.m,
            max_session_length=SMALL_HISTORY_MAX_LENGTH if small else None,
        )
        warm_kernels(self.params)  # before the index counts as ready
        with self._lock:
            self._index = index
            self._popular = (0.0, [])
            self.last_change = float(times.max()) if len(times) else 0.0

    def build_from_tsv(self, path: Path | str) -> None:
        """Build from a session-rec TSV file (SessionId, ItemId, Time)."""
        from recommender.sessions_io import read_sessions

        data = read_sessions(path)
        self.build_clicks(data.session_ids.astype(str), data.item_ids.astype(str), data.timestamps)

    # --- live changes ----------------------------------------------------------------------
    def upsert(self, session_id: str, items: Sequence[str], ts: float) -> None:
        """Set a history session's items (a new session, or more clicks of a live one)."""
        with self._lock:
            self._writable().upsert_session(str(session_id), [str(i) for i in items], ts)
            self.last_change = max(self.last_change, float(ts))
            self.updates += 1

    def remove(self, session_id: str) -> None:
        """Drop a history session (it left the view's horizon, or turned out to be a bot)."""
        with self._lock:
            if self._writable().remove_session(str(session_id)):
                self.updates += 1

    def shed(self) -> bool:
        """Swap in a fresh index of the live sessions once the sessions that left (whose
        codes and ids the index keeps) are as many as the live ones and at least
        `shed_min`; True if it did. Built outside the lock, so readers go on meanwhile:
        only the index's one writer (the sync thread) may call it."""
        index = self._index
        if index is None:
            return False
        live = index.n_sessions
        gone = len(index.sessions) - live
        if gone < max(live, self.shed_min):
            return False
        started = time.perf_counter()
        fresh = index.rebuilt()
        with self._lock:
            self._index = fresh
        self.sheds += 1
        log.info("live index rebuilt without the %d sessions that left: %d kept (%.2f s)",
                 gone, fresh.n_sessions, time.perf_counter() - started)  # fmt: skip
        return True

    def _writable(self):
        if self._index is None:
            from udfs.vmisknn import VMISIndex

            warm_kernels(self.params)
            self._index = VMISIndex(m=self.params.m, max_session_length=SMALL_HISTORY_MAX_LENGTH)
        return self._index

    # --- reading ---------------------------------------------------------------------------
    def recommend(
        self, items: Sequence[str], how_many: int | None = None
    ) -> list[tuple[str, float]]:
        """Next items for an evolving session (oldest click first), best first.

        Unknown items match nothing but count for positions (kernel rule); [] when no
        neighbour is found.
        """
        p = self.params
        with self._lock:
            if self._index is None:
                return []
            return self._index.recommend(
                items,
                k=p.k,
                how_many=how_many or p.how_many,
                max_items_in_session=p.max_items_in_session,
                idf_weighting=p.idf_weighting,
            )

    def recommend_batch(
        self, sessions: Sequence[Sequence[str]], how_many: int
    ) -> list[list[tuple[str, float]]]:
        """One list per session, in one kernel call (the UDF server's path)."""
        p = self.params
        with self._lock:
            if self._index is None:
                return [[] for _ in sessions]
            return self._index.recommend_batch(
                sessions,
                k=p.k,
                how_many=how_many,
                max_items_in_session=p.max_items_in_session,
                idf_weighting=p.idf_weighting,
            )

    def recent_sessions(self, within_s: float, limit: int) -> list[list[str]]:
        """The items of the indexed sessions whose last event is at most `within_s` seconds
        older than the newest one applied (`last_change`): the newest `limit` of them."""
        with self._lock:
            index = self._index
            if index is None:
                return []
            n = len(index.sessions)
            times = index.se_time[:n]
            live = np.flatnonzero(
                (index.se_indexed[:n] == 1) & (times >= self.last_change - within_s)
            )
            if len(live) > limit:
                live = live[np.argsort(-times[live], kind="stable")[:limit]]
            lens = index.se_len[live]
            codes = _item_codes(index, live).tolist()  # a copy
            ids = index.items.ids  # append-only: the codes above stay valid
        cuts = np.cumsum(lens).tolist()
        return [[ids[c] for c in codes[a:b]] for a, b in zip([0, *cuts[:-1]], cuts, strict=True)]

    def day_before_counts(self) -> dict[str, int]:
        """{item: history sessions holding it} over the sessions whose last event lies in the
        UTC day before the one of the newest history row applied."""
        end = self.last_change // DAY_S * DAY_S
        return self._sessions_per_item(end - DAY_S, end)

    def recent_counts(self, within_s: float) -> dict[str, int]:
        """{item: history sessions holding it} over the sessions whose last event is at most
        `within_s` seconds older than the newest history row applied."""
        return self._sessions_per_item(self.last_change - within_s, float("inf"))

    def _sessions_per_item(self, since: float, until: float) -> dict[str, int]:
        """{item: history sessions holding it} over the sessions whose last event lies in
        [since, until), those too long to be indexed included; {} before the first row."""
        with self._lock:
            index = self._index
            if index is None or not self.last_change:
                return {}
            n = len(index.sessions)
            times = index.se_time[:n]
            chosen = np.flatnonzero((index.se_len[:n] > 0) & (times >= since)
                                    & (times < until))  # fmt: skip
            codes = _item_codes(index, chosen)
            counts = np.bincount(codes) if len(codes) else np.zeros(0, np.int64)
            ids = index.items.ids
        return {ids[c]: int(counts[c]) for c in np.flatnonzero(counts).tolist()}

    def popular(self, how_many: int, exclude: Iterable[str] = ()) -> list[tuple[str, float]]:
        """Items in the most history sessions (recomputed at most once a second)."""
        stamp, top = self._popular
        if time.monotonic() - stamp > 1.0 or not top:
            with self._lock:
                top = self._top_items(100)
            self._popular = (time.monotonic(), top)
        skip = set(exclude)
        return [pair for pair in top if pair[0] not in skip][:how_many]

    def _top_items(self, n: int) -> list[tuple[str, float]]:
        if self._index is None:
            return []
        counts = self._index.it_len[: len(self._index.items)]
        n = min(n, int((counts > 0).sum()))
        if n == 0:
            return []
        best = np.argpartition(-counts, n - 1)[:n]
        best = best[np.lexsort((best, -counts[best]))]
        ids = self._index.items.ids
        return [(str(ids[c]), float(counts[c])) for c in best.tolist()]

    @property
    def n_sessions(self) -> int:
        return self._index.n_sessions if self._index is not None else 0

    @property
    def n_items(self) -> int:
        return self._index.n_items if self._index is not None else 0

    @property
    def n_clicks(self) -> int:
        return self._index.n_clicks if self._index is not None else 0

    @property
    def ready(self) -> bool:
        return self._index is not None


def _item_codes(index, sessions: np.ndarray) -> np.ndarray:
    """The item codes of the given session codes, one session after the other (the index's
    lock held)."""
    lens = index.se_len[sessions]
    pos = np.repeat(index.se_start[sessions] - (np.cumsum(lens) - lens), lens)
    return index.se_pool[pos + np.arange(int(lens.sum()))]
