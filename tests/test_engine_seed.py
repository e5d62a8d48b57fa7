"""The engine's diff baseline read back from PostgreSQL at start (engine/baseline.py): the
bulk CSV path gives DuckDB exactly the rows of the former row-by-row path (awkward strings,
arrays, NULLs against empty strings, floats, decimals, timestamps with microseconds, time
zones), logs its progress, comes out of a Ctrl-C as KeyboardInterrupt; a restarted engine's
first refresh publishes nothing when nothing changed; Ctrl-C while `flashrec up` starts the
engine stops it and what it started."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
from conftest import free_port
from engine_support import TIMES, Msg, raw

from producers.flash_sale import FlashSaleConfig, generate
from recommender import sqlfiles
from recommender.engine import Engine, EngineConfig, baseline
from recommender.engine.baseline import seed_views
from recommender.engine.refresh import ViewRunner
from recommender.engine.store import StateStore
from recommender.postgres import publisher as publisher_module
from recommender.postgres.local import LocalPostgres
from recommender.postgres.publisher import Publisher

STRINGS = [
    "", "plain", "tab\there", "new\nline", "cr\rx", "crlf\r\n", "back\\slash", "\\N", "\\.",
    'q"uote', "'single'", "comma,brace{}", "NULL", "null", " lead and trail ", "\b\v\f",
    "ünïcødé ✓ 🚀 中文", "\\", '"', "{", "}", ",", "\n", "end\\", "a\n\\.\nb", '""', "[1, 2]",
    '["x"]', "\x01", "\x7f", "\u2028",
]  # fmt: skip
ARRAYS = [
    [], [None], [""], ["NULL"], ["null", "Null"], ["a,b", 'q"uote', "{brace}", "}", None, "",
    "back\\slash", "tab\t", "new\nline", " sp ", "\\N", 'x\\"y', "[", "]", "'"],
    ["ünï", "✓", "🚀"], ["x"] * 40, ["\\", '"', '\\"', "\u2028", "\x01"],
]  # fmt: skip
VALUES: dict[str, list[Any]] = {
    "VARCHAR": STRINGS,
    "BIGINT": [0, -1, 1, 2**63 - 1, -(2**63), 12345678901],
    "HUGEINT": [0, -1, 2**63 - 1, -(2**63)],
    "INTEGER": [0, -1, 2**31 - 1, -(2**31)],
    "DOUBLE": [0.1, 1e300, -1e-300, -0.0, 0.0, float("inf"), float("-inf"), float("nan"),
               5e-324, 1 / 3, 2.0**53 + 1, 123456789.123456789, 1.0],  # fmt: skip
    "BOOLEAN": [True, False],
    "TIMESTAMP": TIMES,
    "TIMESTAMP WITH TIME ZONE": TIMES,
    "DATE": [date(2024, 1, 2), date(1, 1, 1), date(9999, 12, 31)],
    "VARCHAR[]": ARRAYS,
    "BIGINT[]": [[1, 2**63 - 1, None, -5], [], [None], [-(2**63)]],
    "DECIMAL(18,3)": [Decimal("1.500"), Decimal("-0.001"), Decimal("999999999999999.999"),
                      Decimal("0.000"), Decimal("-123.450")],  # fmt: skip
}
# a view of every column type the publisher maps (pg_type), computed by code (an override)
ODD = {"odd_" + t.lower().translate(str.maketrans(" ()[],", "______")): t for t in VALUES}


@pytest.fixture(scope="module")
def odd_views(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Any], dict[str, Any]]:
    """sql/'s views plus `odd`: (objects, overrides computing `odd` with every type)."""
    folder = tmp_path_factory.mktemp("sql")
    for path in sorted(sqlfiles.SQL_DIR.glob("*.sql")):
        shutil.copy(path, folder / path.name)
    (folder / "999_odd.sql").write_text(
        "CREATE MATERIALIZED VIEW odd AS SELECT event_id FROM clickstream;\n")
    cols = ", ".join(f"CAST(NULL AS {t}) AS {c}" for c, t in ODD.items())
    return sqlfiles.load(folder), {"odd": lambda con, now: f"SELECT {cols} LIMIT 0"}


