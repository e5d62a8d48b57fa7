"""Soak benchmark: `flashrec up` (broker, PostgreSQL, engine, API) fed at a fixed rate for a
long stretch; prints every process's memory and CPU over time, the views' freshness, and
each process's RSS slope once the views' window has filled.

Event time may run faster than the wall clock (--accel): the engine runs on the event clock
(`--clock event`), so the views' windows are honoured in event time and a 30-minute window
fills in 30/accel wall minutes. Freshness: a probe event every --probe-seconds, from the
moment it is handed to the producer to the moment its session (its own) has its row in
PostgreSQL's `session_features` view table (taken at the notification of the commit that
published it). Processes: the `flashrec up` process (engine, background tier, API), its
children (broker and its store, a background process if any) and PostgreSQL (all its
backends summed).

--shrink-days F runs `flashrec up` on a copy of sql/ whose look-backs of a day or more are
F times shorter (30 days / 120 = 6 hours), so every window fills within a run at a
realistic event rate. At the end the events the producer had acknowledged are matched
against the engine's counters (accepted + dead-lettered, from `flashrec_meta`).

    .venv/bin/python bench/soak.py --rate 1000 --minutes 20 --accel 12
    .venv/bin/python bench/soak.py --rate 1000 --minutes 120 --accel 12 --shrink-days 120
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psutil
from common import free_port, pct

from producers.flash_sale import FlashSaleConfig, generate
from recommender.events import format_ts

ROOT = Path(__file__).resolve().parent.parent
DAYS = re.compile(r"INTERVAL '(\d+) DAYS?'")


def shrunk_sql(folder: Path, factor: float) -> tuple[Path, float]:
    """A copy of sql/ with every look-back of whole days `factor` times shorter (in whole
    minutes); returns the folder and its longest look-back in minutes."""
    folder.mkdir(parents=True, exist_ok=True)
    longest = 30.0

    def shorter(m: re.Match[str]) -> str:
        nonlocal longest
        minutes = max(1, round(int(m.group(1)) * 1440 / factor))
        longest = max(longest, minutes)
        return f"INTERVAL '{minutes} MINUTES'"

    for path in sorted((ROOT / "sql").iterdir()):
        if path.suffix == ".sql":
            (folder / path.name).write_text(DAYS.sub(shorter, path.read_text()))
        elif path.suffix == ".toml":
            shutil.copy(path, folder / path.name)
    return folder, longest


def produce(bootstrap: str, rate: float, accel: float, seconds: float, t0: float,
            probes: Any, probe_every: float) -> None:  # fmt: skip
    """Child process: `rate` events/s of wall time for `seconds`, event time running `accel`
    times faster, ending now (the contract refuses events a day ahead); a probe event (its
    own session) every `probe_every` seconds."""
    from recommender.kafka_io import make_producer

    producer = make_producer(bootstrap, linger_ms=20)
    acked = [0, 0]  # delivered, failed

    def delivered(err: Any, _msg: Any) -> None:
        acked[1 if err else 0] += 1

    start = datetime.now(UTC) - timedelta(seconds=seconds * accel)  # the last event is now
    n = int(rate * seconds)
    cfg = FlashSaleConfig(seed=17, start=start, events=n, rate=rate / accel,
                          sale_offset_s=seconds * accel / 2, bot_share=0.02,
                          run_id="soak")  # fmt: skip
    next_probe, sent = t0, 0
    for event in generate(cfg):
        if not isinstance(event, dict):
            continue
        due = t0 + sent / rate
        while (now := time.time()) < due:
            time.sleep(min(0.005, due - now))
        event["ts"] = format_ts(start + timedelta(seconds=(now - t0) * accel))
        producer.produce("clickstream", orjson.dumps(event), key=event["session_id"],
                         on_delivery=delivered)
        producer.poll(0)
        sent += 1
        if now >= next_probe:
            probe = dict(event, event_id=f"probe-{sent}", session_id=f"s-probe-{sent}")
            producer.produce("clickstream", orjson.dumps(probe), key=probe["session_id"],
                             on_delivery=delivered)
            probes.put((probe["event_id"], now))
            next_probe = now + probe_every
    producer.flush(60)
    probes.put(("acked", *acked))
    probes.put(None)


def tree(root: psutil.Process, pg_dir: Path) -> dict[str, list[psutil.Process]]:
    """The processes to watch by role."""
    roles: dict[str, list[psutil.Process]] = {"up": [root], "broker": [], "store": [],
                                              "background": [], "postgres": []}  # fmt: skip
    for child in root.children(recursive=True):
        line = " ".join(child.cmdline())
        role = ("broker" if "tansu" in line else "store" if "objectstore" in line
                else "background" if "engine.worker" in line else None)  # fmt: skip
        if role:
            roles[role].append(child)
    for proc in psutil.process_iter(["name", "cmdline"]):
        if "postgres" in (proc.info["name"] or "") and str(pg_dir) in " ".join(
                proc.info["cmdline"] or []):  # fmt: skip
            roles["postgres"] += [proc, *proc.children()]
    return roles


def sample(roles: dict[str, list[psutil.Process]]) -> dict[str, tuple[float, float]]:
    """Per role: (memory MB summed (PSS), CPU seconds summed)."""
    out = {}
    for role, procs in roles.items():
        rss = cpu = 0.0
        for proc in procs:
            try:
                rss += _pss(proc) / 2**20
                times = proc.cpu_times()
                cpu += times.user + times.system
            except psutil.Error:
                continue
        out[role] = (rss, cpu)
    return out


def _pss(proc: psutil.Process) -> float:
    """Proportional set size (shared pages split among the processes sharing them, so
    PostgreSQL's backends do not each count the shared buffers); RSS where unreadable."""
    try:
        return float(proc.memory_full_info().pss)
    except (psutil.AccessDenied, AttributeError):
        return float(proc.memory_info().rss)


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) points, in MB per hour."""
    if len(points) < 3:
        return float("nan")
    xs, ys = zip(*points, strict=True)
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return 3600 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den


class Watcher:
    """Finds the probes in PostgreSQL as their publishes commit.

    A probe is visible once its session (the probe's own) has its row in session_features:
    the view keeps a session for days of event time, where the raw `clickstream` table keeps
    only the last 30 minutes, under a second of wall time at high --accel. The watcher
    listens to the engine's notification of each publish (`flashrec_changes`, sent in the
    publish's transaction, so delivered at its commit) and then looks for the probes still
    wanted; the time of the notification is when they became visible."""

    def __init__(self, dsn: str) -> None:
        import psycopg

        self.conn = psycopg.connect(dsn, autocommit=True, connect_timeout=5)
        self.conn.execute("LISTEN flashrec_changes")

    def wait(self, timeout: float, wanted: dict[str, float], seen: list[float]) -> None:
        """Wait up to `timeout` s for a publish; move the probes it made visible from
        `wanted` to `seen` (latency, seconds)."""
        import psycopg

        at = None
        for _ in self.conn.notifies(timeout=timeout, stop_after=1):
            at = time.time()
        if not wanted:
            return
        sessions = {f"s-{event_id}": event_id for event_id in wanted}
        try:
            rows = self.conn.execute("SELECT session_id FROM session_features "
                                     "WHERE session_id = ANY(%s)", (list(sessions),)).fetchall()
        except psycopg.errors.UndefinedTable:  # before the engine's first refresh
            return
        now = at or time.time()
        for (session_id,) in rows:
            seen.append(now - wanted.pop(sessions[session_id]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rate", type=float, default=1000, help="events per wall second")
    ap.add_argument("--minutes", type=float, default=20, help="wall minutes of traffic")
    ap.add_argument("--accel", type=float, default=12, help="event seconds per wall second")
    ap.add_argument("--report-seconds", type=float, default=60, help="a line this often")
    ap.add_argument("--probe-seconds", type=float, default=2, help="a probe event this often")
    ap.add_argument("--window-minutes", type=float, default=30,
                    help="the longest window of the main views (event minutes)")
    ap.add_argument("--up-args", default="", help="more flags for flashrec up, as one string")
    ap.add_argument("--data-dir", type=Path, default=None, help="default: a temporary folder")
    ap.add_argument("--shrink-days", type=float, default=None,
                    help="run on a copy of sql/ with look-backs of days this many times "
                         "shorter (--window-minutes becomes the longest of them)")
    args = ap.parse_args()
    data = args.data_dir or Path(tempfile.mkdtemp(prefix="flashrec-soak-"))
    data.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "FLASHREC_LOG_LEVEL": "INFO"}
    if args.shrink_days:
        folder, args.window_minutes = shrunk_sql(data / "sql", args.shrink_days)
        env["FLASHREC_SQL_DIR"] = str(folder)
        print(f"sql/ copied to {folder}, look-backs of days / {args.shrink_days:g}")
    broker_port, pg_port, api_port = free_port(), free_port(), free_port()
    cmd = [sys.executable, "-m", "recommender.cli", "up", "--data-dir", str(data),
           "--broker-port", str(broker_port), "--pg-port", str(pg_port), "--api-port",
           str(api_port), "--clock", "event", "--no-intent", *args.up_args.split()]
    log = open(data / "up.log", "w")  # noqa: SIM115 (open while it runs)
    up = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    try:
        run(args, up, data, broker_port, pg_port)
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=120)
        log.close()


def _wait_up(up: subprocess.Popen, data: Path) -> None:
    deadline = time.monotonic() + 180
    while "flashrec up: running" not in (data / "up.log").read_text():
        if up.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("flashrec up did not start:\n" + (data / "up.log").read_text())
        time.sleep(0.5)


def run(args: argparse.Namespace, up: subprocess.Popen, data: Path, broker_port: int,
        pg_port: int) -> None:  # fmt: skip
    from recommender.postgres.local import LocalPostgres

    _wait_up(up, data)
    dsn = LocalPostgres(data / "pg", pg_port).dsn
    roles = tree(psutil.Process(up.pid), data / "pg")
    print(f"soak: {args.rate:g} events/s for {args.minutes:g} min, event time x{args.accel:g}"
          f" (window full after {args.window_minutes / args.accel:.1f} wall min); data {data}")
    probes: Any = mp.Queue()
    t0 = time.time() + 1
    child = mp.Process(target=produce, args=(f"127.0.0.1:{broker_port}", args.rate, args.accel,
                                             args.minutes * 60, t0, probes,
                                             args.probe_seconds), daemon=True)  # fmt: skip
    child.start()
    history: dict[str, list[tuple[float, float, float]]] = {r: [] for r in roles}
    wanted: dict[str, float] = {}
    watcher = Watcher(dsn)
    latencies: list[float] = []
    all_latencies: list[tuple[float, float]] = []
    next_report, done, acked = t0 + args.report_seconds, False, (0, 0)
    print("  min " + "".join(f"{r + ' MB':>14}{r + ' cores':>14}" for r in roles)
          + "  fresh p50/p99 s")
    last = {r: (time.time(), v[1]) for r, v in sample(roles).items()}
    while not done or wanted:
        while not probes.empty():
            item = probes.get()
            if item is None:
                done = True
            elif item[0] == "acked":
                acked = item[1:]
            else:
                wanted[item[0]] = item[1]
        before = len(latencies)
        watcher.wait(0.2, wanted, latencies)
        all_latencies += [(time.time() - t0, x) for x in latencies[before:]]
        if done and wanted and time.time() > t0 + args.minutes * 60 + 120:
            print(f"{len(wanted)} probes never became visible")
            break
        if time.time() >= next_report or (done and not wanted):
            now, stats = time.time(), sample(roles)
            cells = ""
            for role, (rss, cpu) in stats.items():
                then, cpu_then = last[role]
                cores = (cpu - cpu_then) / max(1e-9, now - then)
                history[role].append((now - t0, rss, cores))
                last[role] = (now, cpu)
                cells += f"{rss:14.0f}{cores:14.2f}"
            print(f"{(now - t0) / 60:5.1f}{cells}  {pct(latencies, 0.5):.2f}/"
                  f"{pct(latencies, 0.99):.2f}", flush=True)
            latencies.clear()
            next_report = now + args.report_seconds
    summarize(args, history, all_latencies)
    account(dsn, *acked)


def account(dsn: str, delivered: int, failed: int, wait_s: float = 120) -> None:
    """Wait until the engine's counters (accepted + dead-lettered, duplicates among the
    dead letters) cover every event the producer had acknowledged."""
    import psycopg

    deadline, counts = time.monotonic() + wait_s, {}
    while time.monotonic() < deadline:
        with psycopg.connect(dsn, autocommit=True) as conn:
            counts = dict(conn.execute("SELECT key, value::bigint FROM flashrec_meta WHERE key "
                                       "IN ('accepted', 'rejected', 'duplicates')").fetchall())
        seen = counts.get("accepted", 0) + counts.get("rejected", 0)
        if seen >= delivered:
            break
        time.sleep(1)
    seen = counts.get("accepted", 0) + counts.get("rejected", 0)
    verdict = "all accounted for" if seen == delivered else f"DIFFERENCE {seen - delivered:+d}"
    print(f"  events: producer acknowledged {delivered} ({failed} failed); engine accepted "
          f"{counts.get('accepted', 0)}, dead-lettered {counts.get('rejected', 0)} (duplicates "
          f"{counts.get('duplicates', 0)}): {verdict}")


def summarize(args: argparse.Namespace, history: dict[str, list[tuple[float, float, float]]],
              latencies: list[tuple[float, float]]) -> None:  # fmt: skip
    filled = args.window_minutes * 60 / args.accel
    print(f"after the window filled ({filled / 60:.1f} min): RSS slope MB/hour, cores (median "
          "of the first and the last tenth of the samples), RSS last")
    total = 0.0
    for role, points in history.items():
        after = [(t, rss) for t, rss, _ in points if t >= filled]
        cores = [c for t, _, c in points if t >= filled]
        last = points[-1][1] if points else 0.0
        total += last
        tenth = max(1, len(cores) // 10)  # cores: median of the first and last tenth
        first_c = statistics.median(cores[:tenth]) if cores else float("nan")
        last_c = statistics.median(cores[-tenth:]) if cores else float("nan")
        print(f"  {role:10} slope {slope(after):8.1f} MB/h   cores {first_c:.2f} -> "
              f"{last_c:.2f}   RSS {last:.0f} MB")
    late = [x for t, x in latencies if t >= filled]
    print(f"  total RSS {total:.0f} MB; freshness after fill p50 {pct(late, 0.5):.2f} s, "
          f"p99 {pct(late, 0.99):.2f} s, max {max(late, default=float('nan')):.2f} s "
          f"({len(late)} probes)")


if __name__ == "__main__":
    main()
