"""Live purchase-intent scoring: sessions are scored as their features change.

`IntentScorer` follows the `session_features` change feed (in process from the engine, or
across processes through PostgreSQL's `flashrec_changes`), reads the changed sessions and
their customers' look-back rows from PostgreSQL, scores them with the current model and
upserts the `session_intent` table (sql/075_session_intent.sql) in one transaction. It reloads
the model when a new version is promoted. `session_probability` reads one session's row: the
function behind the API's intent endpoint.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from recommender.intent.features import (
    SESSION_GAP,
    Snapshot,
    _naive,
    feature_matrix,
)

log = logging.getLogger(__name__)

KEEP_ROWS = timedelta(days=1)  # session_intent rows older than this (feature clock) go
COLUMNS = ("session_id", "user_id", "probability", "purchased", "event_count", "model_version",
           "features_at", "scored_at")  # fmt: skip


def table_sql() -> str:
    """PostgreSQL DDL of session_intent, from sql/075_session_intent.sql."""
    from recommender import sqlfiles

    for obj in sqlfiles.load():
        if obj.name == "session_intent" and obj.tree is not None:
            return obj.tree.sql(dialect="postgres")
    raise RuntimeError("sql/ has no CREATE TABLE session_intent")


def score_snapshot(model: Any, version: str, snapshot: Snapshot,
                   only: Iterable[str] | None = None) -> list[tuple[Any, ...]]:
    """session_intent rows (COLUMNS order) for the open human sessions of a snapshot."""
    wanted = set(only) if only is not None else None
    clock = _naive(snapshot.clock)
    now = datetime.now(UTC)
    rows, X = feature_matrix(snapshot, wanted)
    probs = model.predict_proba(X)[:, 1] if len(rows) else np.zeros(0)
    out = [(r["session_id"], r["user_id"], float(p), False, int(r["event_count"]), version,
            clock, now) for r, p in zip(rows, probs, strict=True)]
    for r in snapshot.sessions:  # already bought: the answer is known
        if ((r["purchase_count"] or 0) > 0 and not r["is_bot"]
                and _naive(r["last_event_at"]) > clock - SESSION_GAP
                and (wanted is None or r["session_id"] in wanted)):
            out.append((r["session_id"], r["user_id"], 1.0, True, int(r["event_count"]),
                        version, clock, now))
    return out


class ModelHandle:
    """The current model of a model folder, reloaded when a new version is promoted."""

    def __init__(self, model_dir: Path, check_every_s: float = 5.0) -> None:
        self.model_dir = model_dir
        self.check_every_s = check_every_s
        self.model: Any = None
        self.version: str | None = None
        self._checked = 0.0
        self.refresh(force=True)

    def refresh(self, force: bool = False) -> None:
        from recommender.intent.train import current_version, load_model

        if not force and time.monotonic() - self._checked < self.check_every_s:
            return
        self._checked = time.monotonic()
        version = current_version(self.model_dir)
        if version is None:
            raise FileNotFoundError(f"no promoted intent model in {self.model_dir} "
                                    "(run `flashrec intent train` first)")
        if version != self.version:
            self.model, _ = load_model(self.model_dir, version)
            self.version = version
            log.info("intent model %s loaded", version)


class IntentScorer:
    """Scores live sessions from the views in PostgreSQL into `session_intent`."""

    def __init__(self, dsn: str, model_dir: Path, clock: str = "wall") -> None:
        import psycopg
        from psycopg.rows import dict_row

        if clock not in ("wall", "event"):
            raise ValueError(f"unknown clock {clock!r} (expected wall or event)")
        self.dsn = dsn
        self.clock_kind = clock
        self.handle = ModelHandle(model_dir)
        self.conn = psycopg.connect(dsn, row_factory=dict_row, connect_timeout=10)
        self.conn.execute("SET TIME ZONE 'UTC'")
        with self.conn.transaction():
            self.conn.execute(table_sql())
            version = self.conn.execute("SELECT version() AS v").fetchone()["v"]
        # RisingWave has no INSERT ... ON CONFLICT: a primary-key table overwrites on insert
        self.risingwave = "risingwave" in str(version).lower()
        self.scored = 0
        self._stop = threading.Event()

    def clock(self) -> datetime | None:
        """NOW() of the features: wall time, or the newest event time the engine has seen."""
        if self.clock_kind == "wall":
            return datetime.now(UTC).replace(tzinfo=None)
        row = self.conn.execute("SELECT max(watermark) AS w FROM flashrec_status").fetchone()
        self.conn.commit()
        return _naive(row["w"]) if row and row["w"] else None

    def snapshot(self, clock: datetime, session_ids: Iterable[str] | None = None) -> Snapshot:
        """The views' rows for the open sessions (or `session_ids`) and their customers."""
        c = self.conn
        if session_ids is None:
            sessions = c.execute("SELECT * FROM session_features WHERE last_event_at > %s",
                                 (clock - SESSION_GAP,)).fetchall()
        else:
            sessions = c.execute("SELECT * FROM session_features WHERE session_id = ANY(%s)",
                                 (list(session_ids),)).fetchall()
        users = sorted({r["user_id"] for r in sessions})
        customers = c.execute("SELECT * FROM customer_features WHERE user_id = ANY(%s)",
                              (users,)).fetchall()
        hours = c.execute("SELECT * FROM customer_hours WHERE user_id = ANY(%s)",
                          (users,)).fetchall()
        c.commit()
        return Snapshot(clock, sessions, customers, hours)

    def score_once(self, session_ids: Iterable[str] | None = None) -> int:
        """Score the open sessions (or just `session_ids`); returns rows written."""
        clock = self.clock()
        if clock is None:
            return 0
        self.handle.refresh()
        ids = None if session_ids is None else list(session_ids)
        rows = score_snapshot(self.handle.model, self.handle.version or "",
                              self.snapshot(clock, ids), ids)
        cols = ", ".join(COLUMNS)
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS[1:])
        with self.conn.transaction():
            if rows:
                with self.conn.cursor() as cur:
                    conflict = "" if self.risingwave else (
                        f" ON CONFLICT (session_id) DO UPDATE SET {updates}")
                    cur.executemany(
                        f"INSERT INTO session_intent ({cols}) VALUES "
                        f"({', '.join(['%s'] * len(COLUMNS))}){conflict}", rows)
            self.conn.execute("DELETE FROM session_intent WHERE features_at < %s",
                              (clock - KEEP_ROWS,))
        self.scored += len(rows)
        return len(rows)

    def follow(self, feed: Any, poll_s: float = 1.0) -> None:
        """Score all open sessions, then each change batch of `feed` (session_features)
        until stop(). `feed.poll(timeout)` returns change batches (engine or PgSubscription)."""
        self.score_once()
        while not self._stop.is_set():
            batches = feed.poll(poll_s)
            if not isinstance(batches, list):
                batches = [batches] if batches is not None else []
            changed: set[str] = set()
            for b in batches:
                at = b.columns.index("session_id")
                changed.update(row[at] for row in b.inserts)
            if changed:
                n = self.score_once(changed)
                log.debug("scored %d changed session(s)", n)

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self.conn.close()


