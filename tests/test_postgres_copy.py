"""The publisher's bulk COPY text (one write per statement) stores exactly what psycopg's
per-row write_row stored: awkward strings, arrays, numbers, timestamps, NULLs, the change
feed JSON, and whole `Publisher._write_views` refreshes, compared in the same test against
the old row-by-row path on a real PostgreSQL."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import free_port
from engine_support import TIMES, new_db

from recommender.postgres import encoding
from recommender.postgres.encoding import _arrow_table, copy_rows, pg_type
from recommender.postgres.local import LocalPostgres
from recommender.postgres.publisher import VIEW_KEYS, Publisher


@pytest.fixture(autouse=True)
def bulk_always(monkeypatch) -> None:
    """The bulk path even for the few rows of some tests (the publisher sends fewer than
    _BULK_MIN_ROWS rows row by row)."""
    monkeypatch.setattr(encoding, "_BULK_MIN_ROWS", 1)


@pytest.fixture(params=[None, 7, 100_000], ids=["default-parts", "parts-of-7", "one-part"])
def chunk(request, monkeypatch) -> int:
    """Rows per COPY write: the default, small parts, one part for all rows."""
    if request.param is not None:
        monkeypatch.setattr(encoding, "_CHUNK_ROWS", request.param)
    return encoding._CHUNK_ROWS


@pytest.fixture
def conn(postgres):
    import psycopg

    with psycopg.connect(new_db(postgres.dsn)) as c:
        c.execute("SET TIME ZONE 'UTC'")
        yield c


STRINGS = [
    "", "plain", "tab\there", "new\nline", "cr\rx", "crlf\r\n", "back\\slash", "\\N", "\\.",
    "a\\tb", 'q"uote', "'single'", "comma,brace{}", "NULL", "null", " lead and trail ",
    "\b\v\f", "ünïcødé ✓ 🚀 中文", "\\", '"', "{", "}", ",", "\t", "\n", "end\\",
    "a\n\\.\nb", "\\.\n", "\n\\.", '""', '"a""b"', "\x01", "\x7f", "\u2028",
]  # fmt: skip
ARRAYS = [
    [], [None], [""], ["NULL"], ["null", "Null"], ["a,b", 'q"uote', "{brace}", "}", None, "",
    "back\\slash", "tab\t", "new\nline", " sp ", "\\N", 'x\\"y'], ["ünï", "✓"], ["x"] * 40,
    ['q"uote', 'x\\"y', "a,b", "{}", "", "NULL", "\\", '"', " ", "tab\t", "nl\n", "\\N"],
]  # fmt: skip
INTS = [0, -1, 1, 2**63 - 1, -(2**63), 12345678901]
FLOATS = [0.1, 1e300, -1e-300, -0.0, 0.0, float("inf"), float("-inf"), float("nan"), 5e-324,
          1 / 3, 2.0**53 + 1, 123456789.123456789, 1.0]  # fmt: skip
DECIMALS = [Decimal("1.50"), Decimal("-0.000001"), Decimal("1E+3"), Decimal("NaN"),
            Decimal("12345678901234567890.123"), Decimal("0"), Decimal("-0.0")]  # fmt: skip

COLUMNS = ["n", "s", "i", "f", "b", "ts", "day", "arr", "iarr", "num"]  # no "d", "v": _delete
TYPES = ["BIGINT", "VARCHAR", "BIGINT", "DOUBLE", "BOOLEAN", "TIMESTAMP", "DATE", "VARCHAR[]",
         "BIGINT[]", "DECIMAL(18,3)"]  # fmt: skip


def awkward_rows(n: int, nulls: bool = True) -> list[tuple[Any, ...]]:
    """Rows cycling through the awkward values (lists of different lengths, so they mix)."""

    def cycle(values: list[Any]) -> Any:
        return itertools.cycle(values + [None] if nulls else values)

    cols = [cycle(STRINGS), cycle(INTS), cycle(FLOATS), cycle([True, False]), cycle(TIMES),
            cycle([date(2024, 1, 2), date(1, 1, 1)]), cycle(ARRAYS),
            cycle([[1, 2**63 - 1, None, -5], [], [None]]), cycle(DECIMALS)]  # fmt: skip
    rows = [(k, *(next(c) for c in cols)) for k in range(n)]
    if nulls:
        rows.append((n, *([None] * (len(COLUMNS) - 1))))
    return rows


def make_table(conn: Any, name: str, columns: list[str], types: list[str]) -> None:
    cols = ", ".join(f"{c} {pg_type(t)}" for c, t in zip(columns, types, strict=True))
    conn.execute(f"CREATE TABLE {name} ({cols})")


def copy_old(conn: Any, name: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
    """The publisher's former path: one write_row per row."""
    with conn.cursor().copy(f"COPY {name} ({', '.join(columns)}) FROM STDIN") as cp:
        for row in rows:
            cp.write_row(row)


