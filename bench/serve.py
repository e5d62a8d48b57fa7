"""Benchmark of `GET /v1/recommend`: requests/s and latency p50/p90/p99.

Starts `flashrec serve --history TRAIN` (one process, uvloop + httptools) on 127.0.0.1 and
replays the clicks of the test sessions against it with a load generator in this process
(raw HTTP/1.1 keep-alive connections on uvloop, on the same machine):

1. closed loop: C connections, each sending its next request when the answer arrives
   (the most the server answers per second);
2. open loop at fixed rates (default 1,000 and 2,000 req/s): requests are due on a fixed
   schedule and latency is measured from the due time, so queueing is counted
   (no coordinated omission).

Also prints the kernel alone (same sessions, in this process) as the baseline.

With `--blend`, the same server then takes the same loads again with every other request
asking for the blend (`blend=true`) and the others for pure VMIS-kNN (`blend=false`), so both
are measured under one load in one process: p50/p90/p99 of each and blend/pure. The blend
alone (in this process, against the kernel alone) comes first. The server is built from the
history file: its blend has VMIS-kNN and the fill table (co-occurrence of the history's last
day) but no co_view_pairs or trending_by_category to follow.

With `--blend-views`, the same loads (blend and pure alternating) run again on
`flashrec serve --pg-dsn`, built from a PostgreSQL holding tables named as the views it
follows (vmis_history with a surge planted in its newest hour, co_view_pairs,
trending_by_category), which a writer changes every second during the loads: the server
re-reads them, keeps its mirrors and finds the surge as it does in production on a
PostgreSQL-wire database without a change feed.

    .venv/bin/python bench/serve.py [--train PATH --test PATH --rates 1000,2000 --seconds 10]
                                    [--blend] [--blend-views]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "serenade_example"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_requests(test: Path, limit: int = 200_000, modes: tuple[str, ...] = ()) -> list[bytes]:
    """One GET per click of the test file, in time order, with consent (stores sessions).
    With `modes` ("pure", "blend"), one GET per click and mode, in turn, each mode with
    sessions of its own and `blend=false` or `blend=true`."""
    sys.path.insert(0, str(ROOT))
    from recommender.sessions_io import read_sessions

    data = read_sessions(test)
    order = np.argsort(data.timestamps, kind="stable")
    out = []
    for n in order[:limit].tolist():
        for mode in modes or ("",):
            prefix, extra = (f"b{mode[0]}", f"&blend={str(mode == 'blend').lower()}") if mode else (
                "b", "")  # fmt: skip
            target = (
                f"/v1/recommend?session_id={prefix}{data.session_ids[n]}"
                f"&item_id={data.item_ids[n]}&user_consent=true{extra}"
            )
            out.append(f"GET {target} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
    return out


class Conn:
    """A keep-alive HTTP/1.1 connection reading Content-Length framed answers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Conn:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.transport.get_extra_info("socket").setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
        )
        return cls(reader, writer)

    async def request(self, raw: bytes) -> int:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        at = head.lower().find(b"content-length:")
        length = int(head[at + 15 : head.find(b"\r\n", at)])
        await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        self.writer.close()


async def closed_loop(port: int, requests: list[bytes], conns: int, seconds: float,
                      modes: tuple[str, ...] = ()) -> dict:  # fmt: skip
    pool = [await Conn.open(port) for _ in range(conns)]
    latencies: list[float] = []
    picked: list[int] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    counter = iter(range(1 << 62))

    async def worker(conn: Conn) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            i = next(counter) % len(requests)
            t = time.perf_counter()
            if await conn.request(requests[i]) != 200:
                errors += 1
            latencies.append(time.perf_counter() - t)
            picked.append(i)

    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in pool))
    elapsed = time.perf_counter() - started
    for c in pool:
        c.close()
    return by_mode(summary(latencies, elapsed, errors), latencies, picked, elapsed, modes)


