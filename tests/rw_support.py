"""What RisingWave computes from the relay's topic, run by DuckDB: sql/010's clickstream table
translated to DuckDB (primary key event_id, ON CONFLICT DO NOTHING: the first copy of each
event_id kept), fed in arrival order, and every view's SQL over it. Shared by the tests that
compare the production path's meaning with the embedded engine's."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import duckdb
import orjson

from recommender import sqlfiles
from recommender.events import Rejected, format_ts, validate_batch

T0 = datetime(2024, 3, 15, 14, 0)


def click(i: int, session: str, product: str, action: str = "view", sec: float = 0.0,
          event_id: str | None = None) -> dict[str, Any]:  # fmt: skip
    return {"event_id": event_id or f"e{i}", "session_id": session, "user_id": f"u-{session}",
            "product_id": product, "product_name": f"name {product}", "category": "shoes",
            "action": action, "ts": format_ts(T0 + timedelta(seconds=sec)),
            "device": "mobile", "price": 10.0}  # fmt: skip


def mixed_stream() -> list[dict[str, Any] | bytes]:
    """Valid events out of time order (each session's later clicks arrive first), repeated
    event_ids (a retry, and a copy that differs: the first copy counts) and malformed
    messages (not JSON, a wrong type, empty, a bad time)."""
    items: list[dict[str, Any] | bytes] = []
    for k in range(6):
        s = f"s{k % 3}"
        items += [click(10 * k, s, "a", sec=300 - 40 * k),
                  click(10 * k + 1, s, "b", sec=301 - 40 * k),
                  click(10 * k + 2, s, "c", "purchase", sec=3600 * 5 + k)]
    items.insert(4, items[0])  # a producer's retry
    items.append(click(99, "s9", "z", sec=5, event_id="e1"))  # same id, other content
    items += [b"{not json", b'{"event_id": 5}', b"",
              orjson.dumps({**click(98, "s", "a"), "ts": "yesterday"})]
    return items


def values_of(items: list[dict[str, Any] | bytes]) -> list[bytes]:
    return [x if isinstance(x, bytes) else orjson.dumps(x) for x in items]


def table_views(values: list[bytes], now: datetime, tz: str = "UTC",
                validate: bool = True) -> dict[str, list[tuple[Any, ...]]]:  # fmt: skip
    """Every view at `now` over the DuckDB form of sql/010's table fed with `values` in order
    (those the relay's validator accepts when `validate`); sorted rows per view."""
    table = sqlfiles.clickstream_table()
    con = duckdb.connect()
    con.execute(f"SET TimeZone = '{tz}'")
    con.execute(table.duckdb_ddl())
    names = [c for c, _ in table.columns]
    checked_all = validate_batch(values) if validate else [orjson.loads(v) for v in values]
    for checked in checked_all:
        if isinstance(checked, Rejected):
            continue
        row = [checked.get(c) for c in names]
        row[names.index("ts")] = datetime.fromisoformat(checked["ts"][:-1])
        con.execute(table.duckdb_insert(), row)
    unique = con.execute("SELECT count(*) = count(DISTINCT event_id) FROM clickstream").fetchone()
    assert unique is not None and unique[0]
    out = {}
    for view in sqlfiles.views():
        sql = sqlfiles.bind_now(sqlfiles.to_duckdb(sqlfiles.view_query(view)), now)
        con.execute(f"CREATE TEMP TABLE {view.name} AS {sql}")
        out[view.name] = sorted(con.execute(f"SELECT * FROM {view.name}").fetchall(), key=repr)
    return out
