"""Helpers for the engine tests: Kafka-like messages, event sets, PostgreSQL table reads."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from recommender.events import Rejected, validate_event


class Msg:
    """Stands in for a confluent_kafka.Message."""

    def __init__(self, value: bytes | None, offset: int, partition: int = 0,
                 topic: str = "clickstream") -> None:  # fmt: skip
        self._value, self._offset, self._partition, self._topic = value, offset, partition, topic

    def error(self) -> None:
        return None

    def value(self) -> bytes | None:
        return self._value

    def offset(self) -> int:
        return self._offset

    def partition(self) -> int:
        return self._partition

    def topic(self) -> str:
        return self._topic


def raw(item: dict[str, Any] | bytes) -> bytes:
    return item if isinstance(item, bytes) else orjson.dumps(item)


def valid_events(items: list[dict[str, Any] | bytes]) -> list[dict[str, Any]]:
    """The events the engine must accept: valid ones, first of each event_id."""
    out, seen = [], set()
    for item in items:
        checked = validate_event(raw(item))
        if isinstance(checked, Rejected) or checked["event_id"] in seen:
            continue
        seen.add(checked["event_id"])
        out.append(checked)
    return out


def naive(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is not None:
        from datetime import UTC

        return value.astimezone(UTC).replace(tzinfo=None)
    if isinstance(value, list):
        return [naive(v) for v in value]
    return value


def pg_rows(dsn: str, view: str) -> list[tuple[Any, ...]]:
    """A view's table in PostgreSQL, sorted like `evaluate` sorts."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        rows = conn.execute(f"SELECT * FROM {view}").fetchall()
    return sorted((tuple(naive(v) for v in r) for r in rows), key=repr)


def pg_meta(dsn: str) -> dict[str, str]:
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=3) as conn:
            return dict(conn.execute("SELECT key, value FROM flashrec_meta").fetchall())
    except psycopg.Error:
        return {}
