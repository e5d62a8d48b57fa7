"""Publish benchmark: a refresh's inserts into a followed view, its change feed written by
the client (the former path: one orjson call per part of rows, COPY text) vs by PostgreSQL
(the rows COPYed to a staging table, then one INSERT ... RETURNING whose rows go to
flashrec_changes as to_jsonb), against a PostgreSQL from the wheel started here.

Writes `--rows` session_features-like rows and as many vmis_history-like rows (arrays of
product ids), one transaction per view and path, the tables truncated before each; the
paths alternate. Prints per view the median over `--runs` runs of the wall time (client
and server), of this process's CPU time (the client side alone; in the engine it holds
the GIL the refresh thread needs) and of the PostgreSQL backend's CPU time, in ms, and
the client/server ratios.

    .venv/bin/python bench/publish.py --rows 5000 --runs 9
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import free_port  # noqa: E402

from recommender import pgserve  # noqa: E402
from recommender.engine.refresh import ArrowRows, rows_table  # noqa: E402
from recommender.pgserve import LocalPostgres, Publisher, _copy_rows  # noqa: E402

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
             "HUGEINT": pa.decimal128(38, 0), "DOUBLE": pa.float64(), "BOOLEAN": pa.bool_(),
             "VARCHAR[]": pa.list_(pa.string())}  # fmt: skip
    return rows_table([c for c, _ in cols], [kinds[t] for _, t in cols], rows)


def client_feed_parts(name: str, epoch: int, columns: list[str],
                      rows: list[tuple[Any, ...]]) -> Iterator[bytes]:
    """The former client-side feed: flashrec_changes rows in COPY text, one orjson call per
    part of rows (the benchmark's rows hold no tab, backslash or '},{')."""
    import orjson

    head = f"{name}\t{epoch}\tinsert\t".encode()
    for start in range(0, len(rows), pgserve._CHUNK_ROWS):
        docs = [dict(zip(columns, r, strict=True)) for r in rows[start:start + pgserve._CHUNK_ROWS]]
        whole = orjson.dumps(docs, option=orjson.OPT_NAIVE_UTC)
        yield b"".join((head, whole[1:-1].replace(b"},{", b"}\n" + head + b"{"), b"\n"))


def given(name: str, cols: list[tuple[str, str]], rows: list[tuple[Any, ...]],
          tables: dict[str, Any]) -> Sequence[tuple[Any, ...]]:
    """A refresh's rows for `name` as the engine's publisher gets them (a fresh ArrowRows:
    it keeps the tuples it makes)."""
    if name in tables:
        return ArrowRows(tables[name], [t for _, t in cols])
    return rows


def write_client(pub: Publisher, name: str, columns: list[str], rows: Sequence[tuple[Any, ...]],
                 epoch: int) -> None:  # fmt: skip
    conn = pub.conn
    _copy_rows(conn, name, columns, rows)
    with conn.cursor().copy("COPY flashrec_changes (view, epoch, op, row) FROM STDIN") as cp:
        for part in client_feed_parts(name, epoch, columns, list(rows)):
            cp.write(part)


def write_server(pub: Publisher, name: str, columns: list[str], rows: Sequence[tuple[Any, ...]],
                 epoch: int) -> None:  # fmt: skip
    pub._insert(name, columns, rows, epoch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--chunk-rows", type=int, default=pgserve._CHUNK_ROWS,
                        help="rows per COPY write of the bulk path")  # fmt: skip
    args = parser.parse_args()
    pgserve._CHUNK_ROWS = args.chunk_rows
    rng = random.Random(7)
    views = {"session_features": (SESSION_COLUMNS, session_rows(args.rows, rng)),
             "vmis_history": (VMIS_COLUMNS, vmis_rows(args.rows, rng))}  # fmt: skip
    # as the engine hands them over: flat rows as Arrow, rows holding lists as tuples
    tables = {"session_features": arrow_table(*views["session_features"])}
    paths = {"client": write_client, "server": write_server}
    wall: dict[tuple[str, str], list[float]] = {(v, p): [] for v in views for p in paths}
    cpu: dict[tuple[str, str], list[float]] = {(v, p): [] for v in views for p in paths}
    server: dict[tuple[str, str], list[float]] = {(v, p): [] for v in views for p in paths}
    with tempfile.TemporaryDirectory() as tmp, LocalPostgres(Path(tmp) / "pg", free_port()) as pg:
        pub = Publisher(pg.dsn)
        conn = pub.conn
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        conn.commit()
        for name, (cols, _) in views.items():
            pub.ensure_view(name, [c for c, _ in cols], [t for _, t in cols])
        for run in range(args.runs + 1):  # run 0: warm-up, not counted
            order = list(paths) if run % 2 else list(reversed(paths))
            for name, (cols, _) in views.items():
                for path in order:
                    conn.execute(f"TRUNCATE {name}, flashrec_changes")
                    conn.commit()
                    started, started_cpu = time.perf_counter(), time.process_time()
                    started_server = process_cpu_ms(backend)
                    with conn.transaction():
                        paths[path](pub, name, [c for c, _ in cols],
                                    given(name, cols, views[name][1], tables), run + 1)
                    if run:
                        wall[name, path].append((time.perf_counter() - started) * 1000)
                        cpu[name, path].append((time.process_time() - started_cpu) * 1000)
                        server[name, path].append(process_cpu_ms(backend) - started_server)
        pub.close()
    print(f"{args.rows} rows per view, view rows + their change feed, median of {args.runs} "
          f"runs, COPY in parts of {args.chunk_rows} rows")  # fmt: skip
    for label, times in (("wall", wall), ("client CPU", cpu), ("server CPU", server)):
        print(f"{label}:")
        total = {p: 0.0 for p in paths}
        for name in views:
            a, b = (statistics.median(times[name, p]) for p in paths)
            total["client"] += a
            total["server"] += b
            print(f"  {name:18s} client {a:8.1f} ms   server {b:8.1f} ms   "
                  f"client/server {a / b:5.2f}x")
        a, b = total["client"], total["server"]
        print(f"  {'both':18s} client {a:8.1f} ms   server {b:8.1f} ms   "
              f"client/server {a / b:5.2f}x")


def process_cpu_ms(pid: int) -> float:
    """CPU time (user + system) a process has used, in ms."""
    times = psutil.Process(pid).cpu_times()
    return (times.user + times.system) * 1000


if __name__ == "__main__":
    main()
