"""The engine's diff baseline at start: every view table read back from PostgreSQL.

Each view's table goes through `COPY ... TO STDOUT (FORMAT csv)` into a temporary file
(beside the engine's state file) and from there into DuckDB with one `read_csv` of the
view's column types (Publisher.export_csv, ViewRunner.seed_csv), not row by row. Tables of
column types that form does not cover are read as tuples (Publisher.current_rows,
ViewRunner.seed). Each view's rows and time are logged, with a line every few seconds
while a large one is read. Ctrl-C stops it: DuckDB's loads run in a thread while the
caller's waits, and a KeyboardInterrupt there interrupts the query and is raised again
(DuckDB in the caller's thread may notice Ctrl-C only once its query is done, and reports
it as a RuntimeError, raised here as KeyboardInterrupt).
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from recommender.engine.refresh import ViewRunner

log = logging.getLogger(__name__)

PROGRESS_S = 5.0  # a line at most this often while one view is read
T = TypeVar("T")


def seed_views(runner: ViewRunner, publisher: Any, tier: str = "views") -> int:
    """Seed the baseline of every view of `runner` from what `publisher`'s PostgreSQL
    holds; returns the rows seeded. `tier` names the runner's views in the log."""
    started = time.perf_counter()
    total = 0
    with tempfile.TemporaryDirectory(prefix="flashrec-seed-", dir=_spill_dir(runner.con)
                                     ) as folder, _all_threads(runner.con), _interrupts():
        for name in runner.names:
            total += seed_view(runner, publisher, name, Path(folder) / f"{name}.csv")
    log.info("%s: %d rows read back from PostgreSQL in %.1f s", tier, total,
             time.perf_counter() - started)  # fmt: skip
    return total


def seed_view(runner: ViewRunner, publisher: Any, name: str, path: Path) -> int:
    """Seed one view's baseline through a CSV file at `path` (removed after); returns its
    rows."""
    started = last = time.perf_counter()

    def progress(rows: int) -> None:
        nonlocal last
        now = time.perf_counter()
        if now - last >= PROGRESS_S:
            last = now
            log.info("%s: %d rows read from PostgreSQL so far (%.0f s)", name, rows,
                     now - started)  # fmt: skip

    try:
        with open(path, "wb") as out:
            pg_types = publisher.export_csv(name, out, progress)
        read = time.perf_counter() - started
        count, how = None, "bulk"
        if pg_types == []:
            count, how = _seed_rows(runner, name, []), "no table yet"
        elif pg_types is not None:
            count = interruptible(runner.con, runner.seed_csv, name, str(path), pg_types)
        if count is None:  # column types the CSV form does not cover: as tuples
            log.warning("%s: read back row by row (slow for large tables)", name)
            how = "row by row"
            rows = publisher.current_rows(name)
            count = interruptible(runner.con, _seed_rows, runner, name, rows)
    finally:
        path.unlink(missing_ok=True)
    elapsed = time.perf_counter() - started
    log.info("%s: %d rows seeded in %.2f s (%s; PostgreSQL %.2f s, DuckDB %.2f s)", name, count,
             elapsed, how, read, elapsed - read)  # fmt: skip
    return count


def interruptible(con: duckdb.DuckDBPyConnection, call: Callable[..., T], *args: Any) -> T:
    """call(*args), DuckDB work on `con`, in a thread while this one waits: Ctrl-C here
    (KeyboardInterrupt) interrupts the query running on `con` and is raised once the call
    ended. (DuckDB run in this thread notices Ctrl-C only between its tasks: seconds late
    or, with its threads busy, not before the query is done.)"""
    out: list[Any] = []
    done = threading.Event()  # not Thread.join: one interrupted may return early after

    def run() -> None:
        try:
            out.append((True, call(*args)))
        except BaseException as exc:  # raised again in the waiting thread
            out.append((False, exc))
        finally:
            done.set()

    threading.Thread(target=run, name="seed", daemon=True).start()
    try:
        while not done.wait(0.2):
            pass
    except KeyboardInterrupt:
        con.interrupt()
        done.wait()
        raise
    ok, value = out[0]
    if not ok:
        raise value
    return value


def _seed_rows(runner: ViewRunner, name: str, rows: list[tuple[Any, ...]]) -> int:
    runner.seed(name, rows)
    return len(rows)


def _spill_dir(con: duckdb.DuckDBPyConnection) -> str | None:
    """The folder of the engine's state file (where DuckDB spills too); None (the system's
    temporary folder) for a state in memory."""
    spill = Path(con.execute("SELECT current_setting('temp_directory')").fetchall()[0][0])
    return str(spill.parent) if spill.is_absolute() and spill.parent.is_dir() else None


@contextmanager
def _all_threads(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """DuckDB on every core inside (the engine may run it on fewer): nothing else runs on
    it while the engine starts. Its setting is put back after."""
    threads = int(con.execute("SELECT current_setting('threads')").fetchall()[0][0])
    cores = os.cpu_count() or 1
    if threads < cores:
        con.execute(f"SET threads = {cores}")
    try:
        yield
    finally:
        if threads < cores:
            con.execute(f"SET threads = {threads}")


@contextmanager
def _interrupts() -> Iterator[None]:
    """A DuckDB query stopped by Ctrl-C (SIGINT's handler raised inside it) comes out as
    KeyboardInterrupt, not as the RuntimeError DuckDB makes of it."""
    try:
        yield
    except (RuntimeError, duckdb.InterruptException) as exc:
        if "interrupted" not in str(exc).lower():
            raise
        raise KeyboardInterrupt from exc
