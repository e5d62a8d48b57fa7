"""In-memory mirrors of co_view_pairs and trending_by_category for the blend: each follows its
view with a ViewFollower (index_sync.py), so a request reads no database.

Feeds (runtime.mirror_feed picks one):
- the embedded engine in this process (`flashrec up --api-port`): `engine.subscribe(view)`;
- another process on the embedded engine's PostgreSQL: the view's change feed table
  (PgSubscription) where the view has one (trending_by_category);
- otherwise (co_view_pairs, which has no feed table; RisingWave; any PostgreSQL-wire server):
  the whole view re-read every second and diffed row by row (RowDiffFeed).

A mirror is loaded from `SELECT * FROM view` read after its feed opened; a change seen twice
gives the same mirror (rows are keyed by the view's keys).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from recommender.blend import Trending, trending_table
from recommender.changefeed import ChangeBatch
from recommender.serving.index_sync import Feed, Paced, ViewFollower, epoch_seconds

Rows = Iterable[Sequence[Any]]

CO_VIEW = "co_view_pairs"
TRENDING = "trending_by_category"


def _hashable(row: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(tuple(v) if isinstance(v, list) else v for v in row)


def load_rows(dsn: str, view: str) -> ChangeBatch:
    """Every row of `view`, as the inserts of one batch."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        cur = conn.execute(f"SELECT * FROM {view}")
        columns = [d.name for d in cur.description]
        return ChangeBatch(view, 0, columns, [tuple(r) for r in cur])


class RowDiffFeed(Paced):
    """Changes of a small view found by re-reading all of it every `interval` seconds and
    diffing the rows (an update is a delete of the old row and an insert of the new one)."""

    def __init__(self, dsn: str, view: str, interval: float = 1.0) -> None:
        import psycopg

        self.view = view
        self.interval = interval
        self._conn = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
        self._seen: set[tuple[Any, ...]] = set()
        self._next = 0.0
        self._epoch = 0

    def _read(self) -> tuple[list[str], set[tuple[Any, ...]]]:
        cur = self._conn.execute(f"SELECT * FROM {self.view}")
        return [d.name for d in cur.description], {_hashable(r) for r in cur}

    def read_snapshot(self) -> ChangeBatch:
        columns, rows = self._read()
        self._seen = rows
        self._next = time.monotonic() + self.interval
        return ChangeBatch(self.view, 0, columns, list(rows))

    def poll(self, timeout: float) -> ChangeBatch | None:
        if not self.due(timeout):
            return None
        columns, rows = self._read()
        self._epoch += 1
        batch = ChangeBatch(self.view, self._epoch, columns, list(rows - self._seen),
                            list(self._seen - rows))  # fmt: skip
        self._seen = rows
        return batch

    def close(self) -> None:
        self._conn.close()


def _at(columns: Sequence[str], name: str, view: str) -> int:
    names = [c.lower() for c in columns]
    if name not in names:
        raise ValueError(f"{view} has no column {name}: {list(columns)}")
    return names.index(name)