def copy_new(conn: Any, name: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
    copy_rows(conn, name, columns, rows)


def table_text(conn: Any, name: str, order: str = "n") -> list[str]:
    """Each row as PostgreSQL's text of it (exact: floats shortest round-trip, -0, NaN)."""
    return [r[0] for r in conn.execute(f"SELECT t::text FROM {name} t ORDER BY {order}")]


def compare_paths(conn: Any, rows: list[tuple[Any, ...]]) -> list[str]:
    make_table(conn, "old_t", COLUMNS, TYPES)
    make_table(conn, "new_t", COLUMNS, TYPES)
    copy_old(conn, "old_t", COLUMNS, rows)
    copy_new(conn, "new_t", COLUMNS, rows)
    old, new = table_text(conn, "old_t"), table_text(conn, "new_t")
    assert len(old) == len(rows)
    assert new == old
    return new


def test_awkward_values_bulk_equals_write_row(conn, chunk: int) -> None:
    rows = awkward_rows(600)
    assert _arrow_table(rows, len(COLUMNS)) is not None  # the bulk path, not the fallback
    assert conn.info.encoding == "utf-8"  # (CSV only then)
    compare_paths(conn, rows)
    # spot checks that the awkward values did arrive as themselves
    back = {r[0]: r for r in conn.execute("SELECT n, s, arr, f FROM new_t")}
    assert [back[k][1] for k in range(len(STRINGS))] == STRINGS
    assert [back[k][2] for k in range(len(ARRAYS))] == ARRAYS
    assert [repr(back[k][3]) for k in range(len(FLOATS))] == [repr(f) for f in FLOATS]
    assert back[len(rows) - 1][1:] == (None, None, None)


def test_no_nulls_and_single_column(conn) -> None:
    compare_paths(conn, awkward_rows(200, nulls=False))
    make_table(conn, "old_s", ["s"], ["VARCHAR"])
    make_table(conn, "new_s", ["s"], ["VARCHAR"])
    rows = [(s,) for s in STRINGS] + [(None,)]
    copy_old(conn, "old_s", ["s"], rows)
    copy_new(conn, "new_s", ["s"], rows)
    assert table_text(conn, "new_s", "s") == table_text(conn, "old_s", "s")


FLAT_COLUMNS = ["n", "s", "i", "f", "b", "ts", "tz", "day", "num", "big"]
FLAT_TYPES = ["BIGINT", "VARCHAR", "BIGINT", "DOUBLE", "BOOLEAN", "TIMESTAMP",
              "TIMESTAMP WITH TIME ZONE", "DATE", "DECIMAL(18,3)", "HUGEINT"]  # fmt: skip


def test_arrow_rows_from_duckdb_equal_write_row(conn, chunk: int) -> None:
    """A partial refresh's changes as the engine keeps them (ArrowRows of a DuckDB result)
    store what write_row stores of the same rows as DuckDB's fetchall gives them, and read
    back as those tuples; deletes by key with them remove the same rows."""
    import duckdb

    from recommender.engine.refresh import ArrowRows

    naive = [t for t in TIMES if t.tzinfo is None]
    aware = [t for t in TIMES if t.tzinfo is not None]
    numbers = [d for d in DECIMALS if d.is_finite() and abs(d) < 10**15]
    cols = [itertools.cycle(v + [None]) for v in (
        STRINGS, INTS, FLOATS, [True, False], naive, aware, [date(2024, 1, 2), date(1, 1, 1)],
        numbers, [0, -7, 2**62])]  # fmt: skip
    rows = [(k, *(next(c) for c in cols)) for k in range(300)]
    duck = duckdb.connect()
    duck.execute("SET TimeZone = 'UTC'")
    duck.execute("CREATE TABLE t (" + ", ".join(
        f"{c} {t}" for c, t in zip(FLAT_COLUMNS, FLAT_TYPES, strict=True)) + ")")  # fmt: skip
    duck.executemany(f"INSERT INTO t VALUES ({', '.join('?' * len(FLAT_COLUMNS))})", rows)
    fetched = duck.execute("SELECT * FROM t ORDER BY n").fetchall()
    arrow = ArrowRows(duck.sql("SELECT * FROM t ORDER BY n").to_arrow_table(), FLAT_TYPES)
    assert len(arrow) == len(fetched)  # (repr: NaN is not equal to itself)
    assert repr(list(arrow)) == repr(fetched) and repr(arrow[3:5]) == repr(fetched[3:5])
    assert type(arrow[2][-1]) is int  # HUGEINT as fetchall gives it
    arrow = ArrowRows(duck.sql("SELECT * FROM t ORDER BY n").to_arrow_table(), FLAT_TYPES)
    make_table(conn, "old_f", FLAT_COLUMNS, FLAT_TYPES)
    make_table(conn, "new_f", FLAT_COLUMNS, FLAT_TYPES)
    copy_old(conn, "old_f", FLAT_COLUMNS, fetched)
    copy_rows(conn, "new_f", FLAT_COLUMNS, arrow)
    assert arrow._rows is None  # written from the Arrow table, no tuple made
    assert table_text(conn, "new_f") == table_text(conn, "old_f")
    assert len(table_text(conn, "new_f")) == len(rows)
    # deletes by key from an Arrow table: the keyed publisher path
    pub = SimpleNamespace(conn=conn)
    gone = ArrowRows(duck.sql("SELECT * FROM t WHERE n % 3 = 0").to_arrow_table(), FLAT_TYPES)
    kept = [r for r in table_text(conn, "new_f") if int(r[1:].split(",")[0]) % 3]
    original = dict(VIEW_KEYS)
    VIEW_KEYS["new_f"] = ("n",)
    try:
        Publisher._delete(pub, "new_f", FLAT_COLUMNS, FLAT_TYPES, gone)  # type: ignore[arg-type]
    finally:
        VIEW_KEYS.clear()
        VIEW_KEYS.update(original)
    assert table_text(conn, "new_f") == kept and 0 < len(kept) < len(rows)


def test_unusual_values_fall_back(conn) -> None:
    """Values without a bulk form (a UUID, a nested list) go row by row, same result."""
    import uuid

    rows = awkward_rows(50)
    rows += [(1000, uuid.UUID(int=5), 1, 1.0, True, TIMES[0], None, ["x"], [[1, 2], [3, 4]], None),
             (1001, "x", 2, 2.0, False, None, None, None, [[None, 5]], None)]  # fmt: skip
    assert _arrow_table(rows, len(COLUMNS)) is None
    compare_paths(conn, rows)
    # mixed types in a column: text built here, still in bulk
    mixed = [(k, None, None, [1.5, 2][k % 2], None, None, None, None, None,
              [Decimal("2.5"), 2**70, 1.25][k % 3]) for k in range(9)]  # fmt: skip
    assert _arrow_table(mixed, len(COLUMNS)) is not None
    with conn.transaction():
        conn.execute("DROP TABLE old_t, new_t")
    compare_paths(conn, mixed)


def test_nul_is_refused_as_before(conn) -> None:
    import psycopg

    make_table(conn, "new_t", COLUMNS, TYPES)
    for row in [(1, "a\x00b", *[None] * 8), (2, None, *[None] * 5, ["a\x00b", "c"], None, None)]:
        with pytest.raises(psycopg.Error):  # noqa: PT012
            with conn.transaction():
                copy_new(conn, "new_t", COLUMNS, [row])


def feed_text(conn: Any, view: str, epoch: int, op: str) -> list[str]:
    """The change feed's rows of one view, epoch and op, each read back into the view's row
    type (jsonb_populate_record) and written as PostgreSQL's text of that row, sorted."""
    return sorted(r[0] for r in conn.execute(
        f"SELECT jsonb_populate_record(NULL::{view}, row)::text FROM flashrec_changes "
        "WHERE view = %s AND epoch = %s AND op = %s", (view, epoch, op)))  # fmt: skip


def rows_text(conn: Any, view: str, columns: list[str], rows: Sequence[tuple[Any, ...]]
              ) -> list[str]:  # fmt: skip
    """`rows` as PostgreSQL's text of them in a table like `view` (written by write_row),
    sorted; -0.0 as 0 (a JSON number has no negative zero)."""
    conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS expect_{view} (LIKE {view})")
    conn.execute(f"TRUNCATE expect_{view}")
    rows = [tuple(0.0 if type(v) is float and v == 0 else v for v in r) for r in rows]
    copy_old(conn, f"expect_{view}", columns, rows)
    return sorted(r[0] for r in conn.execute(f"SELECT t::text FROM expect_{view} t"))


@pytest.mark.parametrize("keyed", [False, True], ids=["whole-row", "keyed"])
@pytest.mark.parametrize("arrow", [False, True], ids=["tuples", "arrow"])
def test_change_feed_holds_the_rows_written(postgres, monkeypatch, chunk: int, arrow: bool,
                                            keyed: bool) -> None:  # fmt: skip
    """Each feed row is the JSON of a row the refresh inserted or deleted: read back into the
    view's type it equals that row, awkward values included (strings with tabs, quotes,
    backslashes and "},{", arrays, NaN and infinite floats, far timestamps, NULLs); rows
    given as tuples or as Arrow (the engine's flat views), deleted by key or by whole row."""
    import duckdb

    from recommender.engine.refresh import ArrowRows

    if keyed:
        monkeypatch.setitem(VIEW_KEYS, "awkward", ("n",))
    if arrow:  # the flat columns, through DuckDB as the engine hands them over
        columns, types = FLAT_COLUMNS, FLAT_TYPES
        duck = duckdb.connect()
        duck.execute("SET TimeZone = 'UTC'")
        duck.execute("CREATE TABLE t (" + ", ".join(
            f"{c} {t}" for c, t in zip(columns, types, strict=True)) + ")")  # fmt: skip
        keep = [0, 1, 2, 3, 4, 5, 5, 6]  # the awkward row's columns, ts again as tz
        duck.executemany(f"INSERT INTO t VALUES ({', '.join('?' * len(columns))})",
                         [(*(r[i] for i in keep), None, r[2]) for r in awkward_rows(300)])
        rows = duck.execute("SELECT * FROM t ORDER BY n").fetchall()

        def given(lo: int, hi: int) -> Any:
            return ArrowRows(duck.sql(f"SELECT * FROM t WHERE n >= {lo} AND n < {hi} "
                                      "ORDER BY n").to_arrow_table(), types)  # fmt: skip
    else:
        columns, types = COLUMNS, TYPES
        rows = awkward_rows(300)
        rows[7] = (7, 'x"},{"y', *rows[7][2:])

        def given(lo: int, hi: int) -> Any:
            return [r for r in rows if lo <= r[0] < hi]

    pub = Publisher(new_db(postgres.dsn), feed_views=("awkward",))
    try:
        pub.publish_views([result("awkward", columns, types, given(0, 200), [], initial=True)],
                          None, 1)  # fmt: skip
        pub.publish_views([result("awkward", columns, types, given(200, 10**6),
                                  given(0, 80))], None, 2)  # fmt: skip
        conn = pub.conn
        assert conn.execute("SELECT count(*) FROM flashrec_changes WHERE epoch = 1"
                            ).fetchone()[0] == 0  # the initial load is no change
        inserted = feed_text(conn, "awkward", 2, "insert")
        deleted = feed_text(conn, "awkward", 2, "delete")
        assert inserted == rows_text(conn, "awkward", columns, [r for r in rows if r[0] >= 200])
        assert deleted == rows_text(conn, "awkward", columns, [r for r in rows if r[0] < 80])
        assert len(deleted) == 80 and len(inserted) == len(rows) - 200
        import psycopg

        with psycopg.connect(pub.dsn) as other:  # each publish committed on its own
            counts = other.execute("SELECT epoch, count(*) FROM flashrec_changes GROUP BY 1"
                                   ).fetchall()  # fmt: skip
        assert counts == [(2, len(rows) - 200 + 80)]
        conn.commit()
    finally:
        pub.close()


@pytest.mark.parametrize("returns_old", [True, False], ids=["pg18-update", "delete-insert"])
@pytest.mark.parametrize("arrow", [False, True], ids=["tuples", "arrow"])
def test_followed_rows_changed_under_their_key(postgres, monkeypatch, arrow: bool,
                                               returns_old: bool) -> None:  # fmt: skip
    """Rows of a followed keyed view deleted and inserted again under the same key (a
    session after its next click): one UPDATE on PostgreSQL 18, a delete and an insert
    before it. Either way the table holds the new rows, and the feed holds the rows
    PostgreSQL had and the new ones. A row PostgreSQL lacks is inserted (feed: insert only)."""
    import duckdb

    from recommender.engine.refresh import ArrowRows

    monkeypatch.setitem(VIEW_KEYS, "awkward", ("n",))
    monkeypatch.setattr(Publisher, "_returns_old", lambda self: returns_old)
    base = awkward_rows(240)
    # key k's new row: the values of another row (nulls included), under the same key
    changed = {k: (k, *base[(k * 7 + 3) % 240][1:]) for k in range(50, 150)}
    if arrow:
        columns, types = FLAT_COLUMNS, FLAT_TYPES
        keep = [0, 1, 2, 3, 4, 5, 5, 6]
        duck = duckdb.connect()
        duck.execute("SET TimeZone = 'UTC'")
        duck.execute("CREATE TABLE t (" + ", ".join(
            f"{c} {t}" for c, t in zip(columns, types, strict=True)) + ")")  # fmt: skip
        duck.executemany(f"INSERT INTO t VALUES ({', '.join('?' * len(columns))})",
                         [(*(r[i] for i in keep), None, r[2]) for r in base])  # fmt: skip
        flat = duck.execute("SELECT * FROM t ORDER BY n").fetchall()  # as DuckDB gives them
        rows = {r[0]: r for r in flat[:200]}
        new = {k: (k, *flat[(k * 7 + 3) % 240][1:]) for k in changed}

        def given(given_rows: list[tuple[Any, ...]]) -> Any:
            duck.execute("DELETE FROM t")
            duck.executemany(f"INSERT INTO t VALUES ({', '.join('?' * len(columns))})",
                             given_rows)  # fmt: skip
            table = duck.sql("SELECT * FROM t ORDER BY n").to_arrow_table()
            return ArrowRows(table, types)
    else:
        columns, types = COLUMNS, TYPES
        rows = {r[0]: r for r in base[:200]}
        new = changed

        def given(given_rows: list[tuple[Any, ...]]) -> Any:
            return given_rows
    extra = [(k, *rows[k - 200][1:]) for k in range(200, 230)]  # new keys
    inserts = [new[k] for k in sorted(new)] + extra
    deletes = [rows[k] for k in range(20)] + [rows[k] for k in range(50, 150)]
    pub = Publisher(new_db(postgres.dsn), feed_views=("awkward",))
    try:
        pub.publish_views([result("awkward", columns, types, given(list(rows.values())), [],
                                  initial=True)], None, 1)  # fmt: skip
        pub.conn.execute("DELETE FROM awkward WHERE n = 60")  # gone by hand
        pub.conn.commit()
        with recording(pub) as statements:
            pub.publish_views([result("awkward", columns, types, given(inserts),
                                      given(deletes))], None, 2)  # fmt: skip
        conn = pub.conn
        updated = any(s.startswith("WITH changed AS (UPDATE awkward") for s in statements)
        assert updated == returns_old
        held = [r for r in deletes if r[0] != 60]
        assert feed_text(conn, "awkward", 2, "delete") == rows_text(conn, "awkward", columns,
                                                                    held)  # fmt: skip
        assert feed_text(conn, "awkward", 2, "insert") == rows_text(conn, "awkward", columns,
                                                                    inserts)  # fmt: skip
        expect = [rows[k] for k in range(20, 50)] + inserts + [rows[k] for k in range(150, 200)]
        held_now = conn.execute("SELECT jsonb_populate_record(NULL::awkward, to_jsonb(t))::text "
                                "FROM awkward t").fetchall()  # as the feed's JSON: -0 as 0
        assert sorted(r[0] for r in held_now) == rows_text(conn, "awkward", columns, expect)
        conn.commit()
    finally:
        pub.close()


class OldPublisher(Publisher):
    """Publisher with the former row-by-row `_write_views` and `_delete` whole-row path (its
    change feed is checked against the rows themselves)."""

    def _write_views(self, epoch: int, results: list[Any], now: datetime,
                     watermark: datetime | None) -> None:  # fmt: skip
        conn = self.conn
        for r in results:
            cols = ", ".join(r.columns)
            if r.deletes:
                self._delete(r.name, r.columns, r.types, r.deletes)
            if r.inserts:
                with conn.cursor().copy(f"COPY {r.name} ({cols}) FROM STDIN") as cp:
                    for row in r.inserts:
                        cp.write_row(row)
            self._status(r, epoch, now, watermark)

    def _delete(self, name: str, columns: list[str], types: list[str],
                rows: list[tuple[Any, ...]]) -> None:  # fmt: skip
        if any(k in columns for k in VIEW_KEYS.get(name, ())):
            return super()._delete(name, columns, types, rows)
        conn = self.conn
        conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS _del_{name} "
                     f"(LIKE {name}) ON COMMIT DELETE ROWS")  # fmt: skip
        with conn.cursor().copy(f"COPY _del_{name} ({', '.join(columns)}) FROM STDIN") as cp:
            for row in rows:
                cp.write_row(row)
        conn.execute(f"DELETE FROM {name} v USING _del_{name} d WHERE md5(v::text) = md5(d::text)")


