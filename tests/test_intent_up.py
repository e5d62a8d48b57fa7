"""`flashrec up` scores purchase intent live: with a promoted model in DATA_DIR/intent_models
it follows the engine's session_features feed, writes session_intent and the API of the same
process answers GET /v1/sessions/{id}/intent; without a model it says how to train one and
runs on; SIGTERM stops everything cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
from conftest import free_port
from engine_support import raw

from producers.intent_patterns import IntentConfig, IntentTruth, generate
from recommender.events import parse_ts
from recommender.intent.dataset import time_split
from recommender.intent.train import train
from recommender.postgres.local import LocalPostgres

pytestmark = pytest.mark.e2e

FLASHREC = [sys.executable, "-m", "recommender.cli"]


def _start(args: list[str], log: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*FLASHREC, "up", "--clock", "event", "--refresh-interval", "0.3", *args],
        stdout=open(log, "w"), stderr=subprocess.STDOUT,
        env={**os.environ, "FLASHREC_LOG_LEVEL": "INFO", **env},
    )  # fmt: skip


def _wait_running(proc: subprocess.Popen, log: Path, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    while "running (Ctrl-C" not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)
    return log.read_text()


def _stop(proc: subprocess.Popen, log: Path) -> str:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    text = log.read_text()
    assert proc.returncode == 0, text[-3000:]
    assert "flashrec up: stopped" in text
    return text


def test_up_scores_sessions_into_session_intent_and_the_api(tmp_path: Path) -> None:
    from recommender.kafka_io import make_producer

    truth = IntentTruth()
    cfg = IntentConfig(seed=21, days=3, users=250, bot_sessions_per_day=6)
    events = list(generate(cfg, truth))
    data_dir = tmp_path / "d"
    split = time_split(events, step=timedelta(minutes=30))
    result = train(split, data_dir / "intent_models", grid="small", folds=2,
                   only=["logistic_regression"])
    assert result.promoted
    # day 2, 20:30 UTC: evening traffic, several sessions open at the event clock
    cut = cfg.start + timedelta(days=1, hours=20, minutes=30)
    sent = [e for e in events if parse_ts(e["ts"]) <= cut]
    open_humans = {e["session_id"] for e in sent
                   if parse_ts(e["ts"]) > cut - timedelta(minutes=25)} - truth.bot_sessions
    assert open_humans

    broker_port, pg_port, api_port = free_port(), free_port(), free_port()
    log = tmp_path / "up.log"
    proc = _start(["--broker-port", str(broker_port), "--pg-port", str(pg_port),
                   "--api-port", str(api_port), "--data-dir", str(data_dir)], log)
    try:
        text = _wait_running(proc, log)
        assert f"intent: scoring sessions with model {result.version}" in text
        producer = make_producer(f"127.0.0.1:{broker_port}")
        for e in sent:
            producer.produce("clickstream", raw(e), key=e["session_id"])
        assert producer.flush(30) == 0
        dsn = LocalPostgres(data_dir / "pg", pg_port).dsn  # its password file's
        deadline = time.monotonic() + 60
        scored: dict[str, tuple] = {}
        while time.monotonic() < deadline:
            with psycopg.connect(dsn) as conn:
                if conn.execute("SELECT to_regclass('session_intent')").fetchone()[0]:
                    scored = {r[0]: r for r in conn.execute(
                        "SELECT session_id, probability, model_version FROM session_intent")}
            if open_humans <= set(scored):
                break
            time.sleep(0.3)
        assert open_humans <= set(scored), (sorted(open_humans), sorted(scored))
        assert not set(scored) & truth.bot_sessions
        assert {r[2] for r in scored.values()} == {result.version}
        some = sorted(open_humans)[0]
        got = httpx.get(f"http://127.0.0.1:{api_port}/v1/sessions/{some}/intent", timeout=10)
        assert got.status_code == 200, got.text
        assert got.json()["probability"] == pytest.approx(scored[some][1])
        assert httpx.get(f"http://127.0.0.1:{api_port}/v1/sessions/zz/intent",
                         timeout=10).status_code == 404
    finally:
        if proc.poll() is None:
            text = _stop(proc, log)
    assert "Traceback" not in text


def test_up_without_a_model_says_how_to_train_one(tmp_path: Path) -> None:
    log = tmp_path / "up.log"
    models = tmp_path / "models"
    proc = _start(["--broker-port", str(free_port()), "--pg-port", str(free_port()),
                   "--data-dir", str(tmp_path / "d"), "--intent-model-dir", str(models)], log)
    try:
        text = _wait_running(proc, log)
    finally:
        text = _stop(proc, log)
    assert f"intent: off (no promoted model in {models})" in text
    assert f"flashrec intent train --data generated --model-dir {models}" in text

    log2 = tmp_path / "up2.log"  # FLASHREC_INTENT=0 is --no-intent
    proc = _start(["--broker-port", str(free_port()), "--pg-port", str(free_port()),
                   "--data-dir", str(tmp_path / "d")], log2, FLASHREC_INTENT="0")
    try:
        _wait_running(proc, log2)
    finally:
        text = _stop(proc, log2)
    assert "intent: off (--no-intent)" in text