def awkward_rows(types: list[str], n: int) -> list[tuple[Any, ...]]:
    """`n` rows cycling through each type's awkward values (NULL among them), then a row of
    NULLs."""
    cycles = [VALUES[t] + [None] for t in types]
    rows = [tuple(c[(k * (1 + i)) % len(c)] for i, c in enumerate(cycles)) for k in range(n)]
    return rows + [tuple(None for _ in types)]


def fill(dsn: str, runner: ViewRunner, n: int) -> dict[str, int]:
    """Each view's table in PostgreSQL filled with `n` awkward rows of its column types."""
    publisher = Publisher(dsn)
    counts = {}
    try:
        for name in runner.names:
            runner.compute(datetime(1970, 1, 1), name)
            columns, types = runner._describe(name)
            publisher.ensure_view(name, columns, types)
            rows = awkward_rows(types, n)
            with publisher.conn.cursor().copy(f"COPY {name} FROM STDIN") as cp:
                for row in rows:
                    cp.write_row(row)
            publisher.conn.commit()
            counts[name] = len(rows)
    finally:
        publisher.close()
    return counts


def seeded(dsn: str, objects: list[Any], overrides: dict[str, Any], bulk: bool
           ) -> dict[str, list[str]]:  # fmt: skip
    """Each view's baseline after seeding from PostgreSQL (bulk or row by row), as the
    sorted repr of its DuckDB rows (NaN, -0.0, microseconds, None and '' all told apart)."""
    store = StateStore(None)
    publisher = Publisher(dsn)
    try:
        runner = ViewRunner(store.con, objects, overrides)
        if bulk:
            seed_views(runner, publisher)
        else:
            for name in runner.names:
                runner.seed(name, publisher.current_rows(name))
        return {name: sorted(map(repr, store.con.execute(f"SELECT * FROM __prev_{name}")
                                 .fetchall())) for name in runner.names}  # fmt: skip
    finally:
        publisher.close()
        store.close()


def test_bulk_seed_equals_row_by_row_on_awkward_values(dsn: str, odd_views, caplog) -> None:
    objects, overrides = odd_views
    store = StateStore(None)
    counts = fill(dsn, ViewRunner(store.con, objects, overrides), 300)
    store.close()
    assert {"vmis_history", "session_features", "customer_features", "odd"} <= set(counts)
    with caplog.at_level(logging.INFO, logger="recommender.engine.baseline"):
        new = seeded(dsn, objects, overrides, bulk=True)
    old = seeded(dsn, objects, overrides, bulk=False)
    assert {n: len(r) for n, r in new.items()} == counts
    for name in counts:
        assert new[name] == old[name], name
    lines = [r.getMessage() for r in caplog.records]
    for name, count in counts.items():  # every view took the bulk path
        assert any(x.startswith(f"{name}: {count} rows seeded in ") and "(bulk;" in x
                   for x in lines), (name, lines)  # fmt: skip


