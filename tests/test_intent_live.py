"""Live purchase-intent scoring on a replay: the embedded engine maintains the views in a real
PostgreSQL (event clock), the scorer reads them, and its features equal the ones training
computes from the same SQL on DuckDB; scores land in session_intent as sessions change, and
`session_probability` (the API's function) reads them back. No bot session is scored."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import psycopg
import pytest
from engine_support import Msg, raw

from producers.intent_patterns import IntentConfig, IntentTruth, generate
from recommender.events import parse_ts
from recommender.intent.dataset import time_split
from recommender.intent.features import SqlSnapshots, feature_matrix
from recommender.intent.score import IntentScorer, session_probability
from recommender.intent.train import load_model, train

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def dsn(postgres) -> str:
    """The module's server itself: the scorer's tables live in its default database."""
    return postgres.dsn


def _open_sessions_index(events: list[dict], start: int) -> int:
    """An event index from `start` on after which several sessions are open and scorable."""
    snaps = SqlSnapshots(events)
    try:
        for i in range(start, len(events), 23):
            rows, _ = feature_matrix(snaps.at(parse_ts(events[i]["ts"]).replace(tzinfo=None)))
            if len(rows) >= 4:
                return i
    finally:
        snaps.close()
    raise AssertionError("no clock with open sessions")


def test_live_scores_use_the_training_features(dsn: str, tmp_path: Path) -> None:
    from recommender.engine import Engine, EngineConfig

    truth = IntentTruth()
    events = list(generate(IntentConfig(seed=21, days=3, users=250, bot_sessions_per_day=6),
                           truth))
    models = tmp_path / "models"
    split = time_split(events, step=timedelta(minutes=30))
    train(split, models, grid="small", folds=2, only=["logistic_regression"])
    model, meta = load_model(models)

    cut = _open_sessions_index(events, len(events) * 2 // 3)
    letters: list[bytes] = []
    engine = Engine(EngineConfig.of(pg_dsn=dsn, state_path=None, clock="event"))
    engine._send_dead_letters = letters.extend
    feed = engine.subscribe("session_features")
    msgs = [Msg(raw(e), i) for i, e in enumerate(events)]
    for start in range(0, cut + 1, 2000):
        engine.ingest(msgs[start : min(start + 2000, cut + 1)])
    engine.refresh()
    feed.poll(0.1)  # drop the initial batch: the scorer starts with a full pass anyway
    clock = engine.clock()
    assert not letters

    scorer = IntentScorer(dsn, models, clock="event")
    assert scorer.clock() == clock
    live_rows, live_x = feature_matrix(scorer.snapshot(clock))
    snaps = SqlSnapshots(events[: cut + 1])
    ref_rows, ref_x = feature_matrix(snaps.at(clock))
    snaps.close()
    assert len(ref_rows) >= 4
    assert [r["session_id"] for r in live_rows] == [r["session_id"] for r in ref_rows]
    np.testing.assert_allclose(live_x, ref_x, rtol=1e-12, atol=1e-9)

    # scoring writes session_intent; the API function reads the same probability back
    assert scorer.score_once() >= len(ref_rows)
    want = model.predict_proba(ref_x)[:, 1]
    for r, p in zip(ref_rows, want, strict=True):
        got = session_probability(r["session_id"], dsn=dsn)
        assert got is not None and got["model_version"] == meta["version"]
        assert got["probability"] == pytest.approx(float(p), abs=1e-12)
        assert got["purchased"] is False
    assert session_probability("no-such-session", dsn=dsn) is None

    # following the change feed: new events -> their sessions are scored
    worker = threading.Thread(target=scorer.follow, args=(feed, 0.2), daemon=True)
    worker.start()
    nxt = _open_sessions_index(events, cut + 300)
    engine.ingest(msgs[cut + 1 : nxt + 1])
    engine.refresh()
    new_sessions = {e["session_id"] for e in events[cut + 1 : nxt + 1]
                    if e["session_id"] not in truth.bot_sessions}
    deadline = time.monotonic() + 15
    with psycopg.connect(dsn) as conn:
        while time.monotonic() < deadline:
            scored = {r[0] for r in conn.execute(
                "SELECT session_id FROM session_intent WHERE features_at = %s",
                (engine.clock(),)).fetchall()}
            if scored & new_sessions:
                break
            time.sleep(0.2)
        all_scored = {r[0] for r in conn.execute("SELECT session_id FROM session_intent")}
    scorer.stop()
    worker.join(timeout=10)
    scorer.close()
    engine.stop()
    assert scored & new_sessions, "sessions with new events were not rescored"
    assert not all_scored & truth.bot_sessions
