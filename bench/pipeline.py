"""Pipeline benchmark: Kafka -> embedded engine -> PostgreSQL, with a full window of history.

For each offered rate: start a broker and PostgreSQL on 127.0.0.1; produce a flash-sale
history covering the window (event times from now - window to now); start the engine (wall
clock) and time how fast it ingests that backlog while maintaining the views (sustained
ingest, events/s: until the refresh holding the last history event is committed in
PostgreSQL, flashrec_meta's raw_seq; the time until the engine has stored them is reported
beside it); then produce live events at the offered rate for --live-seconds and measure
freshness: from the moment an event is handed to the producer to the moment its row is
visible in PostgreSQL's `clickstream` table (published in the same transaction as the views
of that refresh). Generating and producing run in child processes, so this process is the
engine (plus a thread that polls PostgreSQL; with `--background-process` also its child,
the customer views' process): their RSS and state files are the memory figures; the
refresh durations are the engine's own (main tier).

    .venv/bin/python bench/pipeline.py --rates 1000 5000 --window-minutes 30 --live-seconds 30 \
        --settle-seconds 30
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import queue
import statistics
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psutil
from common import free_port, pct

from producers.flash_sale import FlashSaleConfig, generate
from recommender.config import DEFAULT_PARTITIONS
from recommender.engine import Engine, EngineConfig
from recommender.engine.background import BackgroundTier, thread_tier
from recommender.engine.worker import BackgroundProcess, process_tier
from recommender.events import format_ts
from recommender.kafka_io import make_producer
from recommender.local_broker import LocalBroker
from recommender.postgres.local import LocalPostgres


def history_stream(rate: float, minutes: float, seed: int) -> Iterator[bytes]:
    """rate x window events, their times spread evenly over [now - window, now], one at a
    time (a 30-minute window at 5,000/s is 9 million events: too many to hold)."""
    n = int(rate * minutes * 60)
    start = datetime.now(UTC) - timedelta(minutes=minutes)
    cfg = FlashSaleConfig(seed=seed, start=start, events=n, rate=rate,
                          sale_offset_s=minutes * 30, bot_share=0.02)  # fmt: skip
    step = minutes * 60 / max(1, n)
    events = (e for e in generate(cfg) if isinstance(e, dict))
    for i, e in enumerate(events):
        e["ts"] = format_ts(start + timedelta(seconds=i * step))
        yield orjson.dumps(e)


def history(rate: float, minutes: float, seed: int) -> list[bytes]:
    """`history_stream` as a list."""
    return list(history_stream(rate, minutes, seed))


def produce_all(bootstrap: str, values: Iterable[bytes], **overrides: Any
                ) -> tuple[int, float]:  # fmt: skip
    """Produce every value (producer settings `overrides`); returns (count, seconds)."""
    producer = make_producer(bootstrap, **overrides)
    started = time.perf_counter()
    i = -1
    for i, v in enumerate(values):
        while True:
            try:
                producer.produce("clickstream", v)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 10_000 == 0:
            producer.poll(0)
    producer.flush(120)
    return i + 1, time.perf_counter() - started


def _produce_history(bootstrap: str, rate: float, minutes: float, out: Any,
                     linger_ms: float | None = None) -> None:  # fmt: skip
    """Child process: generate and produce the history, streaming; sends (events, seconds
    to generate and produce) back. `linger_ms`: the producer's linger (None: the
    producers' default, 20 ms). Longer lingers make fewer, larger batches, and the embedded
    broker's fetches cost in proportion to the batches it holds (bench/broker.py)."""
    overrides = {} if linger_ms is None else {"linger.ms": linger_ms}
    out.put(produce_all(bootstrap, history_stream(rate, minutes, seed=1), **overrides))


