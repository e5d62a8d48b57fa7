"""Index upkeep on a real PostgreSQL: a view table whose keys leave and arrive elsewhere in
the key order (customers: new ones keep arriving, a few old ones return) keeps an index no
larger than twice its lean size when the upkeep runs, and grows past that when it does not.
"""

from __future__ import annotations

import random

import psycopg
import pytest
from conftest import wait_until

from recommender.postgres.upkeep import IndexUpkeep, UpkeepThread, drop_leftovers, index_sizes

ROUNDS = 60
NEW_PER_ROUND = 2000
LEAVE = 0.1  # each round, this share of the live keys leaves the view


@pytest.fixture
def conn(dsn: str):
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE SCHEMA flashrec")
        c.execute("CREATE TABLE flashrec.customers (user_id text, window_days int, n int)")
        c.execute("CREATE INDEX customers_key ON flashrec.customers (user_id, window_days)")
        yield c


def churn(conn, rng: random.Random, first: int, rounds: int, upkeep: IndexUpkeep | None
          ) -> int:  # fmt: skip
    """`rounds` rounds of new customers arriving and a share of the others leaving (each
    round vacuumed, as autovacuum would); the upkeep checked every 5 rounds. Returns the
    next customer number."""
    for r in range(rounds):
        new = range(first, first + NEW_PER_ROUND)
        first += NEW_PER_ROUND
        conn.execute("INSERT INTO flashrec.customers SELECT 'u7-' || n, 7, n "
                     "FROM unnest(%s::int[]) AS n", (list(new),))  # fmt: skip
        live = [n for (n,) in conn.execute("SELECT n FROM flashrec.customers")]
        gone = [n for n in live if rng.random() < LEAVE]
        conn.execute("DELETE FROM flashrec.customers WHERE n = ANY(%s)", (gone,))
        conn.execute("VACUUM flashrec.customers")
        if upkeep is not None and r % 5 == 4:
            upkeep.check(conn)
    return first


def key_index(conn):
    (s,) = [s for s in index_sizes(conn) if s.index == "customers_key"]
    return s


def lean_size(conn) -> float:
    """Bytes per row of a fresh build of the same index."""
    conn.execute("CREATE INDEX fresh ON flashrec.customers (user_id, window_days)")
    size = conn.execute("SELECT pg_relation_size('flashrec.fresh')").fetchone()[0]
    conn.execute("DROP INDEX flashrec.fresh")
    conn.execute("ANALYZE flashrec.customers")
    rows = conn.execute("SELECT count(*) FROM flashrec.customers").fetchone()[0]
    return size / rows


def test_without_upkeep_the_index_outgrows_its_table(conn) -> None:
    churn(conn, random.Random(1), 1_000_000, ROUNDS, None)
    s, lean = key_index(conn), lean_size(conn)
    assert s.size / s.rows > 3 * lean, (s, lean)  # what the upkeep is for


def test_upkeep_keeps_the_index_within_twice_its_lean_size(conn) -> None:
    upkeep = IndexUpkeep("", smallest=0)
    churn(conn, random.Random(1), 1_000_000, ROUNDS, upkeep)
    conn.execute("ANALYZE flashrec.customers")
    s, lean = key_index(conn), lean_size(conn)
    assert upkeep.rebuilt >= 2
    assert s.size / max(s.rows, 1) <= 2 * lean * 1.1, (s, lean)


def test_a_lean_index_is_left_alone(conn) -> None:
    upkeep = IndexUpkeep("", smallest=0)
    churn(conn, random.Random(2), 1_000_000, 2, None)
    conn.execute("ANALYZE flashrec.customers")
    assert upkeep.check(conn) == ["customers_key"]  # the first check measures it
    assert upkeep.check(conn) == []
    upkeep.smallest = 1 << 40
    assert not upkeep.due(key_index(conn))


def test_leftovers_of_an_interrupted_rebuild_are_dropped(conn) -> None:
    conn.execute("INSERT INTO flashrec.customers VALUES ('a', 1, 1), ('b', 1, 1)")
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute("CREATE UNIQUE INDEX CONCURRENTLY customers_key_ccnew "
                     "ON flashrec.customers (n)")  # fmt: skip
    assert drop_leftovers(conn) == ["customers_key_ccnew"]
    assert [s.index for s in index_sizes(conn)] == ["customers_key"]


def test_the_thread_checks_on_its_interval(conn, dsn: str) -> None:
    churn(conn, random.Random(3), 1_000_000, 2, None)
    conn.execute("ANALYZE flashrec.customers")
    thread = UpkeepThread(IndexUpkeep(dsn, smallest=0), interval=0.2).start()
    try:
        wait_until(lambda: thread.upkeep.rebuilt >= 1, timeout=30)
    finally:
        thread.stop()
    assert thread.last_error is None


def test_a_failed_round_is_logged_and_tried_again(caplog) -> None:
    from conftest import free_port

    thread = UpkeepThread(IndexUpkeep(f"postgresql://nobody@127.0.0.1:{free_port()}/none"),
                          interval=0.1).start()  # fmt: skip
    try:
        wait_until(lambda: "index upkeep failed" in caplog.text and thread.last_error, timeout=30)
        wait_until(lambda: caplog.text.count("index upkeep failed") >= 2, timeout=30)
    finally:
        thread.stop()
    assert "OperationalError" in (thread.last_error or "")
