"""Rows to and from PostgreSQL's COPY: DuckDB types as PostgreSQL types, view rows written
in bulk as CSV through Arrow (psycopg's write_row where Arrow cannot take a column), and
the expressions that read a table back as CSV."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

log = logging.getLogger(__name__)


_TYPES = {
    "VARCHAR": "text", "BIGINT": "bigint", "INTEGER": "bigint", "HUGEINT": "bigint",
    "SMALLINT": "bigint", "TINYINT": "bigint", "UBIGINT": "bigint", "UINTEGER": "bigint",
    "DOUBLE": "double precision", "FLOAT": "double precision", "BOOLEAN": "boolean",
    "TIMESTAMP": "timestamptz", "TIMESTAMP WITH TIME ZONE": "timestamptz", "DATE": "date",
    "VARCHAR[]": "text[]", "BIGINT[]": "bigint[]", "DECIMAL(18,3)": "numeric",
}  # fmt: skip


def pg_type(duck_type: str) -> str:
    """PostgreSQL column type for a DuckDB result type."""
    t = duck_type.upper()
    if t in _TYPES:
        return _TYPES[t]
    if t.startswith("DECIMAL"):
        return "numeric"
    raise ValueError(f"no PostgreSQL type for DuckDB type {duck_type}")


def _csv(table: Any) -> bytes:
    """An Arrow table as CSV for COPY ... (FORMAT csv): every non-null value quoted, NULL as
    nothing."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    sink = pa.BufferOutputStream()
    options = pacsv.WriteOptions(include_header=False, quoting_style="all_valid")
    pacsv.write_csv(table, sink, options)
    return sink.getvalue().to_pybytes()


# Bulk COPY of view rows: each column becomes one Arrow array (strings, int64, float64, bool,
# date, naive timestamps; arrays, decimals and mixed columns as text built here), written
# by Arrow's C++ CSV writer with every non-null value quoted (NULL: unquoted empty), a few
# thousand rows per write (the server parses one part while the next is written). Columns
# Arrow cannot take as they are send the statement to psycopg's write_row instead, so what
# PostgreSQL stores is the same either way.
_CHUNK_ROWS = 512  # rows per part written


_BULK_MIN_ROWS = 64  # fewer rows: write_row is as fast (Arrow's fixed cost per statement)


_NONE = type(None)


_ARROW_TYPES = {str: "string", float: "float64", bool: "bool_", date: "date32"}


class _NoFastForm(Exception):
    """A value the bulk COPY does not cover."""


def copy_rows(conn: Any, table: str, columns: list[str], rows: Sequence[tuple[Any, ...]]
               ) -> None:  # fmt: skip
    """Rows into `table` with one COPY: Arrow-built CSV, or row by row (write_row). Rows
    that come as an Arrow table (`rows.table`, the engine's ArrowRows) are written as such."""
    utf8 = csv_ok(conn)
    given = getattr(rows, "table", None)
    if given is not None and utf8:
        copy_table(conn, table, columns, given)
        return
    bulk = len(rows) >= _BULK_MIN_ROWS and utf8
    arrow = _arrow_table(list(rows), len(columns)) if bulk else None
    if arrow is None:
        with conn.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as cp:
            for row in rows:
                cp.write_row(row)
        return
    copy_table(conn, table, columns, arrow)


def csv_ok(conn: Any) -> bool:
    """Whether Arrow's CSV (UTF-8) can be COPYed on this connection."""
    return conn.info.encoding == "utf-8"


# Column types Publisher.export_csv writes as PostgreSQL prints them (the text DuckDB's
# read_csv parses to the same values psycopg gives), and arrays it writes as JSON.
_CSV_PLAIN = re.compile(r"text|character varying(\(\d+\))?|bigint|integer|smallint|boolean|"
                        r"double precision|numeric(\(\d+,\d+\))?|date|"
                        r"timestamp(\(\d\))? without time zone")  # fmt: skip


