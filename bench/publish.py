"""Publish benchmark: one refresh of a followed view (rows deleted and inserted by key in
one transaction, against a table already holding `--base-rows` rows), with its change feed
written three ways, against a PostgreSQL from the wheel started here:

- `none`: no change feed (the cost of the view rows alone);
- `jsonb`: the former feed, one table for all views, each changed row as `to_jsonb` of
  what the statement returned (the baseline, rebuilt here);
- `typed`: the feed now, a table per view typed like it (`flashrec_changes_<view>`), rows
  deleted and inserted;
- `update`: the typed feed, each row changed under its key as one UPDATE whose RETURNING
  old.* and new.* (PostgreSQL 18) feed the delete and insert rows (the publisher now).

Views: session_features-like rows (given as the engine's Arrow) and vmis_history-like rows
(arrays of product ids, given as tuples). The paths alternate; each run changes `--rows`
fresh rows. Prints per view and path the median over `--runs` runs of the wall time and of
the PostgreSQL backend's CPU time in ms, and the ratios against `jsonb` and of `update`
against `typed`.

Then a keyed view without feed (co_view_pairs-like, `--pair-rows` rows, `--pair-changes`
of them with a new count per refresh, as the 30-minute window moves): the rows deleted and
inserted again (`delete+insert`, the baseline) vs one UPDATE (`update`, the publisher now).

With `--customer-rows`, a customer_features-like view (Arrow rows keyed by customer and
window, four window rows changed per customer): delete+insert vs UPDATE, each into a logged
and an UNLOGGED table (`flashrec up --unlogged-views`, off by default).

    .venv/bin/python bench/publish.py --base-rows 400000 --rows 90000 --runs 5 \
        --pair-rows 1000000 --pair-changes 30000
    .venv/bin/python bench/publish.py --runs 7 --pair-rows 0 --base-rows 10000 --rows 1000 \
        --customer-rows 1000000 --customer-changes 200000
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import free_port  # noqa: E402

from recommender.changefeed import feed_table  # noqa: E402
from recommender.engine.refresh import ArrowRows, rows_table  # noqa: E402
from recommender.postgres import publisher as pgpublish  # noqa: E402
from recommender.postgres.encoding import copy_rows  # noqa: E402
from recommender.postgres.local import LocalPostgres  # noqa: E402
from recommender.postgres.publisher import Publisher  # noqa: E402

SESSION_COLUMNS = [
    ("session_id", "VARCHAR"), ("user_id", "VARCHAR"), ("session_start", "TIMESTAMP"),
    ("last_event_at", "TIMESTAMP"), ("event_count", "BIGINT"), ("view_count", "HUGEINT"),
    ("cart_add_count", "HUGEINT"), ("purchase_count", "HUGEINT"), ("distinct_products", "BIGINT"),
    ("distinct_categories", "BIGINT"), ("device", "VARCHAR"), ("mean_gap_s", "DOUBLE"),
    ("min_gap_s", "DOUBLE"), ("is_bot", "BOOLEAN"),
]  # fmt: skip
VMIS_COLUMNS = [("session_id", "VARCHAR"), ("items", "VARCHAR[]"), ("last_ts", "TIMESTAMP")]


def session_rows(n: int, rng: random.Random) -> list[tuple[Any, ...]]:
    t0 = datetime(2026, 3, 1, 12)
    rows = []
    for k in range(n):
        start = t0 + timedelta(microseconds=rng.randrange(10**10))
        count = rng.randrange(1, 30)
        end = start + timedelta(microseconds=rng.randrange(10**9))
        gap = (end - start).total_seconds() / (count - 1) if count > 1 else None
        rows.append((f"sess-{k:08d}", f"user-{rng.randrange(10**6)}", start, end, count,
                     rng.randrange(count + 1), rng.randrange(3), rng.randrange(2),
                     rng.randrange(1, count + 1), rng.randrange(1, 6),
                     rng.choice(["mobile", "desktop", "tablet"]), gap,
                     None if gap is None else gap * rng.random(), count >= 25))  # fmt: skip
    return rows


def vmis_rows(n: int, rng: random.Random) -> list[tuple[Any, ...]]:
    t0 = datetime(2026, 3, 1, 12)
    return [(f"sess-{k:08d}", [f"P{rng.randrange(10**6):06d}" for _ in range(rng.randrange(1, 20))],
             t0 + timedelta(microseconds=rng.randrange(10**10))) for k in range(n)]  # fmt: skip


def arrow_table(cols: list[tuple[str, str]], rows: list[tuple[Any, ...]]) -> Any:
    """The rows as the Arrow table DuckDB hands the engine's publisher (HUGEINT as decimal)."""
    import pyarrow as pa

    kinds = {"VARCHAR": pa.string(), "TIMESTAMP": pa.timestamp("us"), "BIGINT": pa.int64(),
             "INTEGER": pa.int32(), "HUGEINT": pa.decimal128(38, 0), "DOUBLE": pa.float64(),
             "BOOLEAN": pa.bool_(), "VARCHAR[]": pa.list_(pa.string())}  # fmt: skip
    return rows_table([c for c, _ in cols], [kinds[t] for _, t in cols], rows)