def test_bulk_seed_of_a_file_duckdb_reads_in_parallel_parts(dsn: str, monkeypatch) -> None:
    """400,000 vmis_history rows with newlines, quotes and commas in every row (a CSV file
    of over 32 MB, which DuckDB reads in parallel parts): the baseline holds what psycopg
    reads from PostgreSQL, with DuckDB on 2 threads as on 1."""
    publisher = Publisher(dsn)
    store = StateStore(None)
    runner = ViewRunner(store.con)
    for name in runner.names:  # vmis_history reads session_features
        runner.compute(datetime(1970, 1, 1), name)
    publisher.ensure_view("vmis_history", *runner._describe("vmis_history"))
    publisher.conn.execute(
        "INSERT INTO vmis_history SELECT 'sess ' || i || E'\\n\"x,y\"', ARRAY['a,b', "
        "E'new\\nline', 'q\"uote', E'back\\\\slash', i::text, NULL, ''], timestamptz "
        "'2024-01-01 00:00:00.000001+00' + i * interval '1.000001 ms' "
        "FROM generate_series(1, 400000) i")  # fmt: skip
    publisher.conn.commit()
    expected = sorted(publisher.current_rows("vmis_history"))
    store.close()
    got = {}
    for cores in (2, 1):
        monkeypatch.setattr(baseline.os, "cpu_count", lambda cores=cores: cores)
        store = StateStore(None, threads=1)
        runner = ViewRunner(store.con)
        seed_views(runner, publisher)
        got[cores] = sorted(store.con.execute("SELECT * FROM __prev_vmis_history").fetchall())
        store.close()
    publisher.close()
    assert len(expected) == 400_000
    assert expected[0][1] == ["a,b", "new\nline", 'q"uote', "back\\slash", "1", None, ""]
    assert got[2] == expected
    assert got[1] == expected


def test_missing_tables_seed_empty_and_progress_is_logged(dsn: str, odd_views, monkeypatch,
                                                          caplog) -> None:  # fmt: skip
    objects, overrides = odd_views
    store = StateStore(None)
    runner = ViewRunner(store.con, objects, overrides)
    fill(dsn, runner, 50)
    with Publisher(dsn).conn as conn:
        conn.execute("DROP TABLE co_view_pairs CASCADE")  # and its view in public
    monkeypatch.setattr(publisher_module, "EXPORT_PROGRESS_ROWS", 10)
    monkeypatch.setattr(baseline, "PROGRESS_S", 0.0)
    publisher = Publisher(dsn)
    with caplog.at_level(logging.INFO, logger="recommender.engine.baseline"):
        total = seed_views(runner, publisher, "all views")
    publisher.close()
    assert "co_view_pairs" in runner.seeded_empty
    assert "vmis_history" not in runner.seeded_empty
    assert runner.has_prev == set(runner.names)
    lines = [r.getMessage() for r in caplog.records]
    assert "vmis_history: 50 rows read from PostgreSQL so far" in " ".join(lines)
    assert any(x.startswith(f"all views: {total} rows read back from PostgreSQL in ")
               for x in lines)  # fmt: skip
    store.close()


def test_a_type_the_csv_form_lacks_is_seeded_row_by_row(dsn: str, caplog) -> None:
    """A view table of a column type export_csv does not cover (here an interval column
    where the view has a VARCHAR) goes the row-by-row way, with the same result."""
    objects = sqlfiles.load()
    publisher = Publisher(dsn)
    publisher.conn.execute("CREATE TABLE vmis_history (session_id interval, items text[], "
                           "last_ts timestamptz)")  # fmt: skip
    publisher.conn.commit()
    publisher.close()
    with caplog.at_level(logging.INFO, logger="recommender.engine.baseline"):
        assert seeded(dsn, objects, {}, bulk=True)["vmis_history"] == []
    assert any(r.getMessage().startswith("vmis_history: 0 rows seeded in ")
               and "row by row" in r.getMessage() for r in caplog.records)  # fmt: skip


def test_ctrl_c_during_a_duckdb_load_interrupts_it() -> None:
    """A long DuckDB query run as the seed runs its loads (`interruptible`): SIGINT stops
    it within a second and comes out as KeyboardInterrupt; the connection still works."""
    con = duckdb.connect()
    con.execute("SET threads = 2")  # its worker threads busy: the case DuckDB notices late
    # Ctrl-C as the command line gets it, whatever handler an earlier test left installed
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    guard = threading.Timer(30, con.interrupt)  # the test fails rather than hangs
    started = time.monotonic()
    timer.start()
    guard.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            baseline.interruptible(con, lambda: con.execute(  # hours of work
                "SELECT count(*) FROM range(10000000000000) t(i) WHERE i % 7 = 3").fetchall())
    finally:
        timer.cancel()
        guard.cancel()
        signal.signal(signal.SIGINT, previous)
    assert time.monotonic() - started < 5
    assert con.execute("SELECT 42").fetchall() == [(42,)]