class CoViewMirror(ViewFollower):
    """co_view_pairs in memory: each product's partners and their co_view_count."""

    what = "mirror"

    def __init__(self, open_feed: Callable[[], Feed], snapshot: Callable[[], ChangeBatch],
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(CO_VIEW, open_feed, snapshot, name=f"mirror-{CO_VIEW}", **kwargs)
        self._lock = threading.Lock()
        self._partners: dict[str, dict[str, int]] = {}
        self._ranked: dict[str, list[str]] = {}  # partners in answer order, made on demand

    @staticmethod
    def _change(partners: dict[str, dict[str, int]], columns: Sequence[str], inserts: Rows,
                deletes: Rows) -> set[str]:  # fmt: skip
        """Apply rows to `partners`; returns the products whose partners changed."""
        a, b = _at(columns, "product_a", CO_VIEW), _at(columns, "product_b", CO_VIEW)
        n = _at(columns, "co_view_count", CO_VIEW)
        touched: set[str] = set()
        for row in deletes:
            pa, pb = str(row[a]), str(row[b])
            for p, q in ((pa, pb), (pb, pa)):
                found = partners.get(p)
                if found is not None and found.pop(q, None) is not None and not found:
                    del partners[p]
                touched.add(p)
        for row in inserts:
            pa, pb, count = str(row[a]), str(row[b]), int(row[n])
            for p, q in ((pa, pb), (pb, pa)):
                partners.setdefault(p, {})[q] = count
                touched.add(p)
        return touched

    def load(self, rows: ChangeBatch) -> None:
        partners: dict[str, dict[str, int]] = {}
        self._change(partners, rows.columns, rows.inserts, ())
        with self._lock:
            self._partners, self._ranked = partners, {}

    def apply(self, batch: ChangeBatch) -> int:
        with self._lock:
            touched = self._change(self._partners, batch.columns, batch.inserts, batch.deletes)
            for p in touched:
                self._ranked.pop(p, None)
        return len(batch.inserts) + len(batch.deletes)

    def partners(self, product: str, how_many: int | None = None) -> list[str]:
        """The products paired with `product`, by co_view_count (highest first), then by id
        (the order of views.ALSO_VIEWED_SQL under the C collation)."""
        ranked = self._ranked.get(product)
        if ranked is None:
            with self._lock:
                found = self._partners.get(product)
                if not found:
                    return []
                ranked = sorted(found, key=lambda q: (-found[q], q))
                self._ranked[product] = ranked
        return ranked if how_many is None else ranked[:how_many]

    @property
    def pairs(self) -> int:
        with self._lock:
            return sum(len(found) for found in self._partners.values()) // 2

    def summary(self) -> str:
        return f"{self.pairs} pairs"

    def status(self) -> dict[str, Any]:
        return {**super().status(), "pairs": self.pairs}


class TrendingMirror(ViewFollower):
    """trending_by_category in memory: the products of every (category, window) by rank, and
    each category's products by engagement over all its windows (what the blend reads)."""

    what = "mirror"

    def __init__(self, open_feed: Callable[[], Feed], snapshot: Callable[[], ChangeBatch],
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(TRENDING, open_feed, snapshot, name=f"mirror-{TRENDING}", **kwargs)
        self._lock = threading.Lock()
        # category -> window start (epoch s) -> rank -> (product, engagement_score)
        self._windows: dict[str, dict[float, dict[int, tuple[str, float]]]] = {}
        self._latest: dict[str, list[str]] | None = None  # made on demand
        self._table: Trending | None = None

    @staticmethod
    def _change(windows: dict[str, dict[float, dict[int, tuple[str, float]]]],
                columns: Sequence[str], inserts: Rows, deletes: Rows) -> None:  # fmt: skip
        c, w = _at(columns, "category", TRENDING), _at(columns, "window_start", TRENDING)
        r, p = _at(columns, "rank", TRENDING), _at(columns, "product_id", TRENDING)
        e = _at(columns, "engagement_score", TRENDING)
        for row in deletes:
            category, start = str(row[c]), epoch_seconds(row[w])
            ranks = windows.get(category, {}).get(start)
            if ranks is not None and ranks.pop(int(row[r]), None) is not None:
                if not ranks:
                    del windows[category][start]
                    if not windows[category]:
                        del windows[category]
        for row in inserts:
            ranks = windows.setdefault(str(row[c]), {}).setdefault(epoch_seconds(row[w]), {})
            ranks[int(row[r])] = (str(row[p]), float(row[e]))

    def load(self, rows: ChangeBatch) -> None:
        windows: dict[str, dict[float, dict[int, tuple[str, float]]]] = {}
        self._change(windows, rows.columns, rows.inserts, ())
        with self._lock:
            self._windows, self._latest, self._table = windows, None, None

    def apply(self, batch: ChangeBatch) -> int:
        with self._lock:
            self._change(self._windows, batch.columns, batch.inserts, batch.deletes)
            self._latest = self._table = None
        return len(batch.inserts) + len(batch.deletes)

    def latest(self) -> dict[str, list[str]]:
        """{category: product ids by rank} of each category's latest window."""
        latest = self._latest
        if latest is None:
            with self._lock:
                latest = {}
                for category, windows in self._windows.items():
                    ranks = windows[max(windows)]
                    latest[category] = [ranks[r][0] for r in sorted(ranks)]
                self._latest = latest
        return latest

    def table(self) -> Trending:
        """The view's rows summed over its windows (blend.trending_table)."""
        table = self._table
        if table is None:
            with self._lock:
                rows = [(category, product, score, start)
                        for category, windows in self._windows.items()
                        for start, ranks in windows.items()
                        for product, score in ranks.values()]  # fmt: skip
                table = self._table = trending_table(rows)
        return table

    def lists(self) -> dict[str, list[str]]:
        """{category: product ids by engagement summed over the category's windows}
        (blend.trending_lists of the view's rows)."""
        return self.table().lists

    @property
    def rows(self) -> int:
        with self._lock:
            return sum(len(ranks) for w in self._windows.values() for ranks in w.values())

    def summary(self) -> str:
        return f"{self.rows} rows, {len(self._windows)} categories"

    def status(self) -> dict[str, Any]:
        return {**super().status(), "rows": self.rows, "categories": len(self._windows)}
