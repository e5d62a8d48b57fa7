"""Where the published tables live, and what an analyst sees in psql.

The rows of each view are kept in a table of schema `flashrec`, with the bookkeeping
(`flashrec_meta`, `flashrec_status`, the change feeds `flashrec_changes_<view>` and the view
`flashrec_changes` over them). Schema `public` holds the raw `clickstream` table and, for each
view of sql/, a plain SQL view of the same name over its table, commented with the header of
its sql/ file: `\\dv` lists the streaming views, `\\d+ co_view_pairs` describes one, `\\dt`
shows the raw events only, `\\dt flashrec.*` the bookkeeping.

Every role's search_path is `public, flashrec`, so unqualified names work as before (the view
in public first); the publisher's own session puts `flashrec` first and writes the tables.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from recommender.config import SQL_DIR

log = logging.getLogger(__name__)

DATA_SCHEMA = "flashrec"
READ_PATH = f"public, {DATA_SCHEMA}"  # everyone: the views first
WRITE_PATH = f"{DATA_SCHEMA}, public"  # the publisher: the tables first
BOOKKEEPING = ("flashrec_meta", "flashrec_status")


def prepare(conn: Any, reader: str | None) -> None:
    """The data schema, tables of older versions moved into it, and search paths (in the
    open transaction of `conn`, a session of the owner of the database)."""
    from psycopg import errors, sql

    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {DATA_SCHEMA}")
    old = [name for (name,) in conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind = 'r' "
        "AND (c.relname = ANY(%s) OR starts_with(c.relname, 'flashrec_changes'))",
        (list(BOOKKEEPING),))]  # fmt: skip
    for name in old:
        log.info("%s moved to schema %s", name, DATA_SCHEMA)
        conn.execute(f"ALTER TABLE public.{name} SET SCHEMA {DATA_SCHEMA}")
    conn.execute("DROP VIEW IF EXISTS public.flashrec_changes")  # now in the data schema
    roles = [sql.SQL("CURRENT_USER")]
    if reader and conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s",
                               (reader,)).fetchone():  # fmt: skip
        roles.append(sql.Identifier(reader))
        for name in ("public", DATA_SCHEMA):  # the reader's grants, in this database too
            for statement in (
                "GRANT USAGE ON SCHEMA {s} TO {r}",
                "GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO {r}",
                "ALTER DEFAULT PRIVILEGES IN SCHEMA {s} GRANT SELECT ON TABLES TO {r}",
            ):
                conn.execute(sql.SQL(statement).format(s=sql.Identifier(name),
                                                       r=sql.Identifier(reader)))  # fmt: skip
    for role in roles:
        try:
            with conn.transaction():
                conn.execute(sql.SQL("ALTER ROLE {} SET search_path = public, {}").format(
                    role, sql.Identifier(DATA_SCHEMA)))  # fmt: skip
        except errors.InsufficientPrivilege as exc:
            log.warning("search_path not set for %s (%s): readers name the bookkeeping "
                        "tables as %s.<table>", role.as_string(conn), exc, DATA_SCHEMA)
    conn.execute(f"SET search_path = {WRITE_PATH}")


def move_old_table(conn: Any, name: str) -> None:
    """A table `public.<name>` left by an older version moves into the data schema (in the
    open transaction)."""
    kind = conn.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)",
                        (f"public.{name}",)).fetchone()  # fmt: skip
    if kind is not None and kind[0] == "r":
        log.info("%s moved to schema %s; public.%s becomes a view", name, DATA_SCHEMA, name)
        conn.execute(f"ALTER TABLE public.{name} SET SCHEMA {DATA_SCHEMA}")


def show_view(conn: Any, name: str, comment: str | None) -> None:
    """The view `public.<name>` over the table of its rows, with its comment (in the open
    transaction). A view that already shows every column of the table is left alone, so
    that a restart takes no lock that would wait for the analysts' queries."""
    columns = """SELECT array_agg(attname::text ORDER BY attnum) FROM pg_attribute
                 WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped"""
    shown = conn.execute(columns, (f"public.{name}",)).fetchone()[0]
    held = conn.execute(columns, (f"{DATA_SCHEMA}.{name}",)).fetchone()[0]
    if shown != held:
        if shown is not None:
            conn.execute(f"DROP VIEW public.{name}")
        conn.execute(f"CREATE VIEW public.{name} AS SELECT * FROM {DATA_SCHEMA}.{name}")
    said = conn.execute("SELECT obj_description(to_regclass(%s), 'pg_class')",
                        (f"public.{name}",)).fetchone()[0]  # fmt: skip
    if comment and said != comment:
        conn.execute(f"COMMENT ON VIEW public.{name} IS {_literal(comment)}")


def _literal(text: str) -> str:
    """A SQL string literal (COMMENT takes no parameters)."""
    return "'" + text.replace("'", "''") + "'"


def comment_of(sql_text: str) -> str:
    """The leading comment of a sql/ file: its `--` lines before the first statement,
    joined as one paragraph per blank-separated block."""
    lines = []
    for line in sql_text.splitlines():
        stripped = line.strip()
        if not stripped.startswith("--"):
            if stripped:
                break
            continue
        lines.append(stripped[2:].strip())
    return " ".join(line for line in lines if line).strip()


def view_comments(objects: list[Any], sql_dir: Path | None = None) -> dict[str, str]:
    """Each view's comment: the header of its sql/ file."""
    folder = Path(sql_dir or SQL_DIR)
    out = {}
    for obj in objects:
        if obj.is_view and (folder / obj.file).exists():
            out[obj.name] = comment_of((folder / obj.file).read_text())
    return out
