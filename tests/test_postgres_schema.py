"""What an analyst sees in psql: the streaming views as SQL views of public with the comment of
their sql/ file, the raw events as the one table of public, the bookkeeping in schema flashrec;
tables of an older version (all in public) are moved on start with their rows."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import psycopg
import pytest

from recommender import sqlfiles
from recommender.postgres.local import READER, LocalPostgres, read_pgpass
from recommender.postgres.publisher import Publisher
from recommender.postgres.schema import comment_of, view_comments


def result(name: str, columns: list[str], types: list[str],
           inserts: list[tuple[Any, ...]]) -> SimpleNamespace:  # fmt: skip
    return SimpleNamespace(name=name, columns=columns, types=types, inserts=inserts,
                           deletes=[], row_count=len(inserts), refresh_ms=1.0,
                           initial=False)  # fmt: skip


PAIRS = result("co_view_pairs", ["product_a", "product_b", "sessions"],
               ["VARCHAR", "VARCHAR", "BIGINT"], [("p1", "p2", 3)])  # fmt: skip
HISTORY = result("vmis_history", ["session_id", "items"], ["VARCHAR", "VARCHAR[]"],
                 [("s1", ["p1", "p2"])])  # fmt: skip


def relations(dsn: str) -> dict[str, set[tuple[str, str]]]:
    """(schema, name) of every table and view outside the system schemas, by kind."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT c.relkind, n.nspname, c.relname FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'v') "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema')").fetchall()
    out: dict[str, set[tuple[str, str]]] = {"r": set(), "v": set()}
    for kind, schema, name in rows:
        out[kind].add((schema, name))
    return out


def reader_dsn(pg: LocalPostgres, dsn: str) -> str:
    password = read_pgpass(pg.reader_password_file, READER)
    return f"postgresql://{READER}:{password}@127.0.0.1:{pg.port}/{dsn.rsplit('/', 1)[1]}"


def test_views_in_public_bookkeeping_apart(postgres, dsn: str) -> None:
    comments = view_comments(sqlfiles.load())
    publisher = Publisher(dsn, feed_views=("vmis_history",), comments=comments)
    try:
        publisher.publish(1, [PAIRS, HISTORY], None, 0, watermark=None, raw_keep_after=None)
    finally:
        publisher.close()
    found = relations(dsn)
    assert {("public", "co_view_pairs"), ("public", "vmis_history")} <= found["v"]
    public_tables = {name for schema, name in found["r"] if schema == "public"}
    assert public_tables == {"clickstream"}
    assert {("flashrec", "flashrec_meta"), ("flashrec", "flashrec_status"),
            ("flashrec", "flashrec_changes_vmis_history"),
            ("flashrec", "co_view_pairs")} <= found["r"]  # fmt: skip
    assert ("flashrec", "flashrec_changes") in found["v"]
    with psycopg.connect(dsn) as conn:  # a new session: names resolve as an analyst's do
        said = conn.execute("SELECT obj_description('public.co_view_pairs'::regclass, "
                            "'pg_class')").fetchone()[0]  # fmt: skip
        assert said == comments["co_view_pairs"] and "pairs of products" in said
        assert conn.execute("SELECT * FROM co_view_pairs").fetchall() == [("p1", "p2", 3)]
        assert conn.execute("SELECT count(*) FROM flashrec_status").fetchone()[0] == 2


def test_reader_reads_views_and_bookkeeping(postgres, dsn: str) -> None:
    publisher = Publisher(dsn)
    try:
        publisher.publish(1, [PAIRS], None, 0, watermark=None, raw_keep_after=None)
    finally:
        publisher.close()
    with psycopg.connect(reader_dsn(postgres, dsn)) as conn:
        assert conn.execute("SELECT product_a FROM co_view_pairs").fetchall() == [("p1",)]
        assert conn.execute("SELECT view FROM flashrec_status").fetchall() == [
            ("co_view_pairs",)]
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("DELETE FROM flashrec.co_view_pairs")


def test_tables_of_an_older_version_move_with_their_rows(postgres, dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:  # what an older version left
        conn.execute("CREATE TABLE public.co_view_pairs (product_a text, product_b text, "
                     "sessions bigint)")
        conn.execute("INSERT INTO public.co_view_pairs VALUES ('a', 'b', 5)")
        conn.execute("CREATE TABLE public.flashrec_meta (key text PRIMARY KEY, value text)")
        conn.execute("INSERT INTO public.flashrec_meta VALUES ('epoch', '41')")
    publisher = Publisher(dsn)
    try:
        assert publisher.meta("epoch") == "41"
        later = result("co_view_pairs", PAIRS.columns, PAIRS.types, [("c", "d", 3)])
        publisher.publish(42, [later], None, 0, watermark=None, raw_keep_after=None)
    finally:
        publisher.close()
    found = relations(dsn)
    assert ("public", "co_view_pairs") in found["v"]
    assert ("flashrec", "co_view_pairs") in found["r"]
    assert ("public", "flashrec_meta") not in found["r"]
    with psycopg.connect(dsn) as conn:
        rows = sorted(conn.execute("SELECT * FROM co_view_pairs").fetchall())
        assert rows == [("a", "b", 5), ("c", "d", 3)]


def test_comment_is_the_files_header() -> None:
    text = "-- first line\n-- second line\n\nCREATE MATERIALIZED VIEW v AS SELECT 1;\n-- not this"
    assert comment_of(text) == "first line second line"
