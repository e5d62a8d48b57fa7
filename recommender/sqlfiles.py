"""The RisingWave SQL of sql/: load, check with sqlglot, and transpile the views to DuckDB.

sql/ holds one object per file, applied in file-name order. Each statement is parsed with
sqlglot's RisingWave dialect; a statement that only parses as a generic `Command` (sqlglot
does not understand it) is reported as "unchecked", never as valid.

The embedded engine evaluates each materialized view's query on DuckDB: sqlglot writes the
query as DuckDB SQL, `TUMBLE(rel, ts, size)` becomes a subquery adding window_start and
window_end (epoch-aligned, like RisingWave's), and NOW() becomes the engine clock.

The .toml beside a view's file is its catalog entry (recommender/catalog.py), kept on its
SqlObject as `meta`.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlglot
from sqlglot import exp

from recommender.catalog import ViewMeta
from recommender.catalog import check as check_catalog
from recommender.catalog import read as read_meta
from recommender.config import SQL_DIR
from recommender.events import SQL_TYPES, column_types

NOW_MARKER = "__flashrec_now__"
# The relation every view reads: on RisingWave the deduplicating table of sql/010 (first copy
# of each event_id kept, fed by the validating relay); on the embedded engine the view over
# its event store (engine/store.py), which validates and deduplicates at ingest. The engine
# maintains views only, so the table's statement is deployed to RisingWave and not run here.
CLICKSTREAM = "clickstream"
# The least event history a view without a temporal filter still gets (none today).
DEFAULT_HORIZON = timedelta(days=7)


@dataclass
class SqlObject:
    """One statement of sql/."""

    file: str
    kind: str  # source | materialized view | table | subscription | function | other
    name: str
    sql: str
    status: str  # ok | unchecked | error
    detail: str = ""
    tree: exp.Expression | None = field(default=None, repr=False)
    meta: ViewMeta | None = field(default=None, repr=False)  # its catalog entry (.toml)

    @property
    def is_view(self) -> bool:
        return self.kind == "materialized view" and self.status == "ok"


def split_statements(text: str) -> list[str]:
    """Statements of a SQL file (comments dropped), split at semicolons outside quotes."""
    out, buf, quote, i = [], [], "", 0
    while i < len(text):
        ch = text[i]
        if quote:
            buf.append(ch)
            if ch == quote:
                quote = ""
        elif ch in ("'", '"'):
            quote = ch
            buf.append(ch)
        elif text.startswith("--", i):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
            continue
        elif text.startswith("$$", i):
            end = text.find("$$", i + 2)
            end = len(text) if end < 0 else end + 2
            buf.append(text[i:end])
            i = end
            continue
        elif ch == ";":
            out.append("".join(buf).strip())
            buf = []
        else:
            buf.append(ch)
        i += 1
    out.append("".join(buf).strip())
    return [s for s in out if s]


_NAME_RE = re.compile(
    r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?(MATERIALIZED\s+VIEW|SOURCE|TABLE|SUBSCRIPTION|FUNCTION"
    r"|SINK|INDEX|VIEW)\s+(?:IF\s+NOT\s+EXISTS\s+)?([A-Za-z_][\w.]*)",
    re.IGNORECASE,
)


def _kind_and_name(sql: str) -> tuple[str, str]:
    m = _NAME_RE.match(sql)
    if not m:
        return "other", sql.split()[0].lower() if sql.split() else ""
    return " ".join(m.group(1).lower().split()), m.group(2)


def check_statement(file: str, sql: str) -> SqlObject:
    """Parse one statement with sqlglot (RisingWave dialect) and say what it is."""
    kind, name = _kind_and_name(sql)
    quiet = logging.getLogger("sqlglot")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the Command fallback is reported here, not logged
    try:
        trees = sqlglot.parse(sql, read="risingwave")
    except sqlglot.errors.ParseError as exc:
        detail = str(exc).splitlines()[0]
        return SqlObject(file, kind, name, sql, "error", detail)
    finally:
        quiet.setLevel(level)
    tree = trees[0] if trees else None
    if tree is None:
        return SqlObject(file, kind, name, sql, "error", "empty statement")
    if isinstance(tree, exp.Command):
        return SqlObject(
            file, kind, name, sql, "unchecked", "sqlglot parses it only as a generic Command"
        )
    return SqlObject(file, kind, name, sql, "ok", "", tree)


def load(sql_dir: Path | None = None) -> list[SqlObject]:
    """Every statement of sql/*.sql, in file-name order, checked, with the catalog entry of
    the .toml beside its file (ValueError naming the file when one is not valid)."""
    folder = Path(sql_dir or SQL_DIR)
    objects = []
    for path in sorted(folder.glob("*.sql")):
        found = [check_statement(path.name, s) for s in split_statements(path.read_text())]
        sidecar = path.with_suffix(".toml")
        if sidecar.exists():
            kinds = [o.kind for o in found]
            if kinds not in (["materialized view"], ["table"]):
                raise ValueError(f"{sidecar.name}: a catalog entry describes the one view or "
                                 f"table of its .sql; {path.name} holds {kinds or 'nothing'}")
            found[0].meta = read_meta(sidecar, found[0].name)
        objects += found
    strays = sorted(p.name for p in folder.glob("*.toml") if not p.with_suffix(".sql").exists())
    if strays:
        raise ValueError(f"{', '.join(strays)}: no .sql of the same name beside it")
    check_catalog([o.meta for o in objects if o.meta is not None])
    return objects


def catalog(objects: list[SqlObject] | None = None) -> dict[str, ViewMeta]:
    """The catalog entries of these objects (default: sql/'s), by view name, in file order."""
    found = objects if objects is not None else load()
    return {o.name: o.meta for o in found if o.meta is not None}


# --- transpiling a view to DuckDB ---------------------------------------------------------


def view_query(obj: SqlObject) -> exp.Expression:
    """The SELECT of a CREATE MATERIALIZED VIEW."""
    if obj.tree is None or not isinstance(obj.tree, exp.Create):
        raise ValueError(f"{obj.name} is not a parsed CREATE statement")
    query = obj.tree.expression
    if query is None:
        raise ValueError(f"{obj.name} has no query")
    return query.copy()


def reads(obj: SqlObject) -> set[str]:
    """The tables and views a view's query reads (its CTEs' names left out)."""
    query = view_query(obj)
    ctes = {c.alias for c in query.find_all(exp.CTE)}
    return {t.name for t in query.find_all(exp.Table) if t.name and t.name not in ctes}


class ShapeError(ValueError):
    """A view's query is not the one an incremental maintainer reproduces."""


@dataclass(frozen=True)
class Parameter:
    """A literal of a query that its shape leaves out (see `shape`)."""

    kind: str  # interval | number
    value: float  # an interval's seconds, or the number
    sql: str  # as written


_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)
_PLACEHOLDER = re.compile(r":p(\d+)\b")


def _parameter(node: exp.Expression) -> Parameter | None:
    """The node as a parameter: an INTERVAL; a number compared with (`>= 3`, also as the
    factor of a product compared with: `< 1.0 * n`); a number selected as a column
    (`7 AS window_days`). None: not one."""
    if isinstance(node, exp.Interval):
        seconds = _interval_seconds(node)
        return None if seconds is None else Parameter("interval", seconds, node.sql())
    if not isinstance(node, exp.Literal) or node.is_string:
        return None
    parent = node.parent
    compared = isinstance(parent, _COMPARISONS) or (
        isinstance(parent, exp.Mul) and isinstance(parent.parent, _COMPARISONS))
    selected = isinstance(parent, exp.Alias) and isinstance(parent.parent, exp.Select)
    if not (compared or selected):
        return None
    try:
        return Parameter("number", float(node.this), node.sql())
    except ValueError:
        return None


def shape(query: exp.Expression) -> tuple[str, list[Parameter]]:
    """(shape, parameters) of a parsed query. The shape is a short hash of the query with
    each parameter (`_parameter`: look-backs, window sizes, thresholds, window labels) as a
    placeholder of its kind; comments and layout do not count. The parameters come in the
    order they appear in the query. Code that reproduces a view's SQL by hand checks the
    view still has the shape it was written for and reads the parameters."""
    query = query.copy()
    found = [(node, p) for node in list(query.walk()) if (p := _parameter(node)) is not None]
    for i, (node, _) in enumerate(found):
        node.replace(exp.Placeholder(this=f"p{i}"))
    text = query.sql()
    order = [int(m.group(1)) for m in _PLACEHOLDER.finditer(text)]
    text = _PLACEHOLDER.sub(lambda m: ":" + found[int(m.group(1))][1].kind, text)
    return hashlib.sha256(text.encode()).hexdigest()[:16], [found[i][1] for i in order]


def match(query: exp.Expression, expected: str, what: str) -> list[Parameter]:
    """The query's parameters when its shape is `expected`; ShapeError when not (`what`:
    the parameters a maintainer reads, for the message)."""
    found, parameters = shape(query)
    if found != expected:
        raise ShapeError(f"its shape is {found}, not {expected}: more than its parameters "
                         f"({what}) differs from the query the maintainer reproduces")
    return parameters


def _interval_seconds(node: exp.Expression) -> float | None:
    if not isinstance(node, exp.Interval):
        return None
    text = node.this.name if node.this is not None else ""
    unit = node.unit.name if node.unit is not None else ""
    parts = f"{text} {unit}".split()
    if len(parts) < 2:
        return None
    try:
        value = float(parts[0])
    except ValueError:
        return None
    unit = parts[1].lower().rstrip("s")
    scale = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}
    return value * scale[unit] if unit in scale else None


def window_start_sql(column: str, micros: int) -> str:
    """DuckDB expression of the epoch-aligned tumbling window start of `column`."""
    return f"make_timestamp(CAST(floor(epoch_us({column}) / {micros}) AS BIGINT) * {micros})"


def tumble_micros(query: exp.Expression) -> int | None:
    """The window size of the query's TUMBLE in microseconds (None: no TUMBLE)."""
    for node in query.find_all(exp.Anonymous):
        if node.name.upper() == "TUMBLE" and len(node.expressions) >= 3:
            seconds = _interval_seconds(node.expressions[2])
            if seconds is not None:
                return int(seconds * 1_000_000)
    return None


def _tumble_subquery(
    node: exp.Anonymous, alias: str | None, restrict: str | None = None
) -> exp.Expression:
    relation, column, size = node.expressions[:3]
    seconds = _interval_seconds(size)
    if seconds is None:
        raise ValueError(f"TUMBLE size not understood: {size.sql()}")
    micros = int(seconds * 1_000_000)
    rel = relation.sql(dialect="duckdb")
    col = column.sql(dialect="duckdb")
    start = window_start_sql(col, micros)
    where = f" WHERE {restrict}" if restrict else ""
    sql = (
        f"(SELECT *, {start} AS window_start, "
        f"{start} + INTERVAL '{micros} microseconds' AS window_end FROM {rel}{where})"
    )
    sub = sqlglot.parse_one(f"SELECT * FROM {sql} AS {alias or rel}", read="duckdb")
    return sub.args["from_"].this


def to_duckdb(
    query: exp.Expression, restrict: str | None = None, tumble_restrict: str | None = None,
    source: str = CLICKSTREAM,
) -> str:
    """DuckDB SQL of a view query; NOW() is left as the identifier NOW_MARKER.

    `restrict`: a WHERE condition applied to every read of `clickstream` (partial recompute),
    which then reads relation `source` (same columns) instead;
    `tumble_restrict`: one applied to the rows a TUMBLE reads (columns of its relation).
    `x AT TIME ZONE 'UTC'` becomes `x`: the engine's times are naive UTC already, which is
    what RisingWave's TIMESTAMPTZ AT TIME ZONE 'UTC' gives (DuckDB would make it a TIMESTAMPTZ
    and read its fields in the session's time zone).
    """
    query = query.copy()
    for node in list(query.find_all(exp.AtTimeZone)):
        zone = node.args.get("zone")
        if isinstance(zone, exp.Literal) and zone.is_string and zone.name.upper() == "UTC":
            node.replace(node.this)
    if restrict:
        for node in list(query.find_all(exp.Table)):
            if node.name == CLICKSTREAM and not isinstance(node.this, exp.Anonymous):
                alias = node.alias or CLICKSTREAM
                sub = sqlglot.parse_one(
                    f"SELECT * FROM (SELECT * FROM {source} WHERE {restrict}) AS {alias}",
                    read="duckdb",
                )
                node.replace(sub.args["from_"].this)
    for node in list(query.find_all(exp.Table)):
        if isinstance(node.this, exp.Anonymous) and node.this.name.upper() in ("TUMBLE",):
            node.replace(_tumble_subquery(node.this, node.alias or None, tumble_restrict))
    for node in list(query.find_all(exp.CurrentTimestamp)):
        node.replace(exp.column(NOW_MARKER))
    for node in list(query.find_all(exp.Anonymous)):
        if node.name.upper() == "NOW":
            node.replace(exp.column(NOW_MARKER))
    return query.sql(dialect="duckdb")


def timestamp_literal(ts: datetime) -> str:
    """A DuckDB TIMESTAMP literal of `ts` (naive UTC or aware)."""
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC).replace(tzinfo=None)
    return f"TIMESTAMP '{ts.strftime('%Y-%m-%d %H:%M:%S.%f')}'"


def bind_now(duck_sql: str, now: datetime) -> str:
    """The DuckDB SQL with NOW() fixed at `now` (naive UTC or aware)."""
    return duck_sql.replace(NOW_MARKER, timestamp_literal(now))


def horizons(query: exp.Expression) -> list[timedelta]:
    """Every `NOW() - INTERVAL` look-back of a view's temporal filters."""
    out = []
    for node in query.find_all(exp.Sub):
        left, right = node.this, node.expression
        is_now = isinstance(left, exp.CurrentTimestamp) or (
            isinstance(left, exp.Anonymous) and left.name.upper() == "NOW"
        )
        seconds = _interval_seconds(right) if is_now else None
        if seconds is not None:
            out.append(timedelta(seconds=seconds))
    return sorted(set(out))


def horizon(query: exp.Expression) -> timedelta | None:
    """The longest `NOW() - INTERVAL` look-back of a view's temporal filters (None: none)."""
    longest = None
    for node in query.find_all(exp.Sub):
        left, right = node.this, node.expression
        is_now = isinstance(left, exp.CurrentTimestamp) or (
            isinstance(left, exp.Anonymous) and left.name.upper() == "NOW"
        )
        seconds = _interval_seconds(right) if is_now else None
        if seconds is not None and (longest is None or seconds > longest):
            longest = seconds
    return None if longest is None else timedelta(seconds=longest)


def views(objects: list[SqlObject] | None = None) -> list[SqlObject]:
    """The materialized views of sql/ that the engine can maintain, in file order."""
    return [o for o in (objects if objects is not None else load()) if o.is_view]


# --- the clickstream table ------------------------------------------------------------------


@dataclass(frozen=True)
class ClickstreamTable:
    """What sql/010's CREATE TABLE clickstream declares (RisingWave syntax, read by pattern:
    sqlglot does not parse it)."""

    columns: list[tuple[str, str]]  # (name, RisingWave type)
    key: list[str]  # PRIMARY KEY columns
    append_only: bool
    on_conflict: str  # "DO NOTHING", "DO UPDATE FULL", ... or "" when not said
    retention: timedelta | None  # retention_seconds
    watermark: bool  # a WATERMARK FOR clause

    def duckdb_ddl(self, name: str = CLICKSTREAM) -> str:
        """The same table in DuckDB (naive UTC times, as the engine stores them)."""
        types = {k["risingwave"]: k["duckdb"] for k in SQL_TYPES.values()}
        cols = [f"{c} {types.get(t.upper(), t)}" for c, t in self.columns]
        if self.key:
            cols.append(f"PRIMARY KEY ({', '.join(self.key)})")
        return f"CREATE TABLE {name} ({', '.join(cols)})"

    def duckdb_insert(self, name: str = CLICKSTREAM) -> str:
        """An INSERT of one row (all columns, ? parameters) with the table's conflict rule."""
        names = [c for c, _ in self.columns]
        marks = ", ".join("?" for _ in names)
        conflict = f" ON CONFLICT {self.on_conflict}" if self.on_conflict == "DO NOTHING" else ""
        return f"INSERT INTO {name} ({', '.join(names)}) VALUES ({marks}){conflict}"


def _top_level_parts(text: str) -> list[str]:
    """`text` split at commas outside parentheses and quotes."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in ("'", '"'):
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return [p for p in parts if p]


def clickstream_table(objects: list[SqlObject] | None = None) -> ClickstreamTable:
    """The declaration of the clickstream table of sql/; ValueError when there is none."""
    found = [o for o in (objects if objects is not None else load())
             if o.name == CLICKSTREAM and o.kind == "table"]  # fmt: skip
    if not found:
        raise ValueError(f"sql/ has no CREATE TABLE {CLICKSTREAM}")
    sql = found[0].sql
    open_at = sql.index("(")
    depth, close_at = 0, -1
    for i in range(open_at, len(sql)):
        depth += {"(": 1, ")": -1}.get(sql[i], 0)
        if depth == 0:
            close_at = i
            break
    body, tail = sql[open_at + 1 : close_at], sql[close_at + 1 :]
    columns, key, watermark = [], [], False
    for part in _top_level_parts(body):
        words = part.split(None, 1)
        head = part.upper()
        if head.startswith("PRIMARY KEY"):
            inner = part[part.index("(") + 1 : part.rindex(")")]
            key = [k.strip() for k in inner.split(",")]
        elif head.startswith("WATERMARK"):
            watermark = True
        elif len(words) == 2:
            columns.append((words[0], " ".join(words[1].split())))
    conflict = re.search(r"ON\s+CONFLICT\s+(DO\s+NOTHING|DO\s+UPDATE\s+(?:FULL|IF\s+NOT\s+NULL)"
                         r"|OVERWRITE|IGNORE)", tail, re.IGNORECASE)  # fmt: skip
    seconds = re.search(r"retention_seconds\s*=\s*'?(\d+)", tail, re.IGNORECASE)
    return ClickstreamTable(
        columns=columns, key=key,
        append_only=re.search(r"\bAPPEND\s+ONLY\b", tail, re.IGNORECASE) is not None,
        on_conflict=" ".join(conflict.group(1).upper().split()) if conflict else "",
        retention=timedelta(seconds=int(seconds.group(1))) if seconds else None,
        watermark=watermark,
    )  # fmt: skip


def clickstream_problems(objects: list[SqlObject] | None = None) -> list[str]:
    """Where sql/'s clickstream table would not mean what the embedded engine's event store
    means (each event_id once, first copy kept, no late event dropped, state kept at least as
    long as the longest view look-back); empty when it does."""
    objects = objects if objects is not None else load()
    try:
        table = clickstream_table(objects)
    except ValueError as exc:
        return [str(exc)]
    problems = []
    declared = [(c, t.upper()) for c, t in table.columns]
    if declared != list(column_types("risingwave")):
        names = ", ".join(f"{c} {t}" for c, t in column_types("risingwave"))
        problems.append(f"its columns are not the event's fields ({names}; "
                        "recommender/clickstream.schema.json)")  # fmt: skip
    if table.key != ["event_id"]:
        problems.append(f"its PRIMARY KEY is {table.key or 'missing'}, not (event_id)")
    if not table.append_only or table.on_conflict != "DO NOTHING":
        problems.append("it must be APPEND ONLY ON CONFLICT DO NOTHING (first copy kept)")
    if table.watermark:
        problems.append("it has a WATERMARK, which drops late events on RisingWave only")
    spans = [horizon(view_query(v)) for v in views(objects)]
    longest = max((s for s in spans if s is not None), default=DEFAULT_HORIZON)
    if table.retention is None or table.retention < longest:
        problems.append(f"its retention_seconds ({table.retention}) is shorter than the "
                        f"longest view look-back ({longest})")  # fmt: skip
    return problems
