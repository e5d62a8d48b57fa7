"""The views of sql/ over replayed clicks, computed by DuckDB at an event-time clock.

Same SQL text and the same transpiling as the embedded engine (recommender.sqlfiles and
recommender.engine.refresh.ViewRunner): a view is recomputed from its query with NOW() bound
to the clock. `with_window` widens a view's temporal filter, which is how the nightly batch
job runs co_view_pairs over the whole previous day instead of the last 30 minutes.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
from sqlglot import exp

from recommender import sqlfiles
from recommender.experiment.clicks import ACTION_NAMES, Clicks

# The embedded engine's event table (recommender/engine/store.py): a stream sequence number
# (the incremental co_view_pairs maintainer reads rows after the last one it saw) and the
# `clickstream` view the SQL of sql/ reads.
TABLE_SQL = """
CREATE TABLE flashrec_events (
    seq BIGINT, event_id VARCHAR, session_id VARCHAR, user_id VARCHAR, product_id VARCHAR,
    product_name VARCHAR, category VARCHAR, action VARCHAR, ts TIMESTAMP, device VARCHAR,
    price DOUBLE);
CREATE VIEW clickstream AS
    SELECT event_id, session_id, user_id, product_id, product_name, category, action, ts,
           device, price FROM flashrec_events;
"""


def clock(ts_ms: int) -> datetime:
    """An event time (epoch ms) as the engine's clock value (naive UTC)."""
    return datetime.fromtimestamp(ts_ms / 1000, UTC).replace(tzinfo=None)


def with_window(obj: sqlfiles.SqlObject, window: timedelta) -> sqlfiles.SqlObject:
    """A copy of a view whose every `NOW() - INTERVAL ...` look-back is `window`."""
    tree = obj.tree.copy()
    seconds = int(window.total_seconds())
    for node in list(tree.find_all(exp.Sub)):
        if isinstance(node.this, exp.CurrentTimestamp) and isinstance(node.expression,
                                                                      exp.Interval):
            node.set("expression", exp.Interval(this=exp.Literal.string(str(seconds)),
                                                unit=exp.Var(this="SECONDS")))
    out = copy.copy(obj)
    out.tree = tree
    return out


class SqlViews:
    """A DuckDB `clickstream` table fed from Clicks, and the views of sql/ over it.

    `incremental=True` maintains the views the engine maintains incrementally
    (co_view_pairs, by its Numba maintainer) the engine's way; otherwise every view is
    recomputed from its SQL."""

    def __init__(
        self,
        clicks: Clicks,
        windows: dict[str, timedelta] | None = None,
        incremental: bool = False,
    ) -> None:
        import duckdb

        from recommender.engine.refresh import ViewRunner

        self.clicks = clicks
        self.con = duckdb.connect()
        self.con.execute(TABLE_SQL)
        objects = sqlfiles.load()
        wanted = ("session_features", "vmis_history", "co_view_pairs", "trending_by_category")
        chosen = []
        for obj in objects:
            if obj.is_view and obj.name in wanted:
                window = (windows or {}).get(obj.name)
                chosen.append(with_window(obj, window) if window else obj)
        missing = set(wanted) - {o.name for o in chosen}
        if missing:
            raise RuntimeError(f"sql/ lacks the view(s) {', '.join(sorted(missing))}")
        overrides = None
        if incremental:
            from recommender.engine.engine import incremental_overrides

            overrides = incremental_overrides(chosen)
        self.runner = ViewRunner(self.con, chosen, overrides)
        self._sessions = np.asarray(clicks.session_ids, dtype=object)
        self._products = np.asarray(clicks.product_ids, dtype=object)
        self._names = np.asarray(clicks.product_names, dtype=object)
        self._cats = np.asarray(clicks.categories, dtype=object)
        self._actions = np.asarray(ACTION_NAMES, dtype=object)
        self.product_code = {p: i for i, p in enumerate(clicks.product_ids)}
        self._computed: dict[str, int] = {}  # view -> the clock it was last computed at
        self.session_code = {s: i for i, s in enumerate(clicks.session_ids)}

    def append(self, lo: int, hi: int) -> None:
        """Insert events lo..hi of the clicks (event_id = stream position, zero-padded)."""
        if hi <= lo:
            return
        self._computed.clear()
        c = self.clicks
        s, p = c.session[lo:hi], c.product[lo:hi]
        sessions = self._sessions[s]
        batch = pa.table({
            "seq": pa.array(np.arange(lo + 1, hi + 1, dtype=np.int64)),
            "event_id": pa.array([f"{i:012d}" for i in range(lo, hi)], pa.string()),
            "session_id": pa.array(sessions, pa.string()),
            "user_id": pa.array(sessions, pa.string()),
            "product_id": pa.array(self._products[p], pa.string()),
            "product_name": pa.array(self._names[p], pa.string()),
            "category": pa.array(self._cats[p], pa.string()),
            "action": pa.array(self._actions[c.action[lo:hi]], pa.string()),
            "ts": pa.array(c.ts_ms[lo:hi].astype("datetime64[ms]"), pa.timestamp("ms")),
        })  # fmt: skip
        self.con.register("__batch", batch)
        self.con.execute(
            "INSERT INTO flashrec_events (seq, event_id, session_id, user_id, product_id,"
            " product_name, category, action, ts) SELECT * FROM __batch"
        )
        self.con.unregister("__batch")

    def drop_before(self, ts_ms: int) -> None:
        """Forget events older than `ts_ms` (outside every window still needed)."""
        self.con.execute("DELETE FROM flashrec_events WHERE ts < ?", [clock(ts_ms)])
        self._computed.clear()

    def view(self, name: str, now_ms: int) -> list[tuple[Any, ...]]:
        """Rows of view `name` at clock `now_ms`; views it reads are computed first."""
        now = clock(now_ms)
        for dep in self.runner.names:
            if self._computed.get(dep) != now_ms:
                self.runner.compute(now, dep)
                self._computed[dep] = now_ms
            if dep == name:
                break
        return self.runner.rows(name)

    def co_view(self, now_ms: int) -> list[tuple[int, int, int]]:
        """co_view_pairs at `now_ms` as (product code a, product code b, co_view_count)."""
        code = self.product_code
        return [(code[r[0]], code[r[2]], int(r[4])) for r in self.view("co_view_pairs", now_ms)]

    def trending(self, now_ms: int) -> Any:
        """trending_by_category at `now_ms` as the blend reads it, with product codes
        (recommender.blend.trending_table)."""
        from recommender.blend import trending_table

        code = self.product_code
        rows = [(r[0], code[r[2]], float(r[4]), r[7])
                for r in self.view("trending_by_category", now_ms)]  # fmt: skip
        return trending_table(rows)

    def vmis_history(self, now_ms: int) -> list[tuple[int, list[int], float]]:
        """vmis_history at `now_ms` as (session code, item codes, last event epoch s)."""
        s_code, p_code = self.session_code, self.product_code
        out = []
        for session_id, items, last_ts in self.view("vmis_history", now_ms):
            t = last_ts.replace(tzinfo=UTC).timestamp()
            out.append((s_code[session_id], [p_code[i] for i in items], t))
        out.sort()
        return out