def test_a_duckdb_query_stopped_by_ctrl_c_is_a_keyboard_interrupt() -> None:
    with pytest.raises(KeyboardInterrupt), baseline._interrupts():
        raise RuntimeError("Query interrupted")
    with pytest.raises(RuntimeError, match="other"), baseline._interrupts():
        raise RuntimeError("other")


def test_restart_publishes_nothing_when_nothing_changed(dsn: str, tmp_path: Path) -> None:
    """Events of awkward text, published; the engine stops; a new one on the same state
    seeds its baseline from PostgreSQL and its first refresh changes no row of any view (both
    tiers), in process or in PostgreSQL."""
    items: list[Any] = list(generate(FlashSaleConfig(seed=3, events=3000, rate=20.0,
                                                     bot_share=0.05)))  # fmt: skip
    names = [s for s in STRINGS if s]
    for k, item in enumerate(items[:600]):  # awkward product ids, names, categories
        if isinstance(item, dict):
            item.update(product_id=names[k % len(names)] + "p", category=names[k % 7] + "c",
                        product_name=STRINGS[k % len(STRINGS)])  # fmt: skip
    config = EngineConfig.of(pg_dsn=dsn, state_path=tmp_path / "state.duckdb", clock="event")
    engine = Engine(config)
    engine.ingest([Msg(raw(x), i) for i, x in enumerate(items)])
    first = engine.refresh()
    engine.stop()
    assert {b.view for b in first if b.inserts} == set(engine.view_names)
    again = Engine(config)
    batches = again.refresh()
    again.stop()
    assert {b.view for b in batches} == set(engine.view_names)
    changed = {b.view: (len(b.inserts), len(b.deletes)) for b in batches
               if b.inserts or b.deletes}  # fmt: skip
    assert changed == {}
    import psycopg

    with psycopg.connect(dsn) as conn:
        status = conn.execute("SELECT view, inserted, deleted FROM flashrec_status").fetchall()
    assert {v for v, _, _ in status} == set(engine.view_names)
    assert [(v, i, d) for v, i, d in status if i or d] == []


def test_ctrl_c_while_up_starts_the_engine_stops_everything(tmp_path: Path) -> None:
    """`flashrec up` with a view table that PostgreSQL sends slowly (a view sleeping per
    row): SIGINT while the engine reads it back stops the start at once; the broker and
    PostgreSQL it started are stopped."""
    data = tmp_path / "d"
    pg_port, broker_port = free_port(), free_port()
    with LocalPostgres(data / "pg", pg_port) as pg, Publisher(pg.dsn).conn as conn:
        conn.execute("CREATE VIEW co_view_pairs AS SELECT 'a' AS product_a, 'n' AS "
                     "product_a_name, 'b' AS product_b, 'm' AS product_b_name, g::bigint AS "
                     "co_view_count FROM generate_series(1, 100000) g "
                     "WHERE pg_sleep(0.001) IS NOT NULL")  # fmt: skip
    log_path = tmp_path / "up.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "FLASHREC_LOG_LEVEL": "INFO"}
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "recommender.cli", "up", "--data-dir", str(data),
             "--pg-port", str(pg_port), "--broker-port", str(broker_port), "--no-intent"],
            stdout=out, stderr=subprocess.STDOUT, env=env)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while "rows read back from PostgreSQL" not in log_path.read_text(errors="replace"):
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        time.sleep(1.0)  # co_view_pairs is now being read: 100 s of it
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log_path.read_text(errors="replace")
    assert "flashrec up: stopped" in text, text
    assert "stopped while the engine started" in text, text
    assert "Traceback" not in text, text
    assert "running (Ctrl-C to stop)" not in text
    assert not LocalPostgres(data / "pg", pg_port).running()
    with socket.socket() as probe:  # the broker is gone: nothing listens on its port
        assert probe.connect_ex(("127.0.0.1", broker_port)) != 0