async def open_loop(port: int, requests: list[bytes], rate: float, seconds: float,
                    modes: tuple[str, ...] = ()) -> dict:  # fmt: skip
    conns = max(8, int(rate // 50))
    pool = [await Conn.open(port) for _ in range(conns)]
    total = int(rate * seconds)
    latencies: list[float] = []
    picked: list[int] = []
    errors = 0
    start = time.perf_counter() + 0.05

    async def worker(w: int, conn: Conn) -> None:
        nonlocal errors
        for i in range(w, total, conns):
            due = start + i / rate
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            if await conn.request(requests[i % len(requests)]) != 200:
                errors += 1
            latencies.append(time.perf_counter() - due)
            picked.append(i % len(requests))

    await asyncio.gather(*(worker(w, c) for w, c in enumerate(pool)))
    elapsed = time.perf_counter() - start
    for c in pool:
        c.close()
    return by_mode(summary(latencies, elapsed, errors), latencies, picked, elapsed, modes)


def summary(latencies: list[float], elapsed: float, errors: int) -> dict:
    ms = np.asarray(latencies) * 1000
    return {
        "requests": len(ms),
        "rps": len(ms) / elapsed,
        "p50": float(np.percentile(ms, 50)),
        "p90": float(np.percentile(ms, 90)),
        "p99": float(np.percentile(ms, 99)),
        "errors": errors,
    }


def by_mode(result: dict, latencies: list[float], picked: list[int], elapsed: float,
            modes: tuple[str, ...]) -> dict:  # fmt: skip
    """`result` with a summary per mode when the requests alternate between `modes`."""
    if modes:
        kind = np.asarray(picked) % len(modes)
        ms = np.asarray(latencies)
        result["modes"] = {m: summary(ms[kind == k].tolist(), elapsed, 0)
                           for k, m in enumerate(modes)}  # fmt: skip
    return result


def session_inputs(test: Path) -> list[list[str]]:
    """Each click of the test file with the one before it in its session, as the API holds it."""
    from recommender.sessions_io import read_sessions

    data = read_sessions(test)
    order = np.lexsort((data.timestamps, data.session_ids))
    sessions, items = data.session_ids[order], data.item_ids[order].astype(str)
    return [
        [items[j - 1], items[j]] if j and sessions[j - 1] == sessions[j] else [items[j]]
        for j in range(len(items))
    ]


def trending_rows(train: Path, categories: int = 20) -> tuple[dict, list[tuple]]:
    """A catalog giving each item of `train` one of `categories` categories (by its code) and
    trending_by_category's rows of an hour: per category and 5-minute window the 10 items
    with the most clicks in `train` (the same every window)."""
    from datetime import datetime, timedelta

    from recommender.sessions_io import read_sessions

    items, counts = np.unique(read_sessions(train).item_ids.astype(str), return_counts=True)
    catalog = {item: (item, f"c{i % categories}") for i, item in enumerate(items.tolist())}
    top: dict[str, list[tuple[int, str]]] = {}
    for item, count in zip(items.tolist(), counts.tolist(), strict=True):
        top.setdefault(catalog[item][1], []).append((count, item))
    start = datetime(2026, 1, 1, 12)
    rows = []
    for category, ranked in top.items():
        ranked.sort(reverse=True)
        for w in range(12):
            for rank, (count, item) in enumerate(ranked[:10], start=1):
                rows.append((category, rank, item, item, count, count, 0,
                             start + timedelta(minutes=5 * w)))  # fmt: skip
    return catalog, rows


def planted_surge(index, category_of, how_many: int = 30):
    """The popular source's tables with a surge of the `how_many` products with the fewest
    sessions in `index`, each now in as many sessions as the most viewed one, against the
    index's sessions as the day before."""
    from recommender.popularity import popularity
    from recommender.surge import day_before

    counts = index.recent_counts(float("inf"))
    top = max(counts.values())
    quiet = sorted(counts, key=lambda i: (counts[i], i))[:how_many]
    return popularity({**counts, **dict.fromkeys(quiet, top)}, day_before(counts), category_of)


def blend_baseline(train: Path, test: Path, n: int = 5000) -> dict:
    """The blend alone against the kernel alone, in turn on the same sessions (no HTTP): the
    server's blend over the index of `train` with its fill table and a trending mirror
    (`trending_rows`), no co-view mirror; "surge": the same with a surge planted
    (`planted_surge`), so that the popular source mixes it in."""
    from recommender.changefeed import ChangeBatch
    from recommender.serving.blender import Blender
    from recommender.serving.live_index import LiveIndex
    from recommender.serving.view_mirrors import TRENDING, TrendingMirror
    from recommender.serving.views import Views

    index = LiveIndex()
    index.build_from_tsv(train)
    views = Views(None)
    views.catalog, rows = trending_rows(train)
    columns = ["category", "rank", "product_id", "product_name", "engagement_score",
               "view_count", "cart_adds", "window_start"]  # fmt: skip
    blenders = {}
    for mode in ("blend", "surge"):
        trending = TrendingMirror(lambda: None, lambda: ChangeBatch(TRENDING, 0, columns, []))
        trending.load(ChangeBatch(TRENDING, 0, columns, rows))
        blenders[mode] = Blender(index, views, trending=trending)
        blenders[mode].fill_table.rebuild()
        blenders[mode].fill_table.find_surge()
    blenders["surge"].fill_table.popularity = planted_surge(index, views.category)
    blender = blenders["blend"]
    inputs = session_inputs(test)
    how_many = index.params.how_many
    index.recommend(inputs[0], how_many)  # compile
    for b in blenders.values():
        b.recommend(inputs[0], how_many)
    times: dict[str, list[float]] = {"pure": [], "blend": [], "surge": []}
    for q in range(n):
        items = inputs[q % len(inputs)]
        t = time.perf_counter()
        index.recommend(items, how_many)
        times["pure"].append(time.perf_counter() - t)
        for mode, b in blenders.items():
            t = time.perf_counter()
            b.recommend(items, how_many)
            times[mode].append(time.perf_counter() - t)
    out = {m: {q: float(np.percentile(np.asarray(v) * 1e6, q)) for q in (50, 90, 99)}
           for m, v in times.items()}  # fmt: skip
    out["fill"] = {"items": len(blender.fill_table.table), "sessions": blender.fill_table.sessions,
                   "build_s": blender.fill_table.build_s}  # fmt: skip
    out["surging"] = len(blenders["surge"].fill_table.surge.share)
    return out


def history_sessions(train: Path) -> dict[str, tuple[list[str], float]]:
    """{session: (its distinct items in click order, its last click's time)} of `train`, as
    vmis_history holds them."""
    from recommender.sessions_io import read_sessions

    data = read_sessions(train)
    sessions: dict[str, tuple[list[str], float]] = {}
    for s, i, t in zip(data.session_ids.tolist(), data.item_ids.astype(str).tolist(),
                       data.timestamps.tolist(), strict=True):  # fmt: skip
        items, last = sessions.setdefault(str(s), ([], 0.0))
        if i not in items:
            items.append(i)
        sessions[str(s)] = (items, max(last, t))
    return sessions


def fill_view_tables(dsn: str, train: Path, surge_sessions: int = 600, surging: int = 30,
                     pairs: int = 20_000) -> dict:  # fmt: skip
    """Tables named as the views `flashrec serve --pg-dsn` follows, filled from `train`:
    vmis_history (its sessions, and `surge_sessions` more in the newest hour over the
    `surging` least viewed items: a surge), co_view_pairs (the `pairs` item pairs most often
    in one session, at least 3 sessions), trending_by_category (`trending_rows`) and one
    clickstream event per item (the API's catalog of categories)."""
    from collections import Counter
    from datetime import UTC, datetime
    from itertools import combinations

    import psycopg

    sys.path.insert(0, str(ROOT))
    from tests.serving_support import SCHEMA  # the view tables as the serving tests have them

    sessions = history_sessions(train)
    newest = max(t for _, t in sessions.values())
    per_item = Counter(i for items, _ in sessions.values() for i in items)
    quiet = sorted(per_item, key=lambda i: (per_item[i], i))[:surging]
    rng = np.random.default_rng(11)
    for n in range(surge_sessions):
        picked = rng.choice(quiet, size=int(rng.integers(2, 4)), replace=False).tolist()
        sessions[f"surge-{n}"] = (picked, newest - float(rng.uniform(0, 3000)))
    together = Counter(
        pair for items, _ in sessions.values() if len(items) <= 20
        for pair in combinations(sorted(items), 2)
    )  # fmt: skip
    top_pairs = [(p, n) for p, n in together.most_common(pairs) if n >= 3]
    catalog, trending = trending_rows(train)
    when = datetime.fromtimestamp(newest, UTC)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)
        with conn.cursor().copy("COPY vmis_history FROM STDIN") as copy:
            for s, (items, last) in sessions.items():
                copy.write_row((s, items, datetime.fromtimestamp(last, UTC)))
        with conn.cursor().copy("COPY co_view_pairs FROM STDIN") as copy:
            for (a, b), n in top_pairs:
                copy.write_row((a, b, a, b, n))
        with conn.cursor().copy("COPY trending_by_category FROM STDIN") as copy:
            for row in trending:
                copy.write_row(row)
        with conn.cursor().copy("COPY clickstream FROM STDIN") as copy:
            for item, (name, category) in catalog.items():
                copy.write_row((f"e-{item}", "s", item, name, category, "view", when))
    return {"sessions": len(sessions), "pairs": len(top_pairs), "trending_rows": len(trending),
            "surging": surging, "newest": newest}  # fmt: skip


class ViewWriter:
    """Changes the view tables every second while a load runs, as a streaming database would:
    `sessions` new vmis_history rows (two random items each), one category's trending rows
    re-scored, `pairs` co_view_pairs counts raised."""

    def __init__(self, dsn: str, newest: float, sessions: int = 20, pairs: int = 50) -> None:
        import threading

        self.dsn, self.clock, self.sessions, self.pairs = dsn, newest, sessions, pairs
        self.stop = threading.Event()
        self.ticks = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from datetime import UTC, datetime

        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            items = [r[0] for r in conn.execute("SELECT product_id FROM clickstream")]
            rng = np.random.default_rng(5)
            while not self.stop.wait(1.0):
                self.clock += 1.0
                when = datetime.fromtimestamp(self.clock, UTC)
                rows = [(f"w{self.ticks}-{n}", rng.choice(items, 2, replace=False).tolist(), when)
                        for n in range(self.sessions)]  # fmt: skip
                with conn.transaction():
                    conn.cursor().executemany("INSERT INTO vmis_history VALUES (%s, %s, %s)", rows)
                    conn.execute("UPDATE trending_by_category SET engagement_score = "
                                 "engagement_score + 1 WHERE category = %s",
                                 (f"c{self.ticks % 20}",))  # fmt: skip
                    conn.execute("UPDATE co_view_pairs SET co_view_count = co_view_count + 1 "
                                 "WHERE ctid IN (SELECT ctid FROM co_view_pairs "
                                 "ORDER BY random() LIMIT %s)", (self.pairs,))  # fmt: skip
                self.ticks += 1

    def __enter__(self) -> ViewWriter:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def server_status(port: int) -> dict:
    import urllib.request

    import orjson

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/status", timeout=5) as r:
        return orjson.loads(r.read())["index"]


def blend_with_views(args: argparse.Namespace) -> tuple[dict, dict, list]:
    """The blend against pure VMIS-kNN (requests alternating) on `flashrec serve --pg-dsn`
    following tables named as the views (`fill_view_tables`) that `ViewWriter` changes every
    second: the index, both mirrors and the fill table's surge as in production."""
    from recommender.postgres.local import LocalPostgres

    folder = Path(tempfile.mkdtemp(prefix="flashrec-views-"))
    pg = LocalPostgres(folder / "pg", free_port()).start()
    port = free_port()
    proc = None
    try:
        facts = fill_view_tables(pg.dsn, args.train)
        cmd = [sys.executable, "-m", "recommender.cli", "serve", "--pg-dsn", pg.dsn, "--port",
               str(port), "--data-dir", str(folder / "data")]  # fmt: skip
        if args.server_cpu is not None:
            cmd = ["taskset", "-c", str(args.server_cpu), *cmd]
        proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.DEVNULL)
        wait_ready(port, proc)
        deadline = time.monotonic() + 120
        while True:
            blend = server_status(port)["blend"]
            mirrors = [blend[v] for v in ("co_view_pairs", "trending_by_category")]
            if blend["fill"].get("surge_products") and all(m and m.get("rows", m.get("pairs"))
                                                           for m in mirrors):  # fmt: skip
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"the blend's sources were not ready in 120 s: {blend}")
            time.sleep(0.5)
        both = load_requests(args.test, modes=MODES)
        with ViewWriter(pg.dsn, facts["newest"]) as writer:
            asyncio.run(closed_loop(port, both, 4, 2.0, MODES))  # warm up
            rows = server_loads(port, both, args, MODES)
            facts["writer_ticks"] = writer.ticks
        return facts, server_status(port)["blend"], rows
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
        pg.stop()
        shutil.rmtree(folder, ignore_errors=True)