def _produce_live(bootstrap: str, rate: float, seconds: float, settle: float, out: Any,
                  linger_ms: float | None) -> None:
    """Child process: produce at `rate` events/s with current timestamps for settle + seconds.

    The events are generated before the clock starts (the load generator stands for shop
    fronts on other machines: its Python work is not the pipeline's); each send stamps `ts`
    and is keyed by session, as the event contract asks (docs/events.md).
    Messages to `out`: ("ready",) once generated; after `settle`, every 20th event's
    ("sent", event_id, wall time handed to the producer); ("cpu", seconds used while
    measured); then None."""
    overrides = {} if linger_ms is None else {"linger.ms": linger_ms}
    producer = make_producer(bootstrap, **overrides)
    cfg = FlashSaleConfig(seed=2, start=datetime.now(UTC), events=None, duration_s=None,
                          rate=rate, bot_share=0.02)  # fmt: skip
    wanted = int(rate * (settle + seconds)) + int(rate)
    generated = (e for e in generate(cfg) if isinstance(e, dict))
    events = [next(generated) for _ in range(wanted)]
    out.put(("ready",))
    started = time.perf_counter()
    sent = 0
    cpu_at_settle = None
    while time.perf_counter() < started + settle + seconds and sent < wanted:
        due = min(wanted, int((time.perf_counter() - started) * rate))
        if cpu_at_settle is None and time.perf_counter() >= started + settle:
            cpu_at_settle = time.process_time()
        stamp = format_ts(datetime.now(UTC))  # one stamp per tick (ticks are ~2 ms apart)
        while sent < due:
            e = events[sent]
            e["ts"] = stamp
            producer.produce("clickstream", orjson.dumps(e), key=e["session_id"])
            if sent % 20 == 0 and cpu_at_settle is not None:
                out.put(("sent", e["event_id"], time.time()))
            sent += 1
        producer.poll(0)
        time.sleep(0.002)
    producer.flush(30)
    out.put(("cpu", time.process_time() - (cpu_at_settle or 0.0)))
    out.put(None)


def _processes(broker: LocalBroker, pg_dir: Path) -> dict[str, list[psutil.Process]]:
    """The processes of each role now: engine (this process: engine threads and the
    freshness poller), background (the customer views' child process, when there is one),
    broker, PostgreSQL (postmaster and backends)."""
    me = psutil.Process()
    worker = [p for p in me.children()
              if "recommender.engine.worker" in " ".join(p.cmdline())]  # fmt: skip
    broker_pid = broker.process.pid if broker.process else -1
    pg: list[psutil.Process] = []
    for p in psutil.process_iter(["cmdline"]):
        if str(pg_dir) in " ".join(p.info["cmdline"] or ()):
            pg += [p, *p.children(recursive=True)]
    broker_procs = [psutil.Process(broker_pid)] if broker_pid > 0 else []
    return {"engine": [me], "background": worker, "broker": broker_procs, "postgres": pg}


def _cpu(groups: dict[str, list[psutil.Process]]) -> dict[str, dict[int, float]]:
    """CPU seconds (user + system) of each process, by role and pid."""
    out: dict[str, dict[int, float]] = {}
    for role, procs in groups.items():
        out[role] = {}
        for p in procs:
            try:
                t = p.cpu_times()
            except psutil.Error:
                continue
            out[role][p.pid] = t.user + t.system
    return out


def cpu_cores(before: dict[str, dict[int, float]], after: dict[str, dict[int, float]],
              seconds: float) -> dict[str, float]:
    """Cores used per role between two `_cpu` snapshots (processes seen in the second;
    one that started in between counts from zero)."""
    used = {role: sum(t - before.get(role, {}).get(pid, 0.0) for pid, t in pids.items())
            for role, pids in after.items()}  # fmt: skip
    cores = {role: round(v / seconds, 2) for role, v in used.items()}
    cores["total"] = round(sum(used.values()) / seconds, 2)
    return cores