def given(name: str, cols: list[tuple[str, str]], rows: list[tuple[Any, ...]]
          ) -> Sequence[tuple[Any, ...]]:  # fmt: skip
    """A refresh's rows for `name` as the engine's publisher gets them."""
    if name == "session_features":
        return ArrowRows(arrow_table(cols, rows), [t for _, t in cols])
    return rows


def jsonb_fed(statement: str, view: str, columns: list[str]) -> str:
    """The former feed statement: the changed rows as JSON into one table for all views."""
    return (f"WITH changed AS ({statement} RETURNING v.*) INSERT INTO bench_changes_jsonb "
            f"(view, epoch, op, row) SELECT '{view}', %s, %s, to_jsonb(changed) FROM changed")


JSONB_TABLE = """CREATE TABLE IF NOT EXISTS bench_changes_jsonb (
    id bigserial PRIMARY KEY, view text NOT NULL, epoch bigint NOT NULL, op text NOT NULL,
    row jsonb NOT NULL, committed_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX IF NOT EXISTS bench_changes_jsonb_view_epoch ON bench_changes_jsonb (view, epoch);
CREATE INDEX IF NOT EXISTS bench_changes_jsonb_epoch ON bench_changes_jsonb (epoch)"""

PATHS = ("none", "jsonb", "typed", "update")


def change(rows: list[tuple[Any, ...]], count: int, rng: random.Random
           ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:  # fmt: skip
    """`count` rows of `rows` changed in place (their second-to-last column or list grows
    or flips); returns (old rows, new rows)."""
    old, new = [], []
    for i in rng.sample(range(len(rows)), count):
        row = list(rows[i])
        if isinstance(row[1], list):
            row[1] = [*row[1], "P000000"]
        else:
            row[4] += 1
        old.append(rows[i])
        rows[i] = tuple(row)
        new.append(rows[i])
    return old, new


def one_refresh(pub: Publisher, path: str, name: str, cols: list[tuple[str, str]],
                old: Sequence[tuple[Any, ...]], new: Sequence[tuple[Any, ...]],
                epoch: int, table_rows: int) -> None:  # fmt: skip
    columns, types = [c for c, _ in cols], [t for _, t in cols]
    feed = None if path == "none" else epoch
    pgpublish._fed = jsonb_fed if path == "jsonb" else TYPED_FED
    with pub.conn.transaction():
        if path == "update":
            new, old = pub._update(name, columns, new, old, feed, table_rows)
        if len(old):
            pub._delete(name, columns, types, old, feed)
        if len(new):
            pub._insert(name, columns, new, feed)


TYPED_FED = pgpublish._fed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-rows", type=int, default=400_000,
                        help="rows each view holds before the runs")  # fmt: skip
    parser.add_argument("--rows", type=int, default=90_000,
                        help="rows deleted and inserted by each refresh")  # fmt: skip
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pair-rows", type=int, default=1_000_000,
                        help="rows of the co_view_pairs-like view (0: skip that part)")
    parser.add_argument("--pair-changes", type=int, default=30_000,
                        help="its rows with a new count per refresh")
    parser.add_argument("--customer-rows", type=int, default=0,
                        help="rows of the customer_features-like view (0: skip that part)")
    parser.add_argument("--customer-changes", type=int, default=100_000,
                        help="its rows changed per refresh")
    args = parser.parse_args()
    rng = random.Random(7)
    views = {"session_features": (SESSION_COLUMNS, session_rows(args.base_rows, rng)),
             "vmis_history": (VMIS_COLUMNS, vmis_rows(args.base_rows, rng))}  # fmt: skip
    wall = {(v, p): [] for v in views for p in PATHS}
    server = {(v, p): [] for v in views for p in PATHS}
    with tempfile.TemporaryDirectory() as tmp, LocalPostgres(Path(tmp) / "pg", free_port()) as pg:
        pub = Publisher(pg.dsn, feed_views=tuple(views))
        conn = pub.conn
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        conn.commit()
        with conn.transaction():
            conn.execute(JSONB_TABLE)
        for name, (cols, rows) in views.items():
            pub.ensure_view(name, [c for c, _ in cols], [t for _, t in cols])
            with conn.transaction():
                copy_rows(conn, name, [c for c, _ in cols], rows)
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
        conn.autocommit = False
        epoch = 0
        for run in range(args.runs + 1):  # run 0: warm-up, not counted
            order = list(PATHS) if run % 2 else list(reversed(PATHS))
            for name, (cols, rows) in views.items():
                for path in order:
                    conn.execute(f"TRUNCATE bench_changes_jsonb, {feed_table(name)}")
                    conn.commit()
                    old, new = (given(name, cols, r) for r in change(rows, args.rows, rng))
                    epoch += 1
                    started, started_server = time.perf_counter(), process_cpu_ms(backend)
                    one_refresh(pub, path, name, cols, old, new, epoch, args.base_rows)
                    if run:
                        wall[name, path].append((time.perf_counter() - started) * 1000)
                        server[name, path].append(process_cpu_ms(backend) - started_server)
        pub.close()
    print(f"{args.rows} rows deleted and inserted per refresh of a view of {args.base_rows} "
          f"rows, median of {args.runs} runs (ms)")  # fmt: skip
    for label, times in (("wall", wall), ("server CPU", server)):
        print(f"{label}:")
        for name in [*views, "both"]:
            names = list(views) if name == "both" else [name]
            med = {p: sum(statistics.median(times[v, p]) for v in names) for p in PATHS}
            print(f"  {name:18s} " + "   ".join(f"{p} {med[p]:8.1f}" for p in PATHS)
                  + f"   typed/jsonb {med['typed'] / med['jsonb']:5.2f}x"
                  + f"   none/jsonb {med['none'] / med['jsonb']:5.2f}x"
                  + f"   update/typed {med['update'] / med['typed']:5.2f}x")
    if args.pair_rows:
        pairs_bench(args.pair_rows, args.pair_changes, args.runs, rng)
    if args.customer_rows:
        customer_bench(args.customer_rows, args.customer_changes, args.runs, rng)


