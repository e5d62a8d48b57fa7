"""Apply sql/ to a RisingWave cluster: in order, idempotently, with addresses substituted.

Each object of sql/ is created unless the catalog already has it (rw_catalog lookups, so a
re-run is safe whether or not a statement says IF NOT EXISTS). `--drop` removes the objects
in reverse order. The Kafka source gets the cluster's broker and topic; UDFs get the link to
the UDF server.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recommender.sqlfiles import SqlObject

# kind -> (catalog relation listing existing objects, DROP keyword)
CATALOG: dict[str, tuple[str, str]] = {
    "source": ("rw_catalog.rw_sources", "SOURCE"),
    "table": ("rw_catalog.rw_tables", "TABLE"),
    "materialized view": ("rw_catalog.rw_materialized_views", "MATERIALIZED VIEW"),
    "view": ("rw_catalog.rw_views", "VIEW"),
    "subscription": ("rw_catalog.rw_subscriptions", "SUBSCRIPTION"),
    "function": ("rw_catalog.rw_functions", "FUNCTION"),
    "sink": ("rw_catalog.rw_sinks", "SINK"),
    "index": ("rw_catalog.rw_indexes", "INDEX"),
}

_BOOTSTRAP_RE = re.compile(r"(properties\.bootstrap\.server\s*=\s*)'[^']*'", re.IGNORECASE)
_TOPIC_RE = re.compile(r"(\btopic\s*=\s*)'[^']*'", re.IGNORECASE)
_LINK_RE = re.compile(r"(USING\s+LINK\s+)'[^']*'", re.IGNORECASE)


log = logging.getLogger(__name__)

# RisingWave answers and has a running streaming compute node: CREATE can be planned and run
# (the frontend accepts connections before the compute node has registered)
READY_SQL = (
    "SELECT count(*) FROM rw_catalog.rw_worker_nodes "
    "WHERE type = 'WORKER_TYPE_COMPUTE_NODE' AND state = 'RUNNING' AND is_streaming"
)


class DeployError(Exception):
    """A statement failed or the plan cannot be made; the message says which and why."""


@dataclass
class Step:
    """One object to create (or drop) and the SQL that does it."""

    obj: SqlObject
    sql: str
    outcome: str = "planned"  # planned | created | found | dropped | absent | skipped


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def render(
    obj: SqlObject, bootstrap: str | None, topic: str | None, udf_link: str | None
) -> str:
    """The statement with the broker address, topic and UDF link substituted."""
    sql = obj.sql
    if obj.kind in ("source", "table") and bootstrap:
        sql = _BOOTSTRAP_RE.sub(lambda m: m.group(1) + _quote(bootstrap), sql)
    if obj.kind in ("source", "table") and topic:
        sql = _TOPIC_RE.sub(lambda m: m.group(1) + _quote(topic), sql)
    if obj.kind == "function" and udf_link:
        sql = _LINK_RE.sub(lambda m: m.group(1) + _quote(udf_link), sql)
    return sql


def plan(
    objects: Iterable[SqlObject],
    bootstrap: str | None = None,
    topic: str | None = None,
    udf_link: str | None = None,
    include_functions: bool = True,
) -> list[Step]:
    """The create steps for sql/, in file order. Statements with parse errors stop the plan."""
    steps = []
    for obj in objects:
        if obj.status == "error":
            raise DeployError(f"{obj.file}: {obj.name} does not parse: {obj.detail}")
        if obj.kind not in CATALOG:
            raise DeployError(f"{obj.file}: don't know how to deploy a '{obj.kind}' statement")
        step = Step(obj, render(obj, bootstrap, topic, udf_link))
        if obj.kind == "function" and not include_functions:
            step.outcome = "skipped"
        steps.append(step)
    return steps


def plan_folder(
    folder: Path, bootstrap: str | None, topic: str | None, udf_link: str | None
) -> list[Step]:
    """The plan `flashrec deploy` makes for a folder of .sql files: the UDFs are created only
    with a link to the UDF server (without one they are planned as skipped)."""
    from recommender import sqlfiles

    return plan(
        sqlfiles.load(folder), bootstrap, topic, udf_link, include_functions=udf_link is not None
    )


def drop_sql(obj: SqlObject) -> str:
    """DROP ... IF EXISTS for one object (its dependants were dropped before it)."""
    return f"DROP {CATALOG[obj.kind][1]} IF EXISTS {obj.name}"


Query = Callable[[str, tuple[Any, ...]], list[tuple[Any, ...]]]
Execute = Callable[[str], None]


def catalog_query(kind: str) -> str:
    """The catalog lookup of an object of this kind by name (one %s parameter)."""
    return f"SELECT 1 FROM {CATALOG[kind][0]} WHERE name = %s"


def existing(query: Query, kind: str, name: str) -> bool:
    """Whether the catalog has an object of this kind and name."""
    bare = name.split(".")[-1]
    return bool(query(catalog_query(kind), (bare,)))


def sent_statements(steps: list[Step]) -> list[tuple[Step, str]]:
    """Every statement a deploy (or --drop) of these steps can send, as RisingWave receives
    it: each object's catalog lookup (psycopg binds %s as $1), its CREATE unless the step is
    skipped, and its DROP."""
    out: list[tuple[Step, str]] = []
    for step in steps:
        out.append((step, catalog_query(step.obj.kind).replace("%s", "$1")))
        if step.outcome != "skipped":
            out.append((step, step.sql))
        out.append((step, drop_sql(step.obj)))
    return out


def apply(steps: list[Step], query: Query, execute: Execute) -> list[Step]:
    """Create each planned object the catalog lacks; mark the rest as found."""
    for step in steps:
        if step.outcome == "skipped":
            continue
        if existing(query, step.obj.kind, step.obj.name):
            step.outcome = "found"
            continue
        try:
            execute(step.sql)
        except Exception as exc:  # the driver's error names the problem; add where it came from
            raise DeployError(f"{step.obj.file}: creating {step.obj.name} failed: {exc}") from exc
        step.outcome = "created"
    return steps


def drop(steps: list[Step], query: Query, execute: Execute) -> list[Step]:
    """Drop every object of the plan, newest first."""
    for step in reversed(steps):
        if not existing(query, step.obj.kind, step.obj.name):
            step.outcome = "absent"
            continue
        step.sql = drop_sql(step.obj)
        try:
            execute(step.sql)
        except Exception as exc:
            raise DeployError(f"dropping {step.obj.name} failed: {exc}") from exc
        step.outcome = "dropped"
    return steps


def wait_ready(
    connect: Callable[[], Any],
    wait: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Any:
    """A connection from `connect()` once RisingWave answers READY_SQL with a running compute
    node, retrying with backoff (0.5 s, doubling up to 8 s) for up to `wait` seconds; raises
    DeployError with the last answer or error after that (wait 0: one try)."""
    deadline = clock() + wait
    delay, tries = 0.5, 0
    while True:
        tries += 1
        conn = None
        try:
            conn = connect()
            nodes = conn.execute(READY_SQL).fetchone()[0]
            if nodes:
                return conn
            why = "no running streaming compute node yet"
        except Exception as exc:  # the driver's error: refused, reset, starting up
            why = " ".join(str(exc).split()) or type(exc).__name__
        if conn is not None:
            conn.close()
        left = deadline - clock()
        if left <= 0:
            raise DeployError(f"RisingWave not ready after {tries} tries in {wait:.0f} s: {why}")
        log.info("RisingWave not ready (%s): retrying in %.1f s", why, min(delay, left))
        sleep(min(delay, left))
        delay = min(delay * 2, 8.0)