def live(bootstrap: str, dsn: str, rate: float, seconds: float, settle: float,
         on_ready: Any = None, on_produced: Any = None,
         linger_ms: float | None = None) -> tuple[list[float], float]:  # fmt: skip
    """Freshness of every 20th live event after the first `settle` seconds: handed to the
    producer (in a child process, so the engine's process does not share its CPU time) ->
    visible in PostgreSQL; and the producer's CPU seconds in that time. `on_ready()` is
    called when the producer starts sending, `on_produced()` when it has sent its last
    event. `linger_ms`: the producer's linger (None: the project's producer default)."""
    import psycopg

    ctx = mp.get_context("spawn")
    sent = ctx.Queue()
    child = ctx.Process(target=_produce_live,
                        args=(bootstrap, rate, seconds, settle, sent, linger_ms))  # fmt: skip
    child.start()
    pending: dict[str, float] = {}
    lags: list[float] = []
    producer_cpu = 0.0
    finished = False
    deadline = time.time() + settle + seconds + 300  # generating comes first
    with psycopg.connect(dsn, autocommit=True) as conn:
        # each main-tier publish NOTIFYs at its commit: the pending events are looked up
        # then (and once a second in any case), not by polling every few milliseconds
        # (that scanned the lagging rows 50 times a second, on the measured PostgreSQL)
        conn.execute("LISTEN flashrec_changes")
        last_look = 0.0
        while (not finished or pending) and time.time() < deadline:
            while True:
                try:
                    item = sent.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    finished = True
                    if on_produced is not None:
                        on_produced()
                elif item[0] == "ready":
                    if on_ready is not None:
                        on_ready()
                elif item[0] == "cpu":
                    producer_cpu = item[1]
                else:
                    pending[item[1]] = item[2]
            notified = list(conn.notifies(timeout=0.05, stop_after=1))
            now = time.time()  # a published row was visible from its commit's NOTIFY on
            if pending and (notified or now - last_look >= 1.0):
                last_look = now
                since = datetime.fromtimestamp(min(pending.values()) - 1.0, UTC)
                seen = conn.execute(
                    "SELECT event_id FROM clickstream WHERE ts >= %s AND event_id = ANY(%s)",
                    (since, list(pending)),
                ).fetchall()  # fmt: skip
                for (event_id,) in seen:
                    lags.append(now - pending.pop(event_id))
    child.join(timeout=30)
    return lags, producer_cpu


def _wait_published(dsn: str, engine: Engine, seq: int) -> None:
    """Until PostgreSQL holds a refresh of every raw event up to `seq` (flashrec_meta)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            row = conn.execute("SELECT value FROM flashrec_meta WHERE key = 'raw_seq'").fetchone()
            if row is not None and int(row[0]) >= seq:
                return
            if engine.error is not None:
                raise engine.error
            time.sleep(0.05)


def _view_rows(dsn: str) -> dict[str, int]:
    """Rows of each view at its last refresh, as flashrec_status has them."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT view, row_count FROM flashrec_status ORDER BY view")
        return {view: int(count or 0) for view, count in rows}


