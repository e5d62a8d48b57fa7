"""One event schema: the fields of recommender/clickstream.schema.json are the columns of
sql/010_clickstream.sql, of the engine's event store and of PostgreSQL's raw clickstream,
all taken from recommender/events.py."""

from __future__ import annotations

from recommender import events, sqlfiles
from recommender.engine.store import StateStore, events_table
from recommender.postgres.publisher import RAW_COLUMNS

NAMES = ("event_id", "session_id", "user_id", "product_id", "product_name", "category",
         "action", "ts", "device", "price")  # fmt: skip


def test_columns_are_the_schema_fields_in_order() -> None:
    assert events.COLUMNS == tuple(events.schema()["properties"]) == NAMES
    assert set(events.schema()["required"]) <= set(events.COLUMNS)
    for database in ("duckdb", "postgres", "risingwave"):
        assert tuple(n for n, _ in events.column_types(database)) == events.COLUMNS
    assert dict(events.column_types())["ts"] == "TIMESTAMP"  # its format: date-time
    assert dict(events.column_types("postgres"))["price"] == "double precision"


def test_sql_clickstream_table_declares_the_schema_fields() -> None:
    table = sqlfiles.clickstream_table()
    assert [(c, t.upper()) for c, t in table.columns] == list(events.column_types("risingwave"))
    assert sqlfiles.clickstream_problems() == []


def test_a_clickstream_table_with_other_columns_is_a_problem() -> None:
    old = sqlfiles.load()[0].sql
    for changed in (old.replace("    price DOUBLE PRECISION,\n", ""),
                    old.replace("price DOUBLE PRECISION", "price VARCHAR"),
                    old.replace("    device VARCHAR,\n    price", "    price")):  # fmt: skip
        assert changed != old
        objects = [sqlfiles.check_statement("010.sql", changed)] + sqlfiles.views()
        assert any("columns" in p for p in sqlfiles.clickstream_problems(objects))


def test_the_store_and_postgres_tables_have_the_schema_fields() -> None:
    store = StateStore(None)
    try:
        stored = store.con.execute("SELECT * FROM flashrec_events LIMIT 0").description
        assert [(d[0], str(d[1])) for d in stored] == [("seq", "BIGINT"),
                                                       *events.column_types()]  # fmt: skip
        read = store.con.execute("SELECT * FROM clickstream LIMIT 0").description
        assert tuple(d[0] for d in read) == events.COLUMNS
    finally:
        store.close()
    table = events_table([{"event_id": "e", "session_id": "s", "user_id": "u",
                           "product_id": "p", "product_name": "n", "category": "c",
                           "action": "view", "ts": "2024-03-15T14:01:12.000Z"}], 1)  # fmt: skip
    assert tuple(table.column_names) == ("seq", *events.COLUMNS)
    assert table.column("device").to_pylist() == [None]
    assert RAW_COLUMNS == events.column_types("postgres")
