"""Publish benchmark: the publisher's view and change-feed COPYs, the former per-row
write_row path vs the bulk path (Arrow-built CSV for the view rows, one orjson call per part
of the feed JSON, one write per `--chunk-rows` rows), against a PostgreSQL from the wheel
started here.

Writes `--rows` session_features-like rows and as many vmis_history-like rows (arrays of
product ids) plus their flashrec_changes JSON rows, one transaction per view and path, the
tables truncated before each; the paths alternate. Prints per view the median over `--runs`
runs of the wall time (client and server) and of this process's CPU time (the client side
alone) and of the PostgreSQL backend's CPU time (the server side), in ms, and
the old/new ratios.

    .venv/bin/python bench/publish.py --rows 20000 --runs 5
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import free_port  # noqa: E402

from recommender import pgserve  # noqa: E402
from recommender.pgserve import (  # noqa: E402
    LocalPostgres,
    Publisher,
    _copy_rows,
    _dumps,
    _feed_parts,
)

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


def write_old(conn: Any, name: str, columns: list[str], rows: list[tuple[Any, ...]],
              epoch: int) -> None:  # fmt: skip
    """The former path: write_row per view row, then per change-feed row."""
    with conn.cursor().copy(f"COPY {name} ({', '.join(columns)}) FROM STDIN") as cp:
        for row in rows:
            cp.write_row(row)
    with conn.cursor().copy("COPY flashrec_changes (view, epoch, op, row) FROM STDIN") as cp:
        for row in rows:
            cp.write_row((name, epoch, "insert", _dumps(dict(zip(columns, row, strict=True)))))


def write_new(conn: Any, name: str, columns: list[str], rows: list[tuple[Any, ...]],
              epoch: int) -> None:  # fmt: skip
    _copy_rows(conn, name, columns, rows)
    with conn.cursor().copy("COPY flashrec_changes (view, epoch, op, row) FROM STDIN") as cp:
        for part in _feed_parts(name, epoch, columns, [], rows):
            cp.write(part)


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
    paths = {"old": write_old, "new": write_new}
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
            for name, (cols, rows) in views.items():
                for path in order:
                    conn.execute(f"TRUNCATE {name}, flashrec_changes")
                    conn.commit()
                    started, started_cpu = time.perf_counter(), time.process_time()
                    started_server = process_cpu_ms(backend)
                    with conn.transaction():
                        paths[path](conn, name, [c for c, _ in cols], rows, run + 1)
                    if run:
                        wall[name, path].append((time.perf_counter() - started) * 1000)
                        cpu[name, path].append((time.process_time() - started_cpu) * 1000)
                        server[name, path].append(process_cpu_ms(backend) - started_server)
        pub.close()
    print(f"{args.rows} rows per view, view COPY + change-feed COPY, median of {args.runs} runs,"
          f" bulk path in parts of {args.chunk_rows} rows")  # fmt: skip
    for label, times in (("wall", wall), ("client CPU", cpu), ("server CPU", server)):
        print(f"{label}:")
        total = {p: 0.0 for p in paths}
        for name in views:
            old, new = (statistics.median(times[name, p]) for p in paths)
            total["old"] += old
            total["new"] += new
            print(f"  {name:18s} old {old:8.1f} ms   new {new:8.1f} ms   old/new {old / new:5.2f}x")
        old, new = total["old"], total["new"]
        print(f"  {'both':18s} old {old:8.1f} ms   new {new:8.1f} ms   old/new {old / new:5.2f}x")


def process_cpu_ms(pid: int) -> float:
    """CPU time (user + system) a process has used, in ms."""
    times = psutil.Process(pid).cpu_times()
    return (times.user + times.system) * 1000


if __name__ == "__main__":
    main()
