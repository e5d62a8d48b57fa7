"""The RisingWave follower recovers: a cursor whose FETCH fails, a frontend that restarts, a
cursor past the subscription's retention. Each time the index ends equal to the view, and the
sync's state says what happened.

The fake RisingWave answers the statements the follower sends the way v3.0.3 does
(src/frontend/src/handler/declare_cursor.rs, src/frontend/src/session/cursor_manager.rs):
`SINCE n` starts at rw_timestamp n included and is refused below now - retention; `FULL`
returns the view's rows (op Insert, rw_timestamp NULL) before the changes; cursors live in
their connection's session.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from conftest import wait_until
from serving_support import HISTORY, NOW

from recommender.serving.index_sync import IndexSync, epoch_seconds
from recommender.serving.live_index import LiveIndex, Params
from recommender.serving.runtime import make_index

PRODUCTS = [f"p{i}" for i in range(1, 10)]
COLUMNS = ("session_id", "items", "last_ts")
RETENTION_MS = 3_600_000
Row = tuple[str, list[str], datetime]


class _Col:
    def __init__(self, name: str) -> None:
        self.name = name


class _Result:
    def __init__(self, rows: list[tuple], names: Iterable[str]) -> None:
        self.rows = rows
        self.description = [_Col(n) for n in names]

    def fetchall(self) -> list[tuple]:
        return self.rows

    def __iter__(self):
        return iter(self.rows)


class _Cursor:
    def __init__(self, next_seq: int, snapshot: list[Row]) -> None:
        self.next_seq = next_seq
        self.snapshot = snapshot
        self.broken: str | None = None  # the error every FETCH gives


class FakeRisingWave:
    """vmis_history with its subscription: current rows, a change log of (rw_timestamp, op,
    row), a retention, and connections that can break."""

    def __init__(self, rows: Iterable[Row]) -> None:
        self.lock = threading.RLock()
        self.rows: dict[str, Row] = {r[0]: (r[0], list(r[1]), r[2]) for r in rows}
        self.log: list[tuple[int, int, str, Row]] = []  # (seq, rw_timestamp, op, row)
        self.clock_ms = 1_700_000_000_000
        self.seq = 0  # the next change's sequence number
        self.refuse = 0  # connects to refuse
        self.connections: list[FakeConnection] = []
        self.statements: list[str] = []
        self.on_connect: Callable[[], None] = lambda: None

    # --- what happens on the server ----------------------------------------------------------
    def change(self, upsert: Iterable[Row] = (), delete: Iterable[str] = (), logged=True) -> None:
        """One epoch: sessions set or removed (logged=False: the log no longer has it)."""
        with self.lock:
            self.clock_ms += 1000
            entries: list[tuple[str, Row]] = []
            for session in delete:
                entries.append(("Delete", self.rows.pop(session)))
            for row in upsert:
                old = self.rows.get(row[0])
                if old is not None:
                    entries.append(("UpdateDelete", old))
                entries.append(("UpdateInsert" if old else "Insert", row))
                self.rows[row[0]] = row
            if logged:
                for op, row in entries:
                    self.log.append((self.seq, self.clock_ms, op, row))
                    self.seq += 1

    @property
    def newest_rw_timestamp(self) -> int:
        return self.log[-1][1]

    def invalidate_cursors(self) -> None:
        """Every open cursor fails each FETCH from now on (RisingWave's invalid cursor)."""
        with self.lock:
            for conn in self.connections:
                for cursor in conn.cursors.values():
                    cursor.broken = (
                        "Cursor is in invalid state. Please close and re-create the cursor."
                    )

    def restart(self, refuse: int) -> None:
        """The frontend restarts: sessions and cursors are gone, `refuse` connects fail."""
        with self.lock:
            for conn in self.connections:
                conn.dead = True
            self.refuse = refuse

    def pass_retention(self) -> None:
        """More than the retention goes by: the log is recycled, cursors are past their life."""
        with self.lock:
            self.clock_ms += RETENTION_MS + 1000
            self.log = [e for e in self.log if e[1] >= self.clock_ms - RETENTION_MS]
            for conn in self.connections:
                for cursor in conn.cursors.values():
                    cursor.broken = (
                        "The cursor has exceeded its maximum lifetime, please recreate it "
                        "(close then declare cursor)."
                    )

    def connect(self, *_args: Any, **_kwargs: Any) -> FakeConnection:
        self.on_connect()
        with self.lock:
            if self.refuse > 0:
                self.refuse -= 1
                raise psycopg.OperationalError("connection refused: is the frontend up?")
            conn = FakeConnection(self)
            self.connections.append(conn)
            return conn


class FakeConnection:
    DECLARE = re.compile(
        r"DECLARE (\w+) SUBSCRIPTION CURSOR FOR (\w+) (FULL|SINCE now\(\)|SINCE (\d+))$"
    )
    FETCH = re.compile(r"FETCH (\d+) FROM (\w+) WITH \(timeout = '\d+s'\)$")

    def __init__(self, rw: FakeRisingWave) -> None:
        self.rw = rw
        self.cursors: dict[str, _Cursor] = {}
        self.dead = False
        self.closed = False

    def __enter__(self) -> FakeConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.closed = True

    def execute(self, sql: str, *_params: Any) -> _Result:
        rw = self.rw
        with rw.lock:
            rw.statements.append(sql)
            if self.dead:
                raise psycopg.OperationalError("server closed the connection unexpectedly")
            if sql == "SELECT * FROM vmis_history":
                return _Result(list(rw.rows.values()), COLUMNS)
            if m := self.DECLARE.match(sql):
                self.cursors[m.group(1)] = self._declare(m.group(3), m.group(4))
                return _Result([], ())
            if m := self.FETCH.match(sql):
                rows = self._fetch(self.cursors[m.group(2)], int(m.group(1)))
            elif m := re.match(r"CLOSE (\w+)$", sql):
                self.cursors.pop(m.group(1))
                return _Result([], ())
            else:
                raise psycopg.ProgrammingError(f"the fake does not know {sql!r}")
        if not rows:
            time.sleep(0.005)  # a FETCH with a timeout waits for a change
        return _Result(rows, (*COLUMNS, "op", "rw_timestamp"))

    def _declare(self, start: str, since: str | None) -> _Cursor:
        rw = self.rw
        if since is None:  # now() or FULL: the changes after the current ones
            snapshot = list(rw.rows.values()) if start == "FULL" else []
            return _Cursor(rw.seq, snapshot)
        if int(since) < rw.clock_ms - RETENTION_MS:
            raise psycopg.errors.InternalError(
                "Catalog error: rw_timestamp is too small, need to be large than the current "
                "unix_millis - subscription's retention time"
            )
        later = [seq for seq, ts, _op, _row in rw.log if ts >= int(since)]
        return _Cursor(later[0] if later else rw.seq, [])

    def _fetch(self, cursor: _Cursor, count: int) -> list[tuple]:
        if cursor.broken:
            raise psycopg.errors.InternalError(cursor.broken)
        out: list[tuple] = []
        while cursor.snapshot and len(out) < count:
            out.append((*cursor.snapshot.pop(0), "Insert", None))
        for seq, ts, op, row in self.rw.log:
            if seq >= cursor.next_seq and len(out) < count:
                out.append((*row, op, ts))
                cursor.next_seq = seq + 1
        return out


def _answers(index: LiveIndex) -> dict[tuple[str, ...], list[tuple[str, float]]]:
    """Every item's scores for 1- and 2-click sessions (sorted: ties may come in any order)."""
    sessions = [(a,) for a in PRODUCTS] + [(a, b) for a in PRODUCTS for b in PRODUCTS if a != b]
    return {s: sorted((i, round(x, 9)) for i, x in index.recommend(list(s))) for s in sessions}


def _same(index: LiveIndex, rw: FakeRisingWave) -> bool:
    with rw.lock:
        rows = [(s, items, epoch_seconds(ts)) for s, items, ts in rw.rows.values()]
    rebuilt = LiveIndex()
    rebuilt.build(rows)
    return index.n_sessions == len(rows) and _answers(index) == _answers(rebuilt)


@contextmanager
def _following(monkeypatch: pytest.MonkeyPatch
               ) -> Iterator[tuple[FakeRisingWave, LiveIndex, IndexSync]]:  # fmt: skip
    """What `flashrec serve --source risingwave` and `flashrec udf-server` start, following
    a RisingWave that holds HISTORY; stopped on the way out."""
    rw = FakeRisingWave(HISTORY)
    monkeypatch.setattr(psycopg, "connect", rw.connect)
    index, sync = make_index(Params(), source="risingwave", dsn="postgresql://root@rw:4566/dev")
    assert sync is not None
    sync.backoff_s = (0.01, 0.05)  # short waits for the test
    sync.start()
    try:
        _recovered(rw, index, sync)
        yield rw, index, sync
    finally:
        sync.stop()


def _applied(rw: FakeRisingWave, index: LiveIndex, upsert: tuple[str, list[str], datetime]
             ) -> int:  # fmt: skip
    """Change one session and wait for the index to hold it; the newest rw_timestamp then."""
    rw.change(upsert=[upsert])
    wait_until(lambda: _same(index, rw))
    return rw.newest_rw_timestamp


def _recovered(rw: FakeRisingWave, index: LiveIndex, sync: IndexSync) -> list[str]:
    """Wait until the follower follows again and the index equals RisingWave; the cursors
    it declared so far."""
    wait_until(lambda: sync.state == "following" and _same(index, rw))
    return [s for s in rw.statements if s.startswith("DECLARE")]


def _at(minutes: int) -> datetime:
    return NOW + timedelta(minutes=minutes)


def test_a_cursor_whose_fetch_fails_is_declared_again_at_the_last_rw_timestamp(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with _following(monkeypatch) as (rw, index, sync):
        applied = _applied(rw, index, ("h6", ["p4", "p7"], _at(1)))
        rw.invalidate_cursors()
        rw.change(upsert=[("h2", ["p1", "p2", "p7"], _at(2))], delete=["h3"])
        declared = _recovered(rw, index, sync)
        assert declared[0].endswith(" FULL") and declared[-1].endswith(f" SINCE {applied}")
        assert "CLOSE" in " ".join(rw.statements)  # the broken cursor was closed
        status = sync.status()
        assert status["recoveries"] == 1 and status["resnapshots"] == 0
        assert "invalid state" in status["error"]
        assert status["position"] == rw.newest_rw_timestamp


def test_a_restarted_frontend_is_reconnected_with_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    with _following(monkeypatch) as (rw, index, sync):
        rw.on_connect = lambda: seen.append(sync.state)
        applied = _applied(rw, index, ("h7", ["p3", "p8"], _at(1)))
        rw.restart(refuse=3)
        rw.change(upsert=[("h4", ["p1", "p6", "p8"], _at(2))], delete=["h1"])
        declared = _recovered(rw, index, sync)
        assert seen == ["reconnecting"] * 4  # three refused, the fourth declared the cursor
        assert declared[-1].endswith(f" SINCE {applied}")
        assert sum(s.endswith(" FULL") for s in declared) == 1  # no new snapshot
        status = sync.status()
        assert status["attempts"] == 4 and status["recoveries"] == 1
        assert status["resnapshots"] == 0 and "connection refused" in status["error"]


def test_a_cursor_past_the_retention_rebuilds_the_index_from_a_fresh_snapshot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with _following(monkeypatch) as (rw, index, sync):
        applied = _applied(rw, index, ("h8", ["p5", "p9"], _at(1)))
        # while the follower is away, sessions change and leave; the log no longer has it
        rw.change(upsert=[("h9", ["p2", "p9"], _at(2))], delete=["h2", "h8"], logged=False)
        rw.pass_retention()
        declared = _recovered(rw, index, sync)
        assert declared[-2].endswith(f" SINCE {applied}")
        assert declared[-1].endswith(" FULL")  # refused: rebuilt from a new snapshot
        status = sync.status()
        assert status["recoveries"] == 1 and status["resnapshots"] == 1
        assert "rw_timestamp is too small" in status["error"]


def test_readyz_is_not_ready_while_the_follower_reconnects(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    from fastapi.testclient import TestClient

    from recommender.serving.app import ServingState, create_app
    from recommender.serving.session_store import SessionStore
    from recommender.serving.views import Views

    with _following(monkeypatch) as (rw, index, sync):
        state = ServingState(index, SessionStore(tmp_path / "sessions"), Views(None), sync=sync)
        client = TestClient(create_app(state))
        try:
            rw.change(upsert=[("h6", ["p4", "p7"], _at(1))])
            wait_until(lambda: _same(index, rw) and client.get("/readyz").status_code == 200)
            rw.restart(refuse=10**6)
            wait_until(lambda: sync.state == "reconnecting" and sync.attempts > 1)
            answer = client.get("/readyz")
            assert answer.status_code == 503
            body = answer.json()
            assert body["sync_state"] == "reconnecting" and body["sync"]["attempts"] > 1
            assert "connection refused" in body["sync"]["error"]
            rw.refuse = 0
            wait_until(lambda: client.get("/readyz").status_code == 200)
            assert client.get("/v1/status").json()["index"]["sync"]["state"] == "following"
        finally:
            state.store.close()