class ScorerThread:
    """An `IntentScorer` following a change feed in a background thread (`flashrec up`).

    After an error (PostgreSQL restarting, a model being replaced) it logs, waits `retry_s`,
    reconnects and starts again with a full pass. `stop()` ends the thread, then closes the
    feed and the connection. The constructor fails like `IntentScorer` (no promoted model:
    FileNotFoundError; PostgreSQL unusable: psycopg.Error).
    """

    def __init__(self, dsn: str, model_dir: Path, feed: Any, clock: str = "wall",
                 poll_s: float = 1.0, retry_s: float = 5.0) -> None:
        self.dsn, self.model_dir, self.clock = dsn, model_dir, clock
        self.feed = feed
        self.poll_s, self.retry_s = poll_s, retry_s
        self.scorer = IntentScorer(dsn, model_dir, clock=clock)
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="intent-scorer", daemon=True)

    @property
    def version(self) -> str | None:
        return self.scorer.handle.version

    def start(self) -> ScorerThread:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.scorer.follow(self.feed, self.poll_s)
                return  # stopped
            except Exception as exc:
                self.errors += 1
                log.warning("intent scoring failed (%s); retrying in %g s", exc, self.retry_s)
            if self._stop.wait(self.retry_s):
                return
            try:
                old, self.scorer = self.scorer, IntentScorer(self.dsn, self.model_dir,
                                                             clock=self.clock)
                old.close()
            except Exception as exc:
                log.warning("intent scorer cannot restart yet: %s", exc)

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self.scorer.stop()
        self._thread.join(timeout)
        close = getattr(self.feed, "close", None)
        if close is not None:
            close()
        self.scorer.close()


def session_probability(session_id: str, dsn: str | None = None, conn: Any = None
                        ) -> dict[str, Any] | None:
    """The session's row of `session_intent` as a dict (None: not scored / unknown).

    Pass an open psycopg connection (`conn`) to reuse it, or a `dsn`.
    """
    import psycopg
    from psycopg.rows import dict_row

    own = conn is None
    if own:
        if not dsn:
            raise ValueError("session_probability needs a dsn or a connection")
        conn = psycopg.connect(dsn, connect_timeout=5)
    try:
        with conn.cursor(row_factory=dict_row) as cur:
            cur.execute(f"SELECT {', '.join(COLUMNS)} FROM session_intent WHERE session_id = %s",
                        (session_id,))
            row = cur.fetchone()
        if not own:
            conn.commit()
    except psycopg.errors.UndefinedTable:
        if not own:
            conn.rollback()
        return None
    finally:
        if own:
            conn.close()
    if row is None:
        return None
    for key in ("features_at", "scored_at"):
        if isinstance(row[key], datetime):
            row[key] = row[key].isoformat()
    return row