def kernel_baseline(train: Path, test: Path, n: int = 5000) -> dict:
    """The kernel alone on the same index and sessions (no HTTP, no session store)."""
    from recommender.serving.live_index import LiveIndex
    from recommender.sessions_io import read_sessions

    index = LiveIndex()
    started = time.perf_counter()
    index.build_from_tsv(train)
    build_s = time.perf_counter() - started
    data = read_sessions(test)
    order = np.lexsort((data.timestamps, data.session_ids))
    sessions, items = data.session_ids[order], data.item_ids[order].astype(str)
    inputs = [
        [items[j - 1], items[j]] if j and sessions[j - 1] == sessions[j] else [items[j]]
        for j in range(len(items))
    ]
    index.recommend(inputs[0])  # compile
    times = []
    for q in range(n):
        t = time.perf_counter()
        index.recommend(inputs[q % len(inputs)])
        times.append(time.perf_counter() - t)
    us = np.asarray(times) * 1e6
    return {
        "build_s": build_s,
        "p50_us": float(np.median(us)),
        "p90_us": float(np.percentile(us, 90)),
        "p99_us": float(np.percentile(us, 99)),
    }


def sync_lag(train: Path, trials: int) -> dict:
    """Seconds from a row written to vmis_history (PostgreSQL) to an API answer using it.

    A PostgreSQL (as `flashrec up` runs it) holds vmis_history with the training sessions,
    no flashrec_changes table: `flashrec serve --pg-dsn` builds from it and follows it by
    re-reading its keys every second.
    Each trial inserts a session pairing a brand-new item with a known one, then polls
    /v1/recommend for the new item until the known one is recommended.
    """
    import shutil
    import urllib.request

    import orjson
    import psycopg

    from recommender.postgres.local import LocalPostgres

    folder = Path(tempfile.mkdtemp(prefix="flashrec-lag-"))
    pg = LocalPostgres(folder / "pg", free_port()).start()
    dsn = pg.dsn
    sessions = history_sessions(train)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE vmis_history (session_id TEXT, items TEXT[], last_ts FLOAT8)")
        with conn.cursor().copy("COPY vmis_history FROM STDIN") as copy:
            for s, (items, last) in sessions.items():
                copy.write_row((s, items, last))
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "recommender.cli",
            "serve",
            "--pg-dsn",
            dsn,
            "--port",
            str(port),
            "--data-dir",
            str(folder / "data"),
        ],
        cwd=ROOT,
        stderr=subprocess.DEVNULL,
    )
    lags = []
    try:
        wait_ready(port, proc)
        known = next(iter(sessions.values()))[0][0]
        with psycopg.connect(dsn, autocommit=True) as conn:
            for n in range(trials):
                new = f"lag-item-{n}"
                url = f"http://127.0.0.1:{port}/v1/recommend?session_id=lag&item_id={new}"
                t0 = time.perf_counter()
                conn.execute(
                    "INSERT INTO vmis_history VALUES (%s, %s, %s)",
                    (f"lag-{n}", [known, new], time.time()),
                )
                while True:
                    with urllib.request.urlopen(url, timeout=2) as r:
                        if orjson.loads(r.read())[:1] == [known]:
                            break
                    time.sleep(0.005)
                lags.append(time.perf_counter() - t0)
                time.sleep(0.3 * (n % 4))  # land at different points of the re-read cycle
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        pg.stop()
        shutil.rmtree(folder, ignore_errors=True)
    s = np.asarray(lags)
    return {
        "trials": len(s),
        "p50": float(np.median(s)),
        "p90": float(np.percentile(s, 90)),
        "max": float(s.max()),
        "sessions": len(sessions),
    }