def _status_ms(dsn: str, views: list[str]) -> float:
    """The last refresh's compute time of `views` (summed), as flashrec_status has it."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT refresh_ms FROM flashrec_status WHERE view = ANY(%s)",
                            (views,)).fetchall()  # fmt: skip
    return sum(r[0] or 0.0 for r in rows)


def run(rate: float, minutes: float, live_seconds: float, refresh: float,
        settle: float, background: float = 30.0, publish_thread: bool = True,
        linger_ms: float | None = None, nice: int = 10,
        background_process: bool = False, duckdb_threads: int | None = None,
        catchup_refresh: float | None = None, shared_buffers: str = "1GB",
        background_share: float | None = None,
        view_intervals: dict[str, float] | None = None,
        unlogged_views: bool = False, history_linger_ms: float | None = None,
        partitions: int = DEFAULT_PARTITIONS, storage: str = "memory") -> dict:  # fmt: skip
    proc = psutil.Process()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        broker = LocalBroker(port=free_port(), partitions=partitions, storage=storage,
                             data_dir=work / "broker", log_path=work / "broker.log").start()
        pg = LocalPostgres(work / "pg", free_port(), shared_buffers=shared_buffers).start()
        try:
            ctx = mp.get_context("spawn")  # generation's memory stays out of this process
            done = ctx.Queue()
            child = ctx.Process(target=_produce_history,
                                args=(broker.bootstrap, rate, minutes, done,
                                      history_linger_ms))  # fmt: skip
            child.start()
            n_history, produce_s = done.get()
            child.join()
            engine = Engine(EngineConfig.of(
                pg_dsn=pg.dsn, state_path=work / "engine.duckdb", bootstrap=broker.bootstrap,
                clock="wall", refresh_interval=refresh, background_interval=background,
                publish_thread=publish_thread, background_nice=nice,
                **({} if duckdb_threads is None else {"duckdb_threads": duckdb_threads or None}),
                **({} if catchup_refresh is None else {"catchup_refresh": catchup_refresh}),
                **({} if background_share is None else {"background_share": background_share}),
                view_intervals=view_intervals or {}, unlogged_views=unlogged_views,
            ), tier=process_tier if background_process else thread_tier)  # fmt: skip
            started = time.perf_counter()
            engine.start()
            while engine.store.counters()["accepted"] < n_history:
                if engine.error is not None:
                    raise engine.error
                time.sleep(0.05)
            stored_s = time.perf_counter() - started
            _wait_published(pg.dsn, engine, engine.store.last_seq)
            catch_up = time.perf_counter() - started
            rss_after_history = proc.memory_info().rss
            mark: list[int] = []  # refreshes done when the measured part of the live phase began
            cpu_marks: list[tuple[float, Any]] = []  # (time, CPU per process): start, end

            def cpu_mark() -> None:
                cpu_marks.append((time.perf_counter(), _cpu(_processes(broker, work / "pg"))))

            def measure_from_here() -> None:
                mark.append(len(engine.refresh_ms))
                cpu_mark()

            timer = threading.Timer(settle, measure_from_here)
            lags, producer_cpu = live(broker.bootstrap, pg.dsn, rate, live_seconds, settle,
                                      timer.start, cpu_mark, linger_ms)  # fmt: skip
            cores: dict[str, float] = {}
            if len(cpu_marks) == 2:  # from the end of settling to the last event produced
                (t0, before), (t1, after) = cpu_marks
                after["producer"] = {0: producer_cpu}
                before["producer"] = {}
                cores = cpu_cores(before, after, t1 - t0)
            live_refresh = list(engine.refresh_ms)[mark[0] if mark else 0 :]
            if isinstance(engine.tier, BackgroundTier):
                background_ms = engine.tier.last_refresh_ms
                background_runs: int | None = engine.tier.refresh_count
            else:  # the child process: its views' last compute time, from flashrec_status
                background_ms = _status_ms(pg.dsn, engine.background_names)
                background_runs = None
            stats = engine.stats()
            view_rows = _view_rows(pg.dsn)
            sessions = engine.runner.overrides.get("session_features")
            rebuilt = getattr(getattr(sessions, "state", None), "rebuilt", None)
            threads = engine.config.duckdb_threads or 0
            rss_worker = 0
            if isinstance(engine.tier, BackgroundProcess) and engine.tier.running:
                rss_worker = psutil.Process(engine.tier.process.pid).memory_info().rss
            engine.stop()
            state_mb = sum(f.stat().st_size for f in work.glob("engine*.duckdb")) / 2**20
        finally:
            pg.stop()
            broker.stop()
    return {
        "offered_rate": rate, "window_minutes": minutes, "background_interval_s": background,
        "history_events": n_history,
        "settle_s": settle, "live_s": live_seconds,
        "produce_s": round(produce_s, 1),
        "ingest_events_per_s": round(n_history / catch_up),  # views in PostgreSQL
        "catch_up_s": round(catch_up, 1),
        "stored_events_per_s": round(n_history / stored_s),  # stored by the engine
        "stored_s": round(stored_s, 1),
        "freshness_samples": len(lags),
        "freshness_p50_s": round(statistics.median(lags), 3) if lags else None,
        "freshness_p90_s": round(pct(lags, 0.90), 3) if lags else None,
        "freshness_p99_s": round(pct(lags, 0.99), 3) if lags else None,
        "live_refreshes": len(live_refresh),
        "live_refresh_ms_p50": round(statistics.median(live_refresh)) if live_refresh else None,
        "live_refresh_ms_p99": round(pct(live_refresh, 0.99)) if live_refresh else None,
        "background_refresh_ms_last": round(background_ms),
        "background_refreshes": background_runs, "background_process": background_process,
        "duckdb_threads": threads, "catchup_refresh_s": engine.config.refresh.catchup,
        "publish_thread": publish_thread,
        "producer_linger_ms": linger_ms, "background_nice": nice,
        "background_share": engine.config.background.share,
        "view_intervals": engine.config.refresh.view_intervals,
        "unlogged_views": unlogged_views, "history_linger_ms": history_linger_ms,
        "partitions": partitions, "broker_storage": storage,
        "cpu_cores_after_settle": cores,
        "rss_mb_after_history": round(rss_after_history / 2**20),
        "rss_mb_end": round(proc.memory_info().rss / 2**20),
        "rss_mb_background_end": round(rss_worker / 2**20),
        "state_file_mb": round(state_mb),
        "stored_events": stats["stored"], "pg_shared_buffers": shared_buffers,
        "view_rows": view_rows,  # at the end, as flashrec_status has them
        "sessions_rebuilt": rebuilt,  # by the session maintainer from the store (None: SQL)
    }  # fmt: skip


def main() -> None:
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("recommender.engine.background").setLevel(logging.INFO)  # durations
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[1000, 5000])
    parser.add_argument("--window-minutes", type=float, default=30.0)
    parser.add_argument("--live-seconds", type=float, default=30.0)
    parser.add_argument("--settle-seconds", type=float, default=30.0,
                        help="live traffic before measuring (the engine finishes the backlog)")
    parser.add_argument("--refresh-interval", type=float, default=0.5)
    parser.add_argument("--background-interval", type=float, default=30.0,
                        help="seconds between customer-view refreshes (engine default 30)")
    parser.add_argument("--inline-publish", action="store_true",
                        help="publish each refresh in the loop, not in the publish thread")
    parser.add_argument("--producer-linger-ms", type=float, default=None,
                        help="the live producer's linger.ms (default: the project's producer "
                        "default, 20 ms; earlier runs used 2)")
    parser.add_argument("--background-nice", type=int, default=10,
                        help="nice value added to the background tier (engine default 10)")
    parser.add_argument("--background-process", action="store_true",
                        help="the customer views in their own process (flashrec up "
                        "--background-process), not in a thread of the engine")
    parser.add_argument("--duckdb-threads", type=int, default=None,
                        help="DuckDB threads of the engine (default: the engine's, 1; "
                        "0: one per core)")
    parser.add_argument("--catchup-refresh", type=float, default=None,
                        help="seconds of ingest between refreshes while the engine is behind "
                        "(default: the engine's, 5)")
    parser.add_argument("--pg-shared-buffers", default="1GB",
                        help="the local PostgreSQL's shared_buffers (flashrec up's default "
                        "1GB; 128MB until 2026-12-03)")
    parser.add_argument("--background-share", type=float, default=None,
                        help="most of the time the customer views' refreshes take (default: "
                        "the engine's, 0.5; 1: back to back when a refresh outlasts the "
                        "interval, as before 2026-12-03's third session)")
    parser.add_argument("--view-interval", action="append", default=[], metavar="VIEW=SECONDS",
                        help="refresh a main-tier view on its own, slower cadence "
                        "(RefreshConfig.view_intervals); repeatable")
    parser.add_argument("--history-linger-ms", type=float, default=None,
                        help="linger.ms of the history's producer (default: the producers' "
                        "20). The embedded broker's fetch cost grows with the batches it "
                        "holds (bench/broker.py): a longer linger makes fewer, larger batches")
    parser.add_argument("--partitions", type=int, default=DEFAULT_PARTITIONS,
                        help="partitions of the topic (default: flashrec's, "
                        f"{DEFAULT_PARTITIONS}); the broker's CPU grows with the batches it "
                        "holds, and keyed traffic makes batches per partition (bench/broker.py)")
    parser.add_argument("--unlogged-views", action="store_true",
                        help="views without a change feed in UNLOGGED tables (no WAL; "
                        "flashrec up --unlogged-views)")
    parser.add_argument("--broker-storage", choices=["memory", "disk"], default="memory",
                        help="the broker's log: in memory, or on disk through the local "
                        "object store (flashrec up's default)")
    parser.add_argument("--out", type=Path, default=Path("bench/out/pipeline.json"))
    args = parser.parse_args()
    intervals = {}
    for item in args.view_interval:
        view, _, seconds = item.partition("=")
        try:
            intervals[view] = float(seconds)
        except ValueError:
            parser.error(f"--view-interval {item!r}: expected VIEW=SECONDS")
    results = []
    for rate in args.rates:
        result = run(rate, args.window_minutes, args.live_seconds, args.refresh_interval,
                     args.settle_seconds, args.background_interval, not args.inline_publish,
                     args.producer_linger_ms, args.background_nice,
                     args.background_process, args.duckdb_threads, args.catchup_refresh,
                     args.pg_shared_buffers, args.background_share, intervals,
                     args.unlogged_views, args.history_linger_ms, args.partitions,
                     args.broker_storage)
        print(json.dumps(result), flush=True)
        results.append(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
