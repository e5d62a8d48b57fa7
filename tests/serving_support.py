"""Helpers for the serving tests: view tables shaped as the engine writes them (docs/views.md)
for a real PostgreSQL (conftest's `postgres` fixture), and API processes on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg

from recommender.config import PROJECT_ROOT

NOW = datetime.now(UTC).replace(microsecond=0)
WINDOW = NOW - timedelta(minutes=NOW.minute % 5, seconds=NOW.second)

PRODUCTS = {
    "p1": ("Trail Shoe", "shoes"),
    "p2": ("Road Shoe", "shoes"),
    "p3": ("Hiking Boot", "shoes"),
    "p4": ("Rain Jacket", "jackets"),
    "p5": ("Down Jacket", "jackets"),
    "p6": ("Wool Socks", "socks"),
}
CO_VIEWS = [  # product_a < product_b, co_view_count
    ("p1", "p2", 7),
    ("p1", "p3", 4),
    ("p2", "p3", 3),
    ("p1", "p6", 5),
    ("p4", "p5", 6),
]
# Two windows per category: only the latest must be served.
TRENDING = [
    ("shoes", WINDOW - timedelta(minutes=5), ["p3", "p1"]),
    ("shoes", WINDOW, ["p1", "p2", "p3"]),
    ("jackets", WINDOW, ["p5", "p4"]),
    ("socks", WINDOW - timedelta(minutes=5), ["p6"]),
]
# vmis_history rows: session, unique items, last event time
HISTORY = [
    ("h1", ["p1", "p2", "p3"], NOW - timedelta(minutes=9)),
    ("h2", ["p1", "p2"], NOW - timedelta(minutes=8)),
    ("h3", ["p4", "p5"], NOW - timedelta(minutes=7)),
    ("h4", ["p1", "p6"], NOW - timedelta(minutes=6)),
    ("h5", ["p2", "p3", "p6"], NOW - timedelta(minutes=5)),
]

SCHEMA = """
CREATE TABLE co_view_pairs (product_a TEXT, product_b TEXT, product_a_name TEXT,
    product_b_name TEXT, co_view_count BIGINT);
CREATE TABLE trending_by_category (category TEXT, rank BIGINT, product_id TEXT,
    product_name TEXT, engagement_score BIGINT, view_count BIGINT, cart_adds BIGINT,
    window_start TIMESTAMPTZ);
CREATE TABLE vmis_history (session_id TEXT, items TEXT[], last_ts TIMESTAMPTZ);
CREATE TABLE flashrec_status (view_name TEXT, last_refresh TIMESTAMPTZ, watermark TIMESTAMPTZ,
    row_count BIGINT, refresh_ms DOUBLE PRECISION);
CREATE TABLE clickstream (event_id TEXT, session_id TEXT, product_id TEXT, product_name TEXT,
    category TEXT, action TEXT, ts TIMESTAMPTZ);
"""


def fill_views(dsn: str) -> None:
    """Create the view tables and fill them with the rows above."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)
        for a, b, n in CO_VIEWS:
            conn.execute(
                "INSERT INTO co_view_pairs VALUES (%s, %s, %s, %s, %s)",
                (a, b, PRODUCTS[a][0], PRODUCTS[b][0], n),
            )
        for category, window, products in TRENDING:
            for rank, pid in enumerate(products, start=1):
                score = 100 - 10 * rank
                conn.execute(
                    "INSERT INTO trending_by_category VALUES (%s,%s,%s,%s,%s,%s,%s,%s)",
                    (category, rank, pid, PRODUCTS[pid][0], score, score - 5, 1, window),
                )
        for session, items, ts in HISTORY:
            conn.execute("INSERT INTO vmis_history VALUES (%s, %s, %s)", (session, items, ts))
        for pid, (name, category) in PRODUCTS.items():
            conn.execute(
                "INSERT INTO clickstream VALUES (%s, 's', %s, %s, %s, 'view', %s)",
                (f"e-{pid}", pid, name, category, NOW),
            )
        conn.execute(
            "INSERT INTO flashrec_status VALUES ('trending_by_category', %s, %s, 9, 1.5),"
            " ('co_view_pairs', %s, %s, 5, 2.5)",
            (NOW, NOW, NOW, NOW),
        )


def flashrec(*args: str) -> list[str]:
    return [sys.executable, "-m", "recommender.cli", *args]


@contextmanager
def api_process(args: list[str], port: int, log: Path, timeout: float = 60) -> Iterator[str]:
    """`flashrec serve ARGS --port PORT` until ready; yields its base URL; kill -9 after."""
    env = {**os.environ, "FLASHREC_LOG_LEVEL": "INFO"}
    with log.open("ab") as out:
        proc = subprocess.Popen(
            flashrec("serve", "--host", "127.0.0.1", "--port", str(port), *args),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=PROJECT_ROOT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"API exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"API not ready in {timeout} s: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield url
    finally:
        proc.kill()
        proc.wait(timeout=10)