def udf_throughput(train: Path, test: Path, batches: int = 200) -> dict:
    """vmis_recommend over Arrow Flight, batches of 256 sessions as RisingWave sends them."""
    import pyarrow as pa
    import pyarrow.flight as flight

    from recommender.serving.live_index import LiveIndex
    from recommender.serving.udf_server import make_server
    from recommender.sessions_io import read_sessions

    index = LiveIndex()
    index.build_from_tsv(train)
    data = read_sessions(test)
    items = data.item_ids.astype(str).tolist()
    sessions = [[items[j - 1], items[j]] if j else [items[j]] for j in range(len(items))]
    port = free_port()
    server = make_server(index, "127.0.0.1", port)
    # the Flight server answers from construction on; serve() only blocks (main thread)
    client = flight.connect(f"grpc://127.0.0.1:{port}")
    client.wait_for_available(timeout=10)
    times = []
    for b in range(batches):
        rows = [sessions[(b * 256 + r) % len(sessions)] for r in range(256)]
        batch = pa.RecordBatch.from_arrays(
            [pa.array(rows, pa.list_(pa.string())), pa.array([21] * 256, pa.int32())],
            names=["items", "n"],
        )
        t = time.perf_counter()
        writer, reader = client.do_exchange(flight.FlightDescriptor.for_path("vmis_recommend"))
        with writer:
            writer.begin(batch.schema)
            writer.write_batch(batch)
            writer.done_writing()
            reader.read_all()
        times.append(time.perf_counter() - t)
    server.shutdown()
    ms = np.asarray(times[5:]) * 1000
    return {
        "rows_per_s": 256 / np.median(ms) * 1000,
        "p50": float(np.median(ms)),
        "p99": float(np.percentile(ms, 99)),
    }


