"""Restart benchmark: the engine's diff baseline read back from PostgreSQL into DuckDB, the
former way (rows fetched as tuples, inserted with executemany) against the bulk way (COPY to
CSV, one read_csv per view: engine/baseline.py), and a whole engine start to its first event.

A PostgreSQL from the wheel is started in a temporary folder and its view tables (made by
the Publisher, as the engine makes them) filled by SQL with rows shaped like the views':
ids, product names with commas and quotes, arrays of 1-12 product ids (vmis_history),
timestamps with microseconds, NULL gaps and times. Each size in `--sizes` is the total rows
over the six views, split as in SHARES (the full 30-minute window at 5,000 events/s; see
docs/benchmarks.md). Per size: the median over `--runs` runs of each path's seed of all six
views into a DuckDB of one thread (the engine's default), rows/s and the ratio; the former
path only up to `--old-max-rows` rows (it is slow). Then `Engine(...)` (both tiers
seeded, each way) and the ingest of one event after it: the time to the first event, on an
empty state or with `--state-minutes` on a state holding that much history (the former
path also computed every view over the stored events to get its types).

    .venv/bin/python bench/restart.py --sizes 60000,1000000,7600000 --runs 3
    .venv/bin/python bench/restart.py --sizes 60000,7600000 --runs 1 --no-seeds \
        --state-minutes 30
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import free_port  # noqa: E402
from pipeline import history_stream  # noqa: E402
from refresh import Message  # noqa: E402

from recommender.engine import Engine, EngineConfig  # noqa: E402
from recommender.engine import background as background_module  # noqa: E402
from recommender.engine import engine as engine_module  # noqa: E402
from recommender.engine.baseline import seed_views  # noqa: E402
from recommender.engine.refresh import ViewRunner  # noqa: E402
from recommender.engine.store import StateStore  # noqa: E402
from recommender.events import format_ts, validate_batch  # noqa: E402
from recommender.postgres.local import LocalPostgres  # noqa: E402
from recommender.postgres.publisher import Publisher  # noqa: E402

# Each view's share of the rows: the flash-sale generator's view rows at 5,000 events/s
# after 6 and 12 minutes, extrapolated to the full 30-minute window (docs/benchmarks.md,
# "Restart").
SHARES = {
    "session_features": 0.1207, "vmis_history": 0.1183, "co_view_pairs": 0.0799,
    "trending_by_category": 0.0001, "customer_features": 0.3404, "customer_hours": 0.3404,
}  # fmt: skip
T0 = "timestamptz '2026-03-01 12:00:00.123456+00'"
# one SELECT per view over generate_series(1, n) i, in the view's column order
FILL = {
    "session_features": f"""'sess-' || i, 'user-' || (i % 630000), {T0} + i * interval '1.7 ms',
        {T0} + i * interval '1.7 ms' + (i % 900) * interval '1.000001 s', 1 + i % 30, i % 20,
        i % 3, i % 2, 1 + i % 15, 1 + i % 5, (ARRAY['mobile', 'desktop', 'tablet'])[1 + i % 3],
        CASE WHEN i % 4 > 0 THEN (i % 997) / 7.0 END, CASE WHEN i % 4 > 0 THEN (i % 991) / 13.0
        END, i % 50 = 0""",
    "vmis_history": f"""'sess-' || i, (SELECT array_agg('prod-' || ((i * 7 + j * 131) % 5000))
        FROM generate_series(1, 1 + i % 12) j), {T0} + i * interval '1.234567 ms'""",
    "co_view_pairs": """'prod-' || (i % 5000), 'Product ' || (i % 5000) || ', "deluxe"',
        'prod-' || (5000 + i / 5000), 'Product ' || (i / 5000) || ' ünï', 3 + i % 40""",
    "trending_by_category": f"""'cat-' || (i % 20), 1 + i % 10, 'prod-' || i, 'Product ' || i,
        100 + i % 900, 50 + i % 400, i % 30, {T0} + (i / 200) * interval '5 minutes'""",
    "customer_features": f"""'user-' || (i / 4), (ARRAY[1, 7, 14, 30])[1 + i % 4], 1 + i % 9,
        i % 40, i % 5, i % 3, i % 30, i % 11, i % 2, i % 3,
        CASE WHEN i % 5 = 0 THEN {T0} - (i % 86400) * interval '1.5 s' END,
        CASE WHEN i % 9 = 0 THEN {T0} - (i % 86400) * interval '2.5 s' END,
        {T0} - (i % 86400) * interval '1.000003 s'""",
    "customer_hours": """'user-' || (i / 4), (ARRAY[1, 7, 14, 30])[1 + i % 4], i % 24,
        1 + i % 17, i % 3""",
}


def fill(dsn: str, total: int) -> dict[str, int]:
    """The six view tables in PostgreSQL, emptied and filled with `total` rows in all."""
    store = StateStore(None)
    runner = ViewRunner(store.con)
    publisher = Publisher(dsn, feed_views=())
    counts = {}
    for name in runner.names:
        runner.compute(datetime(1970, 1, 1), name)
        columns, types = runner._describe(name)
        publisher.ensure_view(name, columns, types)
        n = max(1, round(total * SHARES[name]))
        with publisher.conn.transaction():
            publisher.conn.execute(f"TRUNCATE {name}")
            publisher.conn.execute(f"INSERT INTO {name} SELECT {FILL[name]} "
                                   f"FROM generate_series(1, {n}) i")  # fmt: skip
        counts[name] = n
    publisher.close()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")  # as a server that ran a while: visibility map set
    store.close()
    return counts


def seed_old(runner: ViewRunner, publisher: Any, tier: str = "") -> int:
    """The former path: per view, the view computed at 1970 for an empty table of its
    types (over every stored event, through its maintainer), then its rows fetched as tuples
    and inserted with executemany."""
    total = 0
    for name in runner.names:
        rows = publisher.current_rows(name)
        runner.compute(datetime(1970, 1, 1), name)
        runner.con.execute(f"CREATE OR REPLACE TEMP TABLE __prev_{name} AS FROM {name} LIMIT 0")
        runner.seed(name, rows)  # (its empty tables again, by binding the query only)
        total += len(rows)
    return total


def time_seed(dsn: str, way: str) -> tuple[float, int]:
    """(seconds, rows) of one seed of all six views into a fresh one-thread DuckDB."""
    store = StateStore(None, threads=1)
    runner = ViewRunner(store.con)
    publisher = Publisher(dsn, feed_views=())
    started = time.perf_counter()
    rows = seed_old(runner, publisher) if way == "old" else seed_views(runner, publisher)
    elapsed = time.perf_counter() - started
    publisher.close()
    store.close()
    return elapsed, rows


def build_state(path: Path, minutes: float) -> int:
    """A state file holding `minutes` of flash-sale history at 5,000 events/s (times up
    to now), stored as the engine stores them; returns the events."""
    store = StateStore(path)
    batch: list[bytes] = []
    offset = 0
    for value in history_stream(5000.0, minutes, seed=1):
        batch.append(value)
        if len(batch) == 50_000:
            offset += store_batch(store, batch, offset)
    offset += store_batch(store, batch, offset)
    count = store.count()
    store.close()
    return count


def store_batch(store: StateStore, batch: list[bytes], offset: int) -> int:
    """Validate and store a batch of messages (emptied); returns how many there were."""
    keep = [e for e in validate_batch(batch) if isinstance(e, dict)]
    store.apply(keep, {("clickstream", 0): offset + len(batch)})
    done = len(batch)
    batch.clear()
    return done


def time_engine(dsn: str, folder: Path, state_from: Path | None, way: str = "bulk"
                ) -> tuple[float, float]:  # fmt: skip
    """(Engine(...) seconds, to its first event stored) on a fresh state file, or a copy of
    `state_from`; `way`: old seeds both tiers the former way."""
    modules = (engine_module, background_module)
    if way == "old":
        for module in modules:
            module.seed_views = seed_old  # type: ignore[attr-defined]
    state = folder / f"state-{time.monotonic_ns()}.duckdb"
    if state_from is not None:
        shutil.copy(state_from, state)
    event = {"event_id": "e1", "session_id": "s1", "user_id": "u1", "product_id": "p1",
             "product_name": "one", "category": "c", "action": "view",
             "ts": format_ts(datetime.now(UTC)), "device": None, "price": None}  # fmt: skip
    started = time.perf_counter()
    engine = Engine(EngineConfig.of(pg_dsn=dsn, state_path=state, clock="event"))
    built = time.perf_counter() - started
    assert engine.ingest([Message(orjson.dumps(event), 10**9)]) == 1
    first = time.perf_counter() - started
    engine.stop()
    state.unlink()
    for module in modules:
        module.seed_views = seed_views  # type: ignore[attr-defined]
    return built, first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="60000,1000000,7600000",
                        help="total view rows per case, comma-separated")
    parser.add_argument("--runs", type=int, default=3, help="runs per path and size")
    parser.add_argument("--old-max-rows", type=int, default=60_000,
                        help="largest size the former path runs for")  # fmt: skip
    parser.add_argument("--engine", action=argparse.BooleanOptionalAction, default=True,
                        help="also time Engine(...) to its first event")
    parser.add_argument("--seeds", action=argparse.BooleanOptionalAction, default=True,
                        help="time the seeds alone")
    parser.add_argument("--state-minutes", type=float, default=0.0,
                        help="the engine's state holds this much history at 5,000 events/s "
                        "(0: an empty state)")  # fmt: skip
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="flashrec-restart-") as tmp, \
            LocalPostgres(Path(tmp) / "pg", free_port(), shared_buffers="1GB") as pg:  # fmt: skip
        state = None
        if args.engine and args.state_minutes > 0:
            state = Path(tmp) / "history.duckdb"
            started = time.perf_counter()
            events = build_state(state, args.state_minutes)
            print(f"engine state: {events:,} events ({args.state_minutes:g} minutes at 5,000 "
                  f"events/s), stored in {time.perf_counter() - started:.0f} s", flush=True)
        for size in sizes:
            counts = fill(pg.dsn, size)
            print(f"{sum(counts.values()):,} view rows: "
                  + ", ".join(f"{n} {c:,}" for n, c in counts.items()), flush=True)  # fmt: skip
            med = {}
            for way in ("old", "bulk") if args.seeds else ():
                if way == "old" and size > args.old_max_rows:
                    continue
                times = [time_seed(pg.dsn, way)[0] for _ in range(args.runs)]
                med[way] = statistics.median(times)
                print(f"  seed {way:4s}: median {med[way]:8.2f} s of {args.runs} "
                      f"({min(times):.2f}-{max(times):.2f}), "
                      f"{sum(counts.values()) / med[way]:,.0f} rows/s", flush=True)  # fmt: skip
            if "old" in med:
                print(f"  bulk / old: {med['bulk'] / med['old']:.4f} "
                      f"({med['old'] / med['bulk']:.0f}x faster)", flush=True)  # fmt: skip
            if args.engine:
                for way in ("old", "bulk"):
                    if way == "old" and size > args.old_max_rows:
                        continue
                    runs = [time_engine(pg.dsn, Path(tmp), state, way) for _ in range(args.runs)]
                    built = statistics.median(r[0] for r in runs)
                    first = statistics.median(r[1] for r in runs)
                    print(f"  Engine(...) {way:4s}: median {built:.2f} s; first event stored "
                          f"after {first:.2f} s", flush=True)  # fmt: skip

if __name__ == "__main__":
    main()
