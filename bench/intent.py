"""Purchase-intent benchmark: feature building, training time, scoring rate.

    .venv/bin/python bench/intent.py [--days 7] [--users 1500] [--sessions 20000]

1. Training features: SQL snapshots of the views (DuckDB) over generated traffic, per clock.
2. Training: each algorithm's grid search (small grid unless --grid full), seconds.
3. Scoring: a snapshot of `--sessions` open sessions (a real snapshot's rows repeated under new
   ids, as in a flash sale) scored in one pass: features + model in process, and the whole
   live path (read PostgreSQL, score, upsert session_intent) against a local PostgreSQL.
   Baseline in the same process: the model's predict_proba alone on the same matrix.
Prints medians and p90 over --repeats runs.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from common import pct


def _big_snapshot(snaps, events, want: int):
    """A real snapshot with several open sessions, its rows repeated to `want` sessions."""
    from recommender.events import parse_ts
    from recommender.intent.features import Snapshot, feature_matrix

    best = None
    for i in range(len(events) // 2, len(events), max(1, len(events) // 400)):
        snap = snaps.at(parse_ts(events[i]["ts"]).replace(tzinfo=None))
        n = len(feature_matrix(snap)[0])
        if best is None or n > best[0]:
            best = (n, snap)
    _, snap = best
    copies = max(1, want // max(1, best[0]))
    sessions, customers, hours = [], [], []
    for k in range(copies):
        sessions += [dict(r, session_id=f"{r['session_id']}~{k}", user_id=f"{r['user_id']}~{k}")
                     for r in snap.sessions]
        customers += [dict(r, user_id=f"{r['user_id']}~{k}") for r in snap.customers]
        hours += [dict(r, user_id=f"{r['user_id']}~{k}") for r in snap.hours]
    return Snapshot(snap.clock, sessions, customers, hours)


def _load_pg(dsn: str, snap) -> None:
    """The snapshot's rows as the engine's tables in PostgreSQL."""
    import psycopg

    ddl = {
        "session_features": "session_id text, user_id text, session_start timestamp, "
        "last_event_at timestamp, event_count bigint, view_count bigint, cart_add_count bigint, "
        "purchase_count bigint, distinct_products bigint, distinct_categories bigint, "
        "device text, mean_gap_s double precision, min_gap_s double precision, is_bot boolean",
        "customer_features": "user_id text, window_days bigint, sessions bigint, "
        "product_views bigint, cart_adds bigint, purchases bigint, views_mobile bigint, "
        "views_desktop bigint, purchases_mobile bigint, purchases_desktop bigint, "
        "last_cart_at timestamp, last_purchase_at timestamp, last_seen_at timestamp",
        "customer_hours": "user_id text, window_days bigint, hour_of_day bigint, visits bigint, "
        "purchases bigint",
    }
    rows = {"session_features": snap.sessions, "customer_features": snap.customers,
            "customer_hours": snap.hours}
    with psycopg.connect(dsn) as conn:
        for name, cols in ddl.items():
            conn.execute(f"DROP TABLE IF EXISTS {name}")
            conn.execute(f"CREATE TABLE {name} ({cols})")
            names = [c.split()[0] for c in cols.split(", ")]
            with conn.cursor().copy(f"COPY {name} ({', '.join(names)}) FROM STDIN") as cp:
                for r in rows[name]:
                    cp.write_row([r[n] for n in names])
            if name == "session_features":
                conn.execute("CREATE INDEX ON session_features (last_event_at)")
            else:
                conn.execute(f"CREATE INDEX ON {name} (user_id)")
        conn.execute("CREATE TABLE IF NOT EXISTS flashrec_status (view text, "
                     "watermark timestamptz)")
        conn.execute("INSERT INTO flashrec_status VALUES ('session_features', %s)",
                     (snap.clock.isoformat() + "+00:00",))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--users", type=int, default=1500)
    ap.add_argument("--step-minutes", type=float, default=10.0)
    ap.add_argument("--grid", default="small", choices=("small", "full"))
    ap.add_argument("--sessions", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-pg", action="store_true", help="skip the PostgreSQL scoring path")
    args = ap.parse_args()
    logging.basicConfig(level="WARNING")

    from producers.intent_patterns import IntentConfig, generate
    from recommender.intent.dataset import time_split
    from recommender.intent.features import SqlSnapshots, feature_matrix
    from recommender.intent.score import score_snapshot
    from recommender.intent.train import load_model, train

    events = list(generate(IntentConfig(days=args.days, users=args.users)))
    print(f"events: {len(events):,} ({args.days} days, {args.users} customers)")

    clocks = 0

    def count(_part: str, done: int, total: int) -> None:
        nonlocal clocks
        if done == total:
            clocks += total

    started = time.perf_counter()
    split = time_split(events, step=timedelta(minutes=args.step_minutes), progress=count)
    took = time.perf_counter() - started
    rows = len(split.train) + len(split.test)
    print(f"features: {clocks:,} SQL snapshots in {took:.1f} s = {took / clocks * 1000:.1f} ms "
          f"per snapshot; {rows:,} rows ({rows / took:,.0f} rows/s)")

    folder = Path(tempfile.mkdtemp(prefix="intent-bench-"))
    try:
        result = train(split, folder / "models", grid=args.grid, folds=4)
        for r in result.results:
            print(f"train {r.name:20s} {r.seconds:7.1f} s  CV PR-AUC {r.cv_pr_auc:.4f}  "
                  f"test PR-AUC {r.test['pr_auc']:.4f}")
        print(f"train total (search + importances): {result.seconds:.1f} s; chosen "
              f"{result.best.name}")
        model, meta = load_model(folder / "models")

        snaps = SqlSnapshots(events)
        snap = _big_snapshot(snaps, events, args.sessions)
        snaps.close()
        n = len(feature_matrix(snap)[0])
        _, X = feature_matrix(snap)
        base, full = [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            model.predict_proba(X)
            base.append(time.perf_counter() - t)
            t = time.perf_counter()
            score_snapshot(model, meta["version"], snap)
            full.append(time.perf_counter() - t)
        print(f"score in process ({meta['algorithm']}), {n:,} open sessions per pass: "
              f"median {statistics.median(full) * 1000:.0f} ms (p90 {pct(full, 0.9) * 1000:.0f})"
              f" = {n / statistics.median(full):,.0f} sessions/s; baseline predict_proba alone "
              f"{statistics.median(base) * 1000:.0f} ms = {n / statistics.median(base):,.0f}/s")
        if not args.no_pg:
            from recommender.intent.score import IntentScorer
            from recommender.postgres.local import LocalPostgres

            port = 56000 + int(time.time()) % 1000
            with LocalPostgres(folder / "pg", port) as pg:
                _load_pg(pg.dsn, snap)
                scorer = IntentScorer(pg.dsn, folder / "models", clock="event")
                laps = []
                for _ in range(args.repeats):
                    t = time.perf_counter()
                    written = scorer.score_once()
                    laps.append(time.perf_counter() - t)
                scorer.close()
            print(f"score via PostgreSQL (read views, score, upsert session_intent), "
                  f"{written:,} sessions per pass: median {statistics.median(laps) * 1000:.0f} "
                  f"ms (p90 {pct(laps, 0.9) * 1000:.0f}) = "
                  f"{written / statistics.median(laps):,.0f} sessions/s")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