def pipeline_lag(trials: int, seed_sessions: int = 2000) -> dict:
    """Seconds from a click produced to Kafka to /v1/recommend using it, on `flashrec up`.

    `flashrec up --api-port` runs broker, PostgreSQL, the engine (refresh every second) and
    the API in one process; the index follows the engine's in-process change feed. A seeded
    history of sessions comes first; each trial produces two clicks of a new session (a
    known product, then a brand-new one) and polls until the new product's recommendations
    start with the known one.
    """
    import shutil
    import urllib.request
    from datetime import UTC, datetime

    import orjson

    from recommender.events import format_ts
    from recommender.kafka_io import make_producer

    folder = Path(tempfile.mkdtemp(prefix="flashrec-up-"))
    broker, pg, api = free_port(), free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "recommender.cli", "up", "--broker-port", str(broker),
         "--pg-port", str(pg), "--data-dir", str(folder), "--api-port", str(api)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    counter = iter(range(1 << 62))

    def event(session: str, product: str) -> bytes:
        ts = format_ts(datetime.now(UTC))
        return orjson.dumps({
            "event_id": f"lag-{next(counter)}", "session_id": session, "user_id": session,
            "product_id": product, "product_name": f"Product {product}", "category": "bench",
            "action": "view", "ts": ts,
        })  # fmt: skip

    def recs(item: str) -> list[str]:
        url = f"http://127.0.0.1:{api}/v1/recommend?session_id=probe&item_id={item}"
        with urllib.request.urlopen(url, timeout=2) as r:
            return orjson.loads(r.read())

    lags = []
    try:
        wait_ready(api, proc)
        producer = make_producer(f"127.0.0.1:{broker}")
        rng = np.random.default_rng(7)
        for s in range(seed_sessions):  # history: 2-4 clicks over 200 products
            for p in rng.integers(0, 200, rng.integers(2, 5)):
                producer.produce("clickstream", event(f"seed-{s}", f"p{p}"), key=f"seed-{s}")
        producer.flush(30)
        deadline = time.monotonic() + 60
        while recs("p1")[:1] == [] and time.monotonic() < deadline:
            time.sleep(0.2)
        for n in range(trials):
            new = f"new-{n}"
            t0 = time.perf_counter()
            producer.produce("clickstream", event(f"lag-{n}", "p1"), key=f"lag-{n}")
            producer.produce("clickstream", event(f"lag-{n}", new), key=f"lag-{n}")
            producer.flush(10)
            while recs(new)[:1] != ["p1"]:
                if time.perf_counter() - t0 > 30:
                    raise SystemExit(f"click {new} did not reach the index in 30 s")
                time.sleep(0.01)
            lags.append(time.perf_counter() - t0)
            time.sleep(0.37 * (n % 3))  # land at different points of the refresh cycle
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)
    s = np.asarray(lags)
    return {"trials": len(s), "p50": float(np.median(s)), "p90": float(np.percentile(s, 90)),
            "max": float(s.max()), "sessions": seed_sessions}  # fmt: skip


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("server not ready in time")