@contextmanager
def recording(pub: Publisher) -> Iterator[list[str]]:
    """The statements `pub` executes inside the block."""
    statements: list[str] = []
    execute = pub.conn.execute

    def recorded(query: Any, *args: Any, **kwargs: Any) -> Any:
        statements.append(str(query))
        return execute(query, *args, **kwargs)

    pub.conn.execute = recorded
    try:
        yield statements
    finally:
        pub.conn.execute = execute


def result(name: str, columns: list[str], types: list[str], inserts: list[tuple[Any, ...]],
           deletes: list[tuple[Any, ...]], initial: bool = False) -> SimpleNamespace:  # fmt: skip
    return SimpleNamespace(name=name, columns=columns, types=types, inserts=inserts,
                           deletes=deletes, row_count=len(inserts), refresh_ms=1.5,
                           initial=initial)  # fmt: skip


def test_publisher_refreshes_equal_old_path(postgres, chunk: int) -> None:
    """Three refreshes of a keyed view (vmis_history), a feed view, a view matched on the
    whole row and a keyed view without feed (co_view_pairs: rows changed under their key go
    as one UPDATE), old publisher vs new one: every table ends up the same."""
    vmis_cols = ["session_id", "items", "last_ts"]
    vmis_types = ["VARCHAR", "VARCHAR[]", "TIMESTAMP"]
    misc_types = [t for t in TYPES if t != "DECIMAL(18,3)"]
    misc_cols = COLUMNS[: len(misc_types)]
    rows = awkward_rows(240)
    vmis = [(f"s{k}\t{STRINGS[k % len(STRINGS)]}", ARRAYS[k % len(ARRAYS)], TIMES[k % 5])
            for k in range(200)]  # fmt: skip
    misc = [r[: len(misc_cols)] for r in rows]
    pair_cols = ["product_a", "product_a_name", "product_b", "product_b_name", "co_view_count"]
    pair_types = ["VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "BIGINT"]
    pairs = [(f"a{k % 7}", STRINGS[k % len(STRINGS)], f"b{k}", f"B {k}", 3 + k % 5)
             for k in range(120)]  # fmt: skip
    counted = [(a, an, b, bn, n + 1) for a, an, b, bn, n in pairs]  # counts moved
    renamed = [(a, f"{an} new", b, bn, n) for a, an, b, bn, n in counted]  # names too
    refreshes = [
        [result("vmis_history", vmis_cols, vmis_types, vmis[:150], [], initial=True),
         result("misc_view", misc_cols, misc_types, misc[:150], [], initial=True),
         result("co_view_pairs", pair_cols, pair_types, pairs[:100], [], initial=True)],
        [result("vmis_history", vmis_cols, vmis_types, vmis[150:], vmis[:40]),
         result("misc_view", misc_cols, misc_types, misc[150:], misc[:60]),
         result("co_view_pairs", pair_cols, pair_types, counted[:30] + pairs[100:],
                pairs[:40])],
        [result("vmis_history", vmis_cols, vmis_types, vmis[:10], vmis[150:170]),
         result("misc_view", misc_cols, misc_types, misc[:5], misc[100:200]),
         result("co_view_pairs", pair_cols, pair_types, renamed[:20] + pairs[30:35],
                counted[:25] + pairs[110:])],
    ]  # fmt: skip
    dumps = []
    for cls in (OldPublisher, Publisher):
        pub = cls(new_db(postgres.dsn), feed_views=("vmis_history", "misc_view"))
        try:
            for epoch, results in enumerate(refreshes, 1):
                pub.publish_views(results, datetime(2024, 3, 1, 12, epoch), epoch)
            conn = pub.conn
            dumps.append({
                "pairs": sorted(r[0] for r in conn.execute("SELECT t::text FROM co_view_pairs t")),
                "vmis": sorted(r[0] for r in conn.execute("SELECT t::text FROM vmis_history t")),
                "misc": sorted(r[0] for r in conn.execute("SELECT t::text FROM misc_view t")),
                "status": conn.execute("SELECT view, epoch, watermark, row_count, refresh_ms, "
                                       "inserted, deleted FROM flashrec_status "
                                       "ORDER BY view").fetchall(),
            })  # fmt: skip
            if cls is Publisher:  # its feed: the rows each refresh inserted and deleted
                fed = [[r for r in rs if r.name != "co_view_pairs"] for rs in refreshes]
                for epoch, results in enumerate(fed[1:], 2):
                    for r in results:
                        for op, rows in (("insert", r.inserts), ("delete", r.deletes)):
                            assert feed_text(conn, r.name, epoch, op) == rows_text(
                                conn, r.name, r.columns, rows)  # fmt: skip
                changes = sum(len(r.inserts) + len(r.deletes) for rs in fed[1:] for r in rs)
                count = conn.execute("SELECT count(*) FROM flashrec_changes").fetchone()[0]
                assert count == changes
            conn.commit()
        finally:
            pub.close()
    old, new = dumps
    assert len(old["vmis"]) == 150 + 50 - 40 + 10 - 20
    assert len(old["pairs"]) == 100 - 40 + 30 + 20 - 25 - 10 + 20 + 5
    assert old["misc"] and old["status"]
    assert new == old


def test_feed_tables_are_typed_and_followed(postgres) -> None:
    """Each followed view's changes land in its own table, typed like the view; the view
    flashrec_changes shows every feed table's rows as JSON; a second publisher (the
    background tier's) keeps that view whole; a PgSubscription opened before the engine
    made the table starts at epoch 0 and reads the rows with PostgreSQL's types."""
    import psycopg

    from recommender.changefeed import PgSubscription

    dsn = new_db(postgres.dsn)
    cols, types = ["session_id", "items", "last_ts"], ["VARCHAR", "VARCHAR[]", "TIMESTAMP"]
    at = datetime(2024, 3, 1, 12, 0, 0, 123456)
    rows = [(f"s{k}", ["p1", f"p{k}"], at + timedelta(seconds=k)) for k in range(5)]
    pub = Publisher(dsn, feed_views=("vmis_history", "second"))
    early = PgSubscription(dsn, "vmis_history")
    try:
        assert early.poll(0.05) == [] and early.last_epoch == 0
        pub.publish_views([result("vmis_history", cols, types, rows[:3], [], initial=True),
                           result("unfollowed", cols, types, rows[:3], [], initial=True)],
                          None, 1)  # fmt: skip
        pub.publish_views([result("vmis_history", cols, types, rows[3:], rows[:1]),
                           result("second", ["n"], ["BIGINT"], [(7,)], []),
                           result("unfollowed", cols, types, rows[3:], rows[:1])],
                          None, 2)  # fmt: skip
        Publisher(dsn, feed_views=()).close()  # starts after the feed tables exist
        (batch,) = early.poll(1.0)
        assert (batch.epoch, batch.columns) == (2, cols)
        assert batch.inserts == [[s, i, t.replace(tzinfo=UTC)] for s, i, t in rows[3:]]
        assert batch.deletes == [[s, i, t.replace(tzinfo=UTC)] for s, i, t in rows[:1]]
        assert isinstance(batch.committed_at, float)
        with psycopg.connect(dsn) as conn:
            tables = {t for (t,) in conn.execute(
                "SELECT tablename FROM pg_tables WHERE tablename LIKE 'flashrec\\_changes\\_%'")}
            assert tables == {"flashrec_changes_vmis_history", "flashrec_changes_second"}
            shown = conn.execute("SELECT view, epoch, op, row FROM flashrec_changes "
                                 "ORDER BY view, op, row->>'session_id'").fetchall()  # fmt: skip
        assert shown == [("second", 2, "insert", {"n": 7})] + [
            ("vmis_history", 2, op, {"session_id": s, "items": i,
                                     "last_ts": t.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")})
            for op, (s, i, t) in [("delete", rows[0]), ("insert", rows[3]), ("insert", rows[4])]
        ]  # fmt: skip
        assert PgSubscription(dsn, "vmis_history").last_epoch == 2  # starts after the newest
    finally:
        early.close()
        pub.close()


def test_old_change_table_becomes_a_view(postgres) -> None:
    """A database of an earlier version holds flashrec_changes as one JSON table: the
    publisher replaces it by the view over the typed feed tables."""
    import psycopg

    dsn = new_db(postgres.dsn)
    with psycopg.connect(dsn) as conn:
        conn.execute("CREATE TABLE flashrec_changes (id bigserial PRIMARY KEY, view text, "
                     "epoch bigint, op text, row jsonb, committed_at timestamptz)")  # fmt: skip
        conn.execute("INSERT INTO flashrec_changes (view, epoch, op, row) "
                     "VALUES ('vmis_history', 9, 'insert', '{}')")  # fmt: skip
    pub = Publisher(dsn)
    try:
        kind = pub.conn.execute("SELECT relkind FROM pg_class "
                                "WHERE oid = 'flashrec_changes'::regclass").fetchone()  # fmt: skip
        assert kind == ("v",)
        assert pub.conn.execute("SELECT count(*) FROM flashrec_changes").fetchone() == (0,)
        pub.conn.commit()
    finally:
        pub.close()


def test_feed_refuses_a_view_column_named_like_its_own(postgres) -> None:
    pub = Publisher(new_db(postgres.dsn), feed_views=("clashing",))
    try:
        with pytest.raises(ValueError, match="epoch"):
            pub.ensure_view("clashing", ["epoch", "n"], ["BIGINT", "BIGINT"])
    finally:
        pub.close()


def test_feed_keeps_the_last_epochs(postgres) -> None:
    """Each publish trims every feed table to its last `change_epochs` epochs."""
    pub = Publisher(new_db(postgres.dsn), change_epochs=2, feed_views=("a", "b"))
    try:
        for epoch in range(1, 6):
            pub.publish(epoch, [result(v, ["n"], ["BIGINT"], [(epoch,)], []) for v in "ab"],
                        None, epoch, None, None)  # fmt: skip
        kept = pub.conn.execute("SELECT view, array_agg(epoch ORDER BY epoch) "
                                "FROM flashrec_changes GROUP BY 1 ORDER BY 1").fetchall()
        assert kept == [("a", [4, 5]), ("b", [4, 5])]
        pub.conn.commit()
    finally:
        pub.close()


def test_update_of_a_row_postgresql_lacks_inserts_it(postgres, caplog) -> None:
    """A row changed under its key is one UPDATE; where PostgreSQL lacks the row (someone
    deleted it by hand), the new row is inserted and a warning says so."""
    cols = ["product_a", "product_a_name", "product_b", "product_b_name", "co_view_count"]
    types = ["VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "BIGINT"]
    old = [("a", "A", f"b{k}", f"B{k}", 3) for k in range(4)]
    new = [(a, an, b, bn, n + 2) for a, an, b, bn, n in old]
    pub = Publisher(new_db(postgres.dsn), feed_views=())
    try:
        pub.publish_views([result("co_view_pairs", cols, types, old, [], initial=True)], None, 1)
        pub.conn.execute("DELETE FROM co_view_pairs WHERE product_b = 'b1'")
        pub.conn.commit()
        with caplog.at_level("WARNING", logger="recommender.postgres.publisher"):
            pub.publish_views([result("co_view_pairs", cols, types, new, old)], None, 2)
        held = pub.conn.execute("SELECT * FROM co_view_pairs ORDER BY product_b").fetchall()
        pub.conn.commit()
        assert held == new
        assert "1 of 4 updated rows were missing" in caplog.text
    finally:
        pub.close()


def test_local_postgres_takes_its_buffer_size(tmp_path) -> None:
    """shared_buffers reaches the server; a size PostgreSQL would not take is refused
    before anything starts."""
    import psycopg

    with pytest.raises(ValueError, match="128MB or 1GB"):
        LocalPostgres(tmp_path / "bad", free_port(), shared_buffers="1 GB")
    assert not (tmp_path / "bad").exists()
    with LocalPostgres(tmp_path / "pg", free_port(), shared_buffers="48MB") as pg:
        with psycopg.connect(pg.dsn) as conn:
            assert conn.execute("SHOW shared_buffers").fetchone() == ("48MB",)


def test_arrow_rows_split_by_several_key_columns() -> None:
    """Inserted rows whose key (two columns) was also deleted are updates. Keys that would
    join alike as plain text are not the same key; a NULL key part matches nothing."""
    import pyarrow as pa

    from recommender.engine.refresh import ArrowRows
    from recommender.postgres.publisher import _split_arrow

    def rows(*given: tuple[Any, ...]) -> ArrowRows:
        table = pa.table({c: [r[i] for r in given] for i, c in enumerate("abn")})
        return ArrowRows(table, ["VARCHAR", "VARCHAR", "BIGINT"])

    inserts = rows(("u1", "7", 1), ("x:", "y", 2), ("u2", None, 3), ("u3", "1", 4))
    deletes = rows(("u1", "7", 0), ("x", ":y", 0), ("u2", None, 0), ("u3", "2", 0))
    updates, left_inserts, left_deletes = _split_arrow([0, 1], inserts, deletes)
    assert updates.rows() == [("u1", "7", 1)]
    assert left_inserts.rows() == [("x:", "y", 2), ("u2", None, 3), ("u3", "1", 4)]
    assert left_deletes.rows() == [("x", ":y", 0), ("u2", None, 0), ("u3", "2", 0)]


def test_rows_under_a_key_of_several_columns_are_updated(postgres, monkeypatch) -> None:
    """A view keyed by two columns, without feed, given as Arrow (the customer views): rows
    changed under their key go as one UPDATE, the others are inserted and deleted."""
    import pyarrow as pa

    from recommender.engine.refresh import ArrowRows

    monkeypatch.setitem(VIEW_KEYS, "per_user", ("user_id", "window_days"))
    columns, types = ["user_id", "window_days", "visits"], ["VARCHAR", "INTEGER", "BIGINT"]

    def rows(given: list[tuple[Any, ...]]) -> ArrowRows:
        table = pa.table({c: [r[i] for r in given] for i, c in enumerate(columns)},
                         schema=pa.schema([("user_id", pa.string()), ("window_days", pa.int32()),
                                           ("visits", pa.int64())]))  # fmt: skip
        return ArrowRows(table, types)

    old = [(f"u{i}", days, i) for i in range(100) for days in (1, 7)]
    changed = [(f"u{i}", 7, i + 1000) for i in range(0, 100, 3)]
    gone = [r for r in old if r[0] in ("u1", "u2") and r[1] == 1]
    added = [("u200", 1, 5), ("u200", 7, 5)]
    deleted = [r for r in old if r[1] == 7 and int(r[0][1:]) % 3 == 0] + gone
    pub = Publisher(new_db(postgres.dsn), feed_views=())
    try:
        pub.publish_views([result("per_user", columns, types, rows(old), [], initial=True)],
                          None, 1)  # fmt: skip
        with recording(pub) as statements:
            pub.publish_views([result("per_user", columns, types, rows(changed + added),
                                      rows(deleted))], None, 2)  # fmt: skip
        assert any(s.startswith("UPDATE per_user") for s in statements)
        expect = sorted(set(old) - set(deleted) | set(changed) | set(added))
        assert sorted(pub.conn.execute("SELECT * FROM per_user").fetchall()) == expect
        pub.conn.commit()
    finally:
        pub.close()
