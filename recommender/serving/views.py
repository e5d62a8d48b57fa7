"""Reads of the live views over a PostgreSQL-wire DSN (embedded PostgreSQL or RisingWave).

Only plain SELECTs that both servers accept: no DISTINCT ON, no correlated subqueries, no
server-side cursors. Connections are pooled (a few, reconnecting after errors); answers of
the heavier queries are cached for a fraction of a second so a burst of requests costs one
query. Column names follow docs/views.md.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

log = logging.getLogger(__name__)


class ViewsUnavailable(RuntimeError):
    """The views cannot be read (no DSN, server down, view missing)."""


ALSO_VIEWED_SQL = """
SELECT product_b AS product_id, product_b_name AS product_name, co_view_count
FROM co_view_pairs WHERE product_a = %(p)s
UNION ALL
SELECT product_a AS product_id, product_a_name AS product_name, co_view_count
FROM co_view_pairs WHERE product_b = %(p)s
ORDER BY co_view_count DESC, product_id
LIMIT %(n)s
"""

TRENDING_SQL = """
SELECT t.category, t.rank, t.product_id, t.product_name, t.engagement_score,
       t.view_count, t.cart_adds, t.window_start
FROM trending_by_category t
JOIN (SELECT category, max(window_start) AS latest
      FROM trending_by_category GROUP BY category) w
  ON t.category = w.category AND t.window_start = w.latest