MODES = ("pure", "blend")


def server_loads(port: int, requests: list[bytes], args: argparse.Namespace,
                 modes: tuple[str, ...] = ()) -> list[tuple[str, int | None, dict]]:  # fmt: skip
    """The closed loop, then each open-loop rate, against the running server."""
    rows = [("closed loop", args.connections,
             asyncio.run(closed_loop(port, requests, args.connections, args.seconds, modes)))]
    for rate in [float(r) for r in args.rates.split(",") if r]:
        rows.append((f"open loop {rate:,.0f}/s", None,
                     asyncio.run(open_loop(port, requests, rate, args.seconds, modes))))
    return rows  # fmt: skip


def print_blend_baseline(base: dict) -> None:
    fill = base["fill"]
    print(f"blend alone (fill table: {fill['items']:,} items from {fill['sessions']:,} sessions, "
          f"built in {fill['build_s']:.2f} s): " + "; ".join(
              f"{m} p50 {base[m][50]:.1f} us, p90 {base[m][90]:.1f} us, p99 {base[m][99]:.1f} us"
              for m in (*MODES, "surge")) + "; blend/pure p50 "
          f"{base['blend'][50] / base['pure'][50]:.2f}, p99 "
          f"{base['blend'][99] / base['pure'][99]:.2f}; with a surge of "
          f"{base['surging']} products, surge/blend p50 "
          f"{base['surge'][50] / base['blend'][50]:.2f}, p99 "
          f"{base['surge'][99] / base['blend'][99]:.2f}")  # fmt: skip