PAIR_COLUMNS = [("product_a", "VARCHAR"), ("product_a_name", "VARCHAR"), ("product_b", "VARCHAR"),
                ("product_b_name", "VARCHAR"), ("co_view_count", "BIGINT")]  # fmt: skip


def pairs_bench(n: int, changes: int, runs: int, rng: random.Random) -> None:
    """co_view_pairs-like refreshes: rows deleted and inserted again vs one UPDATE."""
    cols, types = [c for c, _ in PAIR_COLUMNS], [t for _, t in PAIR_COLUMNS]
    found = {}
    while len(found) < n:
        a, b = sorted(rng.sample(range(50_000), 2))
        found[a, b] = (f"P{a:06d}", f"Product {a}", f"P{b:06d}", f"Product {b}",
                       rng.randrange(3, 50))
    rows = list(found.values())
    wall: dict[str, list[float]] = {"delete+insert": [], "update": []}
    server: dict[str, list[float]] = {"delete+insert": [], "update": []}
    with tempfile.TemporaryDirectory() as tmp, LocalPostgres(Path(tmp) / "pg", free_port()) as pg:
        pub = Publisher(pg.dsn, feed_views=())
        conn = pub.conn
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        conn.commit()
        pub.ensure_view("co_view_pairs", cols, types)
        with conn.transaction():
            copy_rows(conn, "co_view_pairs", cols, rows)
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE co_view_pairs")
        conn.autocommit = False
        for run in range(2 * runs + 2):  # the first two: warm-up, not counted
            path = list(wall)[run % 2]
            old, new = [], []
            for i in rng.sample(range(len(rows)), changes):
                old.append(rows[i])
                rows[i] = (*rows[i][:4], rows[i][4] + 1)
                new.append(rows[i])
            started, started_server = time.perf_counter(), process_cpu_ms(backend)
            with conn.transaction():
                if path == "update":
                    ins, dels = pub._update("co_view_pairs", cols, new, old, None, n)
                    assert not ins and not dels
                else:
                    pub._delete("co_view_pairs", cols, types, old)
                    pub._insert("co_view_pairs", cols, new, None)
            if run >= 2:
                wall[path].append((time.perf_counter() - started) * 1000)
                server[path].append(process_cpu_ms(backend) - started_server)
        pub.close()
    print(f"co_view_pairs-like view of {n} rows, {changes} counts changed per refresh, "
          f"median of {runs} runs (ms):")  # fmt: skip
    for label, times in (("wall", wall), ("server CPU", server)):
        a, b = (statistics.median(times[p]) for p in ("delete+insert", "update"))
        print(f"  {label:10s} delete+insert {a:8.1f}   update {b:8.1f}   update/delete+insert "
              f"{b / a:5.2f}x")