ORDER BY t.category, t.rank
"""

# Names and categories of products, from every view that has them. The raw-event table is
# read only on the embedded engine's PostgreSQL, which keeps the last 30 minutes of it: on
# RisingWave `clickstream` holds every event of its 31-day retention, too many to scan.
# Read incrementally: only events from a little before the newest one already read.
RAW_CATALOG_SQL = (
    "SELECT product_id, MAX(product_name) AS product_name, MAX(category) AS category, "
    "MAX(ts) AS seen FROM clickstream WHERE ts >= %(since)s GROUP BY product_id"
)
RAW_OVERLAP = timedelta(minutes=5)  # events arriving late are read again this far back
VIEW_CATALOG_SQL = (
    "SELECT product_id, MAX(product_name) AS product_name, MAX(category) AS category "
    "FROM trending_by_category GROUP BY product_id",
    "SELECT product_a AS product_id, MAX(product_a_name) AS product_name, "
    "CAST(NULL AS VARCHAR) AS category FROM co_view_pairs GROUP BY product_a "
    "UNION ALL "
    "SELECT product_b AS product_id, MAX(product_b_name) AS product_name, "
    "CAST(NULL AS VARCHAR) AS category FROM co_view_pairs GROUP BY product_b",
)

STATUS_SQL = "SELECT * FROM flashrec_status"
MAX_CACHED = 10_000


def _plain(value: Any) -> Any:
    """A JSON-friendly form of a database value."""
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "is_finite"):  # Decimal
        return float(value)
    if hasattr(value, "total_seconds"):  # timedelta
        return value.total_seconds()
    return value


class Views:
    """Queries of co_view_pairs, trending_by_category, session_intent and flashrec_status."""

    def __init__(
        self, dsn: str | None, pool_size: int = 4, cache_s: float = 0.5, raw_events: bool = True
    ) -> None:
        self.dsn = dsn
        self.raw_events = raw_events
        self.cache_s = cache_s
        self._pool: queue.LifoQueue = queue.LifoQueue()
        self._slots = threading.Semaphore(pool_size)
        self._cache: dict[str, tuple[float, Any]] = {}
        self._cache_lock = threading.Lock()
        self.catalog: dict[str, tuple[str | None, str | None]] = {}
        self._raw_since = datetime(1970, 1, 1, tzinfo=UTC)

    @property
    def configured(self) -> bool:
        return bool(self.dsn)

    @contextmanager
    def _conn(self):
        if not self.dsn:
            raise ViewsUnavailable("no PostgreSQL DSN configured (--pg-dsn / FLASHREC_PG_DSN)")
        import psycopg

        with self._slots:
            try:
                conn = self._pool.get_nowait()
            except queue.Empty:
                try:
                    conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=5)
                except psycopg.Error as exc:
                    raise ViewsUnavailable(f"cannot connect to the views: {exc}") from exc
            try:
                yield conn
            except psycopg.Error as exc:
                conn.close()
                raise ViewsUnavailable(f"query failed: {str(exc).strip()}") from exc
            except BaseException:
                conn.close()
                raise
            else:
                self._pool.put(conn)

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Rows of `sql` as dicts of JSON-friendly values."""
        with self._conn() as conn:
            cur = conn.execute(sql, params)
            if cur.description is None:
                return []
            names = [d.name for d in cur.description]
            return [{n: _plain(v) for n, v in zip(names, row, strict=True)} for row in cur]

    def _cached(self, key: str, load: Callable[[], Any]) -> Any:
        now = time.monotonic()
        with self._cache_lock:
            hit = self._cache.get(key)
        if hit and now - hit[0] < self.cache_s:
            return hit[1]
        value = load()
        with self._cache_lock:
            self._cache[key] = (now, value)
            if len(self._cache) > MAX_CACHED:  # many distinct products: drop stale answers
                self._cache = {k: v for k, v in self._cache.items() if now - v[0] < self.cache_s}
        return value

    def also_viewed(self, product_id: str, limit: int = 20) -> list[dict[str, Any]]:
        """Products viewed in the same sessions as `product_id` (both sides of each pair)."""
        return self._cached(
            f"av:{limit}:{product_id}",
            lambda: self.query(ALSO_VIEWED_SQL, {"p": product_id, "n": limit}),
        )

    def trending(self) -> dict[str, list[dict[str, Any]]]:
        """The latest window of trending_by_category, ranked, per category."""

        def load() -> dict[str, list[dict[str, Any]]]:
            out: dict[str, list[dict[str, Any]]] = {}
            for row in self.query(TRENDING_SQL):
                out.setdefault(row["category"], []).append(row)
            return out

        return self._cached("trending", load)

    def intent(self, session_id: str) -> dict[str, Any] | None:
        """The session's purchase-intent row (session_intent), or None when the session has
        not been scored or the table does not exist yet (no scorer has run)."""
        from recommender.intent.score import session_probability

        with self._conn() as conn:
            return session_probability(session_id, conn=conn)

    def status(self) -> list[dict[str, Any]]:
        """Per view freshness as the engine reports it (flashrec_status)."""
        return self._cached("status", lambda: self.query(STATUS_SQL))

    def refresh_catalog(self) -> int:
        """Reload product names and categories; returns how many products are known.

        Products that left the views keep what was last known of them.
        """
        queries = ((RAW_CATALOG_SQL,) if self.raw_events else ()) + VIEW_CATALOG_SQL
        catalog = dict(self.catalog)
        fresh: set[str] = set()
        for sql in queries:
            try:
                rows = self.query(
                    sql, {"since": self._raw_since} if sql is RAW_CATALOG_SQL else None
                )
            except ViewsUnavailable as exc:
                log.debug("catalog query failed: %s", exc)
                continue
            if sql is RAW_CATALOG_SQL and rows:
                newest = max(datetime.fromisoformat(r["seen"]) for r in rows)
                self._raw_since = max(self._raw_since, newest - RAW_OVERLAP)
            for r in rows:
                pid = str(r["product_id"])
                name, category = catalog.get(pid, (None, None)) if pid in fresh else (None, None)
                old_name, old_category = catalog.get(pid, (None, None))
                catalog[pid] = (
                    name or r["product_name"] or old_name,
                    category or r["category"] or old_category,
                )
                fresh.add(pid)
        self.catalog = catalog
        return len(catalog)

    def category(self, product_id: str) -> str | None:
        """The product's category as known (None: not known)."""
        return self.catalog.get(product_id, (None, None))[1] or None

    def describe(self, product_id: str) -> dict[str, Any]:
        """{product_id, product_name, category} with what is known of the product."""
        name, category = self.catalog.get(product_id, (None, None))
        return {"product_id": product_id, "product_name": name, "category": category}

    def close(self) -> None:
        while True:
            try:
                self._pool.get_nowait().close()
            except queue.Empty:
                return