def print_blend_rows(rows: list[tuple[str, int | None, dict]]) -> None:
    """Pure and blend of each load (requests alternating), and blend/pure."""
    print("blend vs pure VMIS-kNN: same server, the load's requests alternate blend=false/true")
    print(f"{'load':<22}{'mode':<12}{'req/s':>10}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}"
          f"{'errors':>8}")  # fmt: skip
    for name, _, r in rows:
        pure, blended = (r["modes"][m] for m in MODES)
        for label, m in zip(MODES, (pure, blended), strict=True):
            print(f"{name:<22}{label:<12}{m['rps']:>10,.0f}{m['p50']:>9.2f}{m['p90']:>9.2f}"
                  f"{m['p99']:>9.2f}{'':>8}")  # fmt: skip
        print(f"{name:<22}{'blend/pure':<12}{'':>10}" + "".join(
            f"{blended[q] / pure[q]:>9.2f}" for q in ("p50", "p90", "p99"))
            + f"{r['errors']:>8}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, default=DATA / "train.txt")
    parser.add_argument("--test", type=Path, default=DATA / "test.txt")
    parser.add_argument("--rates", default="1000,2000", help="open-loop rates, req/s")
    parser.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    parser.add_argument("--connections", type=int, default=16, help="closed-loop connections")
    parser.add_argument("--lag-trials", type=int, default=20, help="sync-lag trials (0: skip)")
    parser.add_argument(
        "--pipeline-trials",
        type=int,
        default=20,
        help="click-to-recommendation trials on `flashrec up` (0: skip)",
    )
    parser.add_argument("--server-cpu", type=int, default=None, help="pin the server to a CPU")
    parser.add_argument("--client-cpu", type=int, default=None, help="pin this process")
    parser.add_argument(
        "--blend", action="store_true", help="also the blend against pure VMIS-kNN, one load"
    )
    parser.add_argument(
        "--blend-views", action="store_true",
        help="also the blend against pure VMIS-kNN on a server following changing views",
    )  # fmt: skip
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    base = kernel_baseline(args.train, args.test)
    print(
        f"kernel alone: build {base['build_s']:.2f} s; recommend p50 {base['p50_us']:.1f} us, "
        f"p90 {base['p90_us']:.1f} us, p99 {base['p99_us']:.1f} us"
    )
    if args.blend:
        print_blend_baseline(blend_baseline(args.train, args.test))
    requests = load_requests(args.test)
    port = free_port()
    data_dir = tempfile.mkdtemp(prefix="flashrec-bench-")
    cmd = [
        sys.executable,
        "-m",
        "recommender.cli",
        "serve",
        "--history",
        str(args.train),
        "--port",
        str(port),
        "--data-dir",
        data_dir,
    ]
    if args.server_cpu is not None:
        cmd = ["taskset", "-c", str(args.server_cpu), *cmd]
    if args.client_cpu is not None:
        os.sched_setaffinity(0, {args.client_cpu})
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port, proc)
        asyncio.run(closed_loop(port, requests, 4, 2.0))  # warm up
        rows = server_loads(port, requests, args)
        blend_rows = []
        if args.blend:
            both = load_requests(args.test, modes=MODES)
            asyncio.run(closed_loop(port, both, 4, 2.0, MODES))  # warm up the blend
            blend_rows = server_loads(port, both, args, MODES)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(data_dir, ignore_errors=True)
    print(f"{'load':<22}{'req/s':>10}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for name, _, r in rows:
        print(
            f"{name:<22}{r['rps']:>10,.0f}{r['p50']:>9.2f}{r['p90']:>9.2f}{r['p99']:>9.2f}"
            f"{r['errors']:>8}"
        )
    if args.blend:
        print_blend_rows(blend_rows)
    if args.blend_views:
        facts, status, rows = blend_with_views(args)
        fill = status["fill"]
        print(f"views followed: vmis_history {facts['sessions']:,} sessions (a surge of "
              f"{facts['surging']} products planted), co_view_pairs {facts['pairs']:,} rows, "
              f"trending_by_category {facts['trending_rows']:,} rows; written every second "
              f"({facts['writer_ticks']} times); the server's surge: {fill['surge_products']} "
              f"products, co-view mirror {status['co_view_pairs']['pairs']:,} pairs")  # fmt: skip
        print_blend_rows(rows)
    udf = udf_throughput(args.train, args.test)
    print(
        f"UDF server, vmis_recommend on 256-row Arrow batches: p50 {udf['p50']:.1f} ms, "
        f"p99 {udf['p99']:.1f} ms per batch, {udf['rows_per_s']:,.0f} rows/s"
    )
    if args.lag_trials:
        lag = sync_lag(args.train, args.lag_trials)
        print(
            f"sync lag (row in vmis_history -> /v1/recommend uses it), {lag['trials']} trials "
            f"over {lag['sessions']:,} sessions: p50 {lag['p50']:.2f} s, p90 {lag['p90']:.2f} s, "
            f"max {lag['max']:.2f} s"
        )
    if args.pipeline_trials:
        lag = pipeline_lag(args.pipeline_trials)
        print(
            f"click lag (produced to Kafka -> /v1/recommend uses it, `flashrec up`, refresh "
            f"1 s), {lag['trials']} trials after {lag['sessions']:,} seeded sessions: "
            f"p50 {lag['p50']:.2f} s, p90 {lag['p90']:.2f} s, max {lag['max']:.2f} s"
        )


if __name__ == "__main__":
    main()