CUSTOMER_COLUMNS = [
    ("user_id", "VARCHAR"), ("window_days", "INTEGER"),
    *((c, "BIGINT") for c in ("sessions", "product_views", "cart_adds", "purchases",
                              "views_mobile", "views_desktop", "purchases_mobile",
                              "purchases_desktop")),
    *((c, "TIMESTAMP") for c in ("last_cart_at", "last_purchase_at", "last_seen_at")),
]  # fmt: skip
CUSTOMER_WAYS = [(logged, way) for logged in ("logged", "unlogged")
                 for way in ("delete+insert", "update")]  # fmt: skip


def customer_row(user: int, days: int, clicks: int) -> tuple[Any, ...]:
    at = datetime(2026, 12, 1) + timedelta(seconds=user + clicks)
    bought = int(clicks % 5 == 0)
    return (f"U{user:08d}", days, 1 + clicks // 8, clicks, clicks % 3, bought, clicks // 2,
            clicks - clicks // 2, 0, bought, at, at if bought else None, at)  # fmt: skip


def customer_bench(n: int, changes: int, runs: int, rng: random.Random) -> None:
    """customer_features-like refreshes (Arrow rows keyed by customer and window, no feed,
    every window row of a customer changed by a click): the rows deleted and inserted
    again vs one UPDATE (the publisher since 2026-12-03's fifth session), each into a
    logged table and an UNLOGGED one (PublishConfig.unlogged, off by default)."""
    cols, types = [c for c, _ in CUSTOMER_COLUMNS], [t for _, t in CUSTOMER_COLUMNS]
    users = n // 4
    clicks = {u: rng.randrange(1, 40) for u in range(users)}
    rows = [customer_row(u, d, clicks[u]) for u in range(users) for d in (1, 7, 14, 30)]
    wall: dict[tuple[str, str], list[float]] = {w: [] for w in CUSTOMER_WAYS}
    server: dict[tuple[str, str], list[float]] = {w: [] for w in CUSTOMER_WAYS}
    with tempfile.TemporaryDirectory() as tmp, LocalPostgres(Path(tmp) / "pg", free_port()) as pg:
        pubs, backends = {}, {}
        for logged in ("logged", "unlogged"):
            with psycopg.connect(pg.dsn, autocommit=True) as admin:
                admin.execute(f"CREATE DATABASE {logged}")
            pub = pubs[logged] = Publisher(pg.dsn.rsplit("/", 1)[0] + f"/{logged}",
                                           feed_views=(), unlogged=logged == "unlogged")
            backends[logged] = pub.conn.execute("SELECT pg_backend_pid()").fetchone()[0]
            pub.conn.commit()
            pub.ensure_view("customer_features", cols, types)
            with pub.conn.transaction():
                copy_rows(pub.conn, "customer_features", cols, rows)
            pub.conn.autocommit = True
            pub.conn.execute("VACUUM ANALYZE customer_features")
            pub.conn.autocommit = False
        for run in range(runs + 1):  # run 0: warm-up, not counted
            for logged, way in CUSTOMER_WAYS if run % 2 else CUSTOMER_WAYS[::-1]:
                old, new = [], []
                for user in rng.sample(range(users), changes // 4):
                    old += [customer_row(user, d, clicks[user]) for d in (1, 7, 14, 30)]
                    clicks[user] += 1
                    new += [customer_row(user, d, clicks[user]) for d in (1, 7, 14, 30)]
                pub = pubs[logged]
                olds, news = (ArrowRows(arrow_table(CUSTOMER_COLUMNS, r), types)
                              for r in (old, new))  # fmt: skip
                started = time.perf_counter()
                started_server = process_cpu_ms(backends[logged])
                with pub.conn.transaction():
                    if way == "update":
                        news, olds = pub._update("customer_features", cols, news, olds, None,
                                                 len(rows))  # fmt: skip
                        assert not len(news) and not len(olds)
                    if len(olds):
                        pub._delete("customer_features", cols, types, olds)
                    if len(news):
                        pub._insert("customer_features", cols, news, None)
                if run:
                    wall[logged, way].append((time.perf_counter() - started) * 1000)
                    server[logged, way].append(process_cpu_ms(backends[logged]) - started_server)
        for pub in pubs.values():
            pub.close()
    print(f"customer_features-like view of {len(rows)} rows, {changes} rows changed per "
          f"refresh, median of {runs} runs (ms):")  # fmt: skip
    for label, times in (("wall", wall), ("server CPU", server)):
        med = {w: statistics.median(t) for w, t in times.items()}
        base = med["logged", "delete+insert"]
        print(f"  {label}: " + "   ".join(f"{lo} {way} {med[lo, way]:8.1f} "
                                          f"({med[lo, way] / base:4.2f}x)"
                                          for lo, way in CUSTOMER_WAYS))  # fmt: skip


def process_cpu_ms(pid: int) -> float:
    """CPU time (user + system) a process has used, in ms."""
    times = psutil.Process(pid).cpu_times()
    return (times.user + times.system) * 1000


if __name__ == "__main__":
    main()