_CSV_JSON = re.compile(r"(text|character varying(\(\d+\))?|bigint|integer|smallint|boolean)\[\]")


_CSV_UTC = re.compile(r"timestamp(\(\d\))? with time zone")


def csv_expr(column: str, kind: str) -> str | None:
    """How export_csv selects a column of PostgreSQL type `kind` (None: not covered)."""
    col = '"' + column.replace('"', '""') + '"'
    if _CSV_PLAIN.fullmatch(kind):
        return col
    if _CSV_UTC.fullmatch(kind):
        return f"{col} AT TIME ZONE 'UTC'"  # naive UTC, as current_rows gives it
    if _CSV_JSON.fullmatch(kind):
        return f"array_to_json({col})"
    return None


def copy_table(conn: Any, table: str, columns: list[str], arrow: Any) -> None:
    """An Arrow table (its columns in the order of `columns`) into `table`: CSV, every
    non-null value quoted, a few hundred rows per write."""
    cols = ", ".join(columns)
    with conn.cursor().copy(f"COPY {table} ({cols}) FROM STDIN (FORMAT csv)") as cp:
        for start in range(0, arrow.num_rows, _CHUNK_ROWS):
            cp.write(_csv(arrow.slice(start, _CHUNK_ROWS)))


def _arrow_table(rows: list[tuple[Any, ...]], ncols: int) -> Any:
    """Rows as an Arrow table whose CSV text is what write_row sends (None: no fast form)."""
    import pyarrow as pa

    if not rows or set(map(len, rows)) != {ncols}:
        return None
    try:
        arrays = [_arrow_column(pa, col) for col in zip(*rows, strict=True)]
    except (_NoFastForm, pa.ArrowException, OverflowError, TypeError, ValueError):
        return None
    return pa.Table.from_arrays(arrays, names=[f"c{i}" for i in range(ncols)])


def _arrow_column(pa: Any, col: tuple[Any, ...]) -> Any:
    """One column as an Arrow array whose CSV text is what psycopg would send for it."""
    kinds = set(map(type, col))
    kinds.discard(_NONE)
    if len(kinds) == 1:
        (kind,) = kinds
        if kind in _ARROW_TYPES:
            return pa.array(col, type=getattr(pa, _ARROW_TYPES[kind])())
        if kind is int:
            values = [v for v in col if v is not None] if None in col else col
            if -(2**63) <= min(values) and max(values) < 2**63:
                return pa.array(col, type=pa.int64())
        if kind is datetime and set(map(_tzinfo, col)) == {None}:
            return pa.array(col, type=pa.timestamp("us"))  # naive: written as they are
    elif not kinds:
        return pa.array(col, type=pa.string())
    return pa.array([None if v is None else _value(v) for v in col], type=pa.string())


def _tzinfo(v: Any) -> Any:
    return None if v is None else v.tzinfo


def _value(v: Any) -> str:
    """psycopg's text form of a value (before COPY escaping)."""
    t = type(v)
    if t in (str, int, float, datetime, date):
        return str(v)
    if t is bool:
        return "t" if v else "f"
    if t is list:
        return _array(v)
    if t is Decimal:
        return "NaN" if v.is_nan() else str(v)
    raise _NoFastForm(t.__name__)


def _array(items: list[Any]) -> str:
    """A PostgreSQL array literal, every element quoted (one dimension only)."""
    if not items:
        return "{}"
    try:
        joined = "\x00".join(items)
    except TypeError:
        return "{" + ",".join(map(_element, items)) + "}"
    if joined.count("\x00") != len(items) - 1:
        raise _NoFastForm("NUL in an array element")  # write_row refuses it
    joined = joined.replace("\\", "\\\\").replace('"', '\\"').replace("\x00", '","')
    return '{"' + joined + '"}'


def _element(v: Any) -> str:
    if v is None:
        return "NULL"
    if type(v) is list:
        raise _NoFastForm("nested list")
    return '"' + _value(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def naive(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    if isinstance(value, list):
        return [naive(v) for v in value]
    return value

