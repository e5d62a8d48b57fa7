"""Helpers for the engine tests: Kafka-like messages, event sets, PostgreSQL table reads."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson

from recommender.events import Rejected, format_ts, validate_event
from recommender.postgres.encoding import naive


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


# timestamps as edge cases for the COPY round trips (tests/test_engine_seed.py,
# tests/test_postgres_copy.py): microseconds, the extreme years, a leap day, time zones
TIMES = [
    datetime(2024, 3, 1, 12, 0, 0, 1), datetime(2024, 3, 1, 12, 0, 0), datetime(1, 1, 1),
    datetime(9999, 12, 31, 23, 59, 59, 999999), datetime(2000, 2, 29, 0, 0, 0, 500000),
    datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=UTC),
    datetime(2024, 3, 1, 12, 0, 0, 654321, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
]  # fmt: skip


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


def click(i: int, session: str, p: int, t: datetime, action: str = "view", mark: str = "",
          category: str = "c") -> dict[str, Any]:
    """Event `e{i}` of `session` on product `p{p}` (named "name {p}{mark}") at `t`."""
    return {
        "event_id": f"e{i}", "session_id": session, "user_id": "u", "product_id": f"p{p}",
        "product_name": f"name {p}{mark}", "category": category, "action": action,
        "ts": format_ts(t), "device": None, "price": None,
    }  # fmt: skip


def bot_mix(n: int, seed: int, t0: datetime, *, spacing: float, late: float, products: int,
            sessions: int, actions: list[str], period: int, burst: int, burst_gap: float,
            comeback: timedelta, categories: int = 1) -> list[dict[str, Any]]:
    """`n` human clicks `spacing` s apart (each up to `late` s early: late arrivals), and every
    `period` clicks a bot burst (`burst` clicks `burst_gap` s apart) and a session of six
    clicks 0.5 s apart (a bot) that clicks again `comeback` later (human again)."""
    rng = random.Random(seed)

    def category(p: int) -> str:
        return f"c{p % categories}" if categories > 1 else "c"

    out = []
    for i in range(n):
        t = t0 + timedelta(seconds=i * spacing + rng.uniform(-late, 0))
        p = rng.randrange(products)
        mark = "!" if rng.random() < 0.05 else ""
        out.append(click(i, f"s{rng.randrange(sessions)}", p, t, rng.choice(actions), mark,
                         category(p)))  # fmt: skip
        if i % period == period // 2:
            for k in range(burst):
                q = rng.randrange(products)
                out.append(click(n + i * 100 + k, f"bot{i}", q,
                                 t + timedelta(seconds=burst_gap * k), category=category(q)))
            for k in range(6):
                out.append(click(n + i * 100 + 50 + k, f"flip{i}", k,
                                 t + timedelta(seconds=0.5 * k), category=category(k)))
        if i % period == period - period // 10:  # a fast session comes back, slowly
            j = i - period + period // 10 + period // 2
            out.append(click(n + j * 100 + 60, f"flip{j}", 8, t + comeback, "purchase",
                             category=category(8)))  # fmt: skip
    return out


def new_db(server_dsn: str) -> str:
    """A fresh database on the PostgreSQL server of `server_dsn`; returns its DSN."""
    import uuid

    import psycopg

    name = f"t{uuid.uuid4().hex}"  # unique: a free port number repeated within one CI run
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server_dsn.rsplit("/", 1)[0] + f"/{name}"


def fed_in_steps(store: Any, events: list[dict[str, Any]], rng: random.Random, start: datetime,
                 until: datetime, *, most: int, hours: list[float], back_at: int
                 ) -> Iterator[tuple[int, datetime]]:  # fmt: skip
    """Store `events` into `store` (a StateStore) in random batches of 0 to `most`, the
    clock moving past the newest stored event by one of `hours` at each step (and back two
    days at step `back_at`); yields (step, clock) until every event is stored and the clock
    is at `until` or later."""
    now, stored, step = start, 0, 0
    while stored < len(events) or now < until:
        batch = rng.randint(0, most)
        store.apply(events[stored : stored + batch], {})
        stored += batch
        newest = store.max_event_time() or start
        now = max(now, newest) + timedelta(hours=rng.choice(hours))
        if step == back_at:
            now -= timedelta(days=2)  # the clock goes back (events re-enter the horizon)
        yield step, now
        step += 1
