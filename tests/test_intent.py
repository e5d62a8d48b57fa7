"""Purchase intent without processes: the look-back SQL computes what it says, training never
sees data after the cutoff, bot sessions stay out, the model finds the generator's planted
signal, versions are promoted only when they beat the current model, and the CLI fails
cleanly on bad input."""

from __future__ import annotations

import json
import logging
import random
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from conftest import ClickData
from typer.testing import CliRunner

from producers.intent_patterns import IntentConfig, IntentTruth, generate
from recommender.cli import app
from recommender.events import format_ts, parse_ts
from recommender.intent.dataset import (
    Examples,
    Split,
    build_examples,
    load_events,
    sessionize,
    time_split,
)
from recommender.intent.features import (
    FEATURE_NAMES,
    WINDOWS,
    SqlSnapshots,
    feature_matrix,
)
from recommender.intent.train import current_version, load_model, train, versions
from recommender.intent.training_report import write_report

STEP = timedelta(minutes=10)


def _ts(e: dict) -> datetime:
    return parse_ts(e["ts"]).replace(tzinfo=None)


@pytest.fixture(scope="module")
def small() -> tuple[list[dict], IntentTruth]:
    truth = IntentTruth()
    events = list(generate(IntentConfig(seed=3, days=3, users=150, bot_sessions_per_day=3),
                           truth))
    return events, truth


@pytest.fixture(scope="module")
def signal_split() -> Split:
    """Four days of generated traffic (800 customers), split by time, features from the SQL."""
    events = list(generate(IntentConfig(seed=11, days=4, users=800)))
    return time_split(events, test_share=0.25, step=timedelta(minutes=15))


# --- the SQL computes what it says -----------------------------------------------------


def _python_customer_features(events: list[dict], clock: datetime, users: set[str]):
    """customer_features and customer_hours recomputed by hand from the events."""
    feats: dict[tuple[str, int], dict] = {}
    hours: dict[tuple[str, int, int], list[int]] = defaultdict(lambda: [0, 0])
    for w in WINDOWS:
        first_ts: dict[tuple[str, str], datetime] = {}
        for e in events:
            ts, user = _ts(e), e["user_id"]
            if user not in users or not (clock - timedelta(days=w) < ts <= clock):
                continue
            f = feats.setdefault((user, w), {
                "sessions": set(), "product_views": 0, "cart_adds": 0, "purchases": 0,
                "views_mobile": 0, "views_desktop": 0, "purchases_mobile": 0,
                "purchases_desktop": 0, "last_cart_at": None, "last_purchase_at": None,
                "last_seen_at": None})
            f["sessions"].add(e["session_id"])
            key = {"view": "product_views", "add_to_cart": "cart_adds",
                   "purchase": "purchases"}[e["action"]]
            f[key] += 1
            if e["action"] in ("view", "purchase") and e["device"] in ("mobile", "desktop"):
                f[f"{'views' if e['action'] == 'view' else 'purchases'}_{e['device']}"] += 1
            if e["action"] == "add_to_cart":
                f["last_cart_at"] = max(filter(None, [f["last_cart_at"], ts]))
            if e["action"] == "purchase":
                f["last_purchase_at"] = max(filter(None, [f["last_purchase_at"], ts]))
                hours[(user, w, ts.hour)][1] += 1
            f["last_seen_at"] = max(filter(None, [f["last_seen_at"], ts]))
            sid = (user, e["session_id"])
            first_ts[sid] = min(first_ts.get(sid, ts), ts)
        for (user, _), ts in first_ts.items():
            hours[(user, w, ts.hour)][0] += 1
    for f in feats.values():
        f["sessions"] = len(f["sessions"])
    return feats, {k: tuple(v) for k, v in hours.items()}


def test_lookback_views_compute_their_definition(small) -> None:
    events, _ = small
    snaps = SqlSnapshots(events)
    checked = 0
    for at in (0.3, 0.5, 0.7, 0.9):  # two minutes after an event: a session is open then
        clock = _ts(events[int(len(events) * at)]) + timedelta(minutes=2)
        snap = snaps.at(clock)
        users = {r["user_id"] for r in snap.sessions}
        assert users, "no open session at this clock: pick another"
        want, want_hours = _python_customer_features(events, clock, users)
        got = {(r["user_id"], r["window_days"]): r for r in snap.customers}
        assert set(got) == set(want)
        for key, f in want.items():
            for name, value in f.items():
                assert got[key][name] == value, (key, name)
        got_hours = {(r["user_id"], r["window_days"], r["hour_of_day"]):
                     (r["visits"], r["purchases"]) for r in snap.hours}
        assert got_hours == want_hours
        checked += len(want)
    snaps.close()
    assert checked > 20


def test_feature_rows_follow_the_views(small) -> None:
    events, _ = small
    snaps = SqlSnapshots(events)
    for i in range(len(events) // 2, len(events), 41):  # a clock with several open sessions
        clock = _ts(events[i]) + timedelta(seconds=30)
        snap = snaps.at(clock)
        rows, X = feature_matrix(snap)
        if len(rows) >= 3:
            break
    assert X.shape == (len(rows), len(FEATURE_NAMES)) and len(rows) >= 3
    col = {n: i for i, n in enumerate(FEATURE_NAMES)}
    month = {r["user_id"]: r for r in snap.customers if r["window_days"] == 30}
    for r, x in zip(rows, X, strict=True):
        assert r["purchase_count"] == 0 and not r["is_bot"]
        assert clock - r["last_event_at"] < timedelta(minutes=30)
        assert x[col["view_count"]] == r["view_count"]
        assert x[col["idle_s"]] == (clock - r["last_event_at"]).total_seconds()
        m = month[r["user_id"]]
        assert x[col["sessions_30d"]] == m["sessions"]
        if m["last_cart_at"] is not None:
            assert x[col["since_last_cart_s"]] == (clock - m["last_cart_at"]).total_seconds()
    snaps.close()


# --- no data from the future -------------------------------------------------------------


def _perturb_after(events: list[dict], cutoff: datetime) -> list[dict]:
    """Everything after the cutoff changed: devices flipped, every session buys, new users."""
    rng = random.Random(5)
    out = [e for e in events if _ts(e) <= cutoff]
    for e in events:
        if _ts(e) > cutoff:
            e = dict(e, device="tablet", action=rng.choice(["view", "purchase"]))
            out.append(e)
    last = _ts(events[-1])
    for n, e in enumerate(out[:400]):  # and every early session "buys" again after the cutoff
        out.append(dict(e, event_id=f"future-{n}", action="purchase",
                        ts=format_ts(cutoff + (last - cutoff) * 0.5 + timedelta(seconds=n))))
    out.sort(key=lambda e: e["ts"])
    return out


def _same(a: Examples, b: Examples) -> None:
    assert a.session_ids == b.session_ids and a.clocks == b.clocks
    assert np.array_equal(a.X, b.X) and np.array_equal(a.y, b.y)


def test_training_rows_ignore_everything_after_the_cutoff(small) -> None:
    events, _ = small
    first, last = _ts(events[0]), _ts(events[-1])
    cutoff = first + (last - first) * 0.6
    cutoff = cutoff.replace(minute=0, second=0, microsecond=0)
    step = timedelta(minutes=20)
    base = time_split(events, step=step, cutoff=cutoff)
    changed = time_split(_perturb_after(events, cutoff), step=step, cutoff=cutoff)
    assert len(base.train) > 50 and base.train.y.sum() > 0
    _same(base.train, changed.train)
    assert max(base.train.clocks) <= cutoff < min(base.test.clocks)
    # the perturbation did reach the test split, so the check above can fail
    assert not np.array_equal(base.test.y, changed.test.y[: len(base.test.y)])
    # a label is only given once it is known: an open session at the cutoff is left out
    late = build_examples([e for e in events if _ts(e) <= cutoff], step, timedelta(0))
    open_at_cut = {e["session_id"] for e in events
                   if cutoff - timedelta(minutes=30) < _ts(e) <= cutoff}
    bought = {e["session_id"] for e in events if e["action"] == "purchase" and _ts(e) <= cutoff}
    for sid, y in zip(late.session_ids, late.y, strict=True):
        if sid in open_at_cut and sid not in bought:
            pytest.fail(f"session {sid} open at the cutoff got label {y}")


# --- bots --------------------------------------------------------------------------------


def test_bot_sessions_are_flagged_and_left_out(small) -> None:
    events, truth = small
    assert truth.bot_sessions
    bot_buys = [e for e in events if e["session_id"] in truth.bot_sessions
                and e["action"] == "purchase"]
    assert bot_buys, "the generator's checkout bots buy: training on them would mislead"
    snaps = SqlSnapshots(events)
    bot_event = next(e for e in events if e["session_id"] in truth.bot_sessions)
    snap = snaps.at(_ts(bot_event) + timedelta(seconds=20))
    flagged = {r["session_id"] for r in snap.sessions if r["is_bot"]}
    assert bot_event["session_id"] in flagged
    assert not flagged - truth.bot_sessions  # no human flagged
    rows, _ = feature_matrix(snap)
    assert not {r["session_id"] for r in rows} & truth.bot_sessions
    snaps.close()
    split = time_split(events, step=timedelta(minutes=20))
    seen = set(split.train.session_ids) | set(split.test.session_ids)
    assert seen and not seen & truth.bot_sessions


# --- the model -----------------------------------------------------------------------------


def test_model_finds_planted_signal_and_versions_promote(signal_split: Split,
                                                         tmp_path: Path) -> None:
    split = signal_split
    base = split.test.y.mean()
    assert 0.01 < base < 0.3 and split.train.y.sum() >= 30
    models = tmp_path / "models"
    first = train(split, models, grid="small", folds=3)
    # Baseline: a random ranking's PR-AUC is the positive rate. The planted signal (evening,
    # desktop, returning customers, open carts) must at least double it.
    assert first.best.test["pr_auc"] >= max(2 * base, base + 0.1), first.best.test
    assert first.best.test["roc_auc"] >= 0.7
    assert first.promoted and current_version(models) == first.version == "v0001"
    report = write_report(first, split, {"test": True})
    text = report.read_text()
    for needle in ("Data window", "Class balance", "logistic_regression", "random_forest",
                   "gradient_boosting", "Feature importances", "No previous run"):
        assert needle in text
    assert (first.path / "class_balance.png").stat().st_size > 1000
    assert (first.path / "precision_recall.png").is_file()

    # the same data again: not better on the same test split, so not promoted
    second = train(split, models, grid="small", folds=3, only=[first.best.name])
    assert not second.promoted and current_version(models) == "v0001"
    assert "does not beat" in second.reason
    text = write_report(second, split, {}).read_text()
    assert "Kolmogorov-Smirnov" in text and "against v0001" in text
    assert versions(models) == ["v0001", "v0002"]
    meta = json.loads((second.path / "meta.json").read_text())
    assert meta["promoted"] is False and meta["feature_names"] == FEATURE_NAMES

    # a worse current model (trained on shuffled labels) is replaced
    rng = np.random.default_rng(0)
    shuffled = Split(Examples(split.train.X, rng.permutation(split.train.y)), split.test,
                     split.cutoff, split.first, split.last, split.events)
    bad = tmp_path / "bad"
    fast = ["logistic_regression"]
    assert train(shuffled, bad, grid="small", folds=3, only=fast).promoted
    better = train(split, bad, grid="small", folds=3, only=fast)
    assert better.promoted and current_version(bad) == "v0002", better.reason
    model, meta = load_model(bad)
    assert meta["version"] == "v0002"
    assert model.predict_proba(split.test.X[:5]).shape == (5, 2)


# --- data sets and the command line ---------------------------------------------------------


def test_sessionize_by_30_minutes_of_silence() -> None:
    t = datetime(2024, 1, 1, 12)
    rows = [("a", t), ("a", t + timedelta(minutes=29)), ("b", t),
            ("a", t + timedelta(minutes=60)), ("a", t + timedelta(minutes=59, seconds=30))]
    assert sessionize(rows) == ["a-0", "a-0", "b-0", "a-1", "a-1"]


# (events, actions, visitors) of each RetailRocket file, counted in the raw file
RETAILROCKET = {
    "sample": (544, {"view": 487, "add_to_cart": 43, "purchase": 14}, 60),
    "shared": (2771, {"view": 2695, "add_to_cart": 62, "purchase": 14}, 1500),
}


def test_retailrocket_events_are_sessionized(click_data: ClickData) -> None:
    events = load_events(str(click_data["retailrocket"]))
    count, want_actions, visitors = RETAILROCKET[click_data.name]
    assert len(events) == count
    actions = defaultdict(int)
    for e in events:
        actions[e["action"]] += 1
    assert actions == want_actions
    users = {e["user_id"] for e in events}
    by_session = defaultdict(list)
    for e in events:
        by_session[e["session_id"]].append(_ts(e))
    assert len(users) == visitors and len(by_session) > len(users)
    for times in by_session.values():
        times.sort()
        assert all(b - a <= timedelta(minutes=30) for a, b in zip(times, times[1:], strict=False))


def test_cli_errors_are_clean(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["intent", "train", "--data", str(tmp_path / "missing.jsonl")])
    assert result.exit_code == 2 and "no such file" in result.output
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    result = runner.invoke(app, ["intent", "train", "--data", str(bad)])
    assert result.exit_code == 2 and "neither" in result.output
    result = runner.invoke(app, ["intent", "train", "--data", "generated:colour=red"])
    assert result.exit_code == 2 and "unknown generator setting" in result.output
    result = runner.invoke(app, ["intent", "score", "--pg-dsn", "postgresql://x@127.0.0.1:1/x",
                                 "--model-dir", str(tmp_path / "none")])
    assert result.exit_code == 2 and "no promoted intent model" in result.output
    for args in (["intent", "--help"], ["intent", "train", "--help"],
                 ["intent", "score", "--help"], ["intent", "show", "--help"]):
        assert runner.invoke(app, args).exit_code == 0


def test_cli_trains_on_jsonl_events(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    events = list(generate(IntentConfig(seed=4, days=3, users=300)))
    path = tmp_path / "events.jsonl"
    lines = [json.dumps(e) for e in events]
    lines.insert(100, "{not json")  # a bad line is skipped, not fatal
    path.write_text("\n".join(lines) + "\n")
    caplog.set_level(logging.INFO, logger="flashrec.progress")
    result = CliRunner().invoke(app, [
        "intent", "train", "--data", str(path), "--model-dir", str(tmp_path / "m"),
        "--grid", "small", "--folds", "2", "--step-minutes", "20",
        "--algorithms", "logistic_regression"])
    assert result.exit_code == 0, result.output
    assert "v0001: promoted" in result.output
    steps = [r.getMessage() for r in caplog.records if r.name == "flashrec.progress"]
    for part in ("features (train)", "features (test)", "logistic_regression"):  # off a tty
        assert any(f"intent train: {part}: " in x and x.endswith("(done)") for x in steps), steps
    assert (tmp_path / "m" / "v0001" / "report.md").is_file()


def test_labels_session_and_horizon() -> None:
    from recommender.intent.dataset import _Outcomes, label

    t = datetime(2024, 1, 1, 12)

    def ev(sid: str, user: str, action: str, minutes: float) -> dict:
        return {"session_id": sid, "user_id": user, "action": action,
                "ts": format_ts(t + timedelta(minutes=minutes))}

    out = _Outcomes.of([ev("s1", "u", "view", 0), ev("s1", "u", "purchase", 5),
                        ev("s2", "u", "view", 10), ev("s3", "u", "view", 200),
                        ev("s3", "u", "purchase", 210)])
    end = t + timedelta(hours=5)
    no = timedelta(0)
    assert label(out, "s1", "u", t + timedelta(minutes=1), no, end) == 1
    assert label(out, "s1", "u", t + timedelta(minutes=6), no, end) == 0  # bought before
    assert label(out, "s2", "u", t + timedelta(minutes=11), no, end) == 0  # closed, no buy
    # not known yet: s2 may still buy until 30 minutes after its last event
    assert label(out, "s2", "u", t + timedelta(minutes=11), no,
                 t + timedelta(minutes=30)) is None
    # horizon: the customer buys again 199 minutes after s2's clock
    assert label(out, "s2", "u", t + timedelta(minutes=11), timedelta(hours=4), end) == 1
    assert label(out, "s2", "u", t + timedelta(minutes=11), timedelta(hours=2), end) == 0
    assert label(out, "s2", "u", t + timedelta(minutes=11), timedelta(hours=4),
                 t + timedelta(hours=3)) is None


def test_training_reports_its_progress(signal_split: Split, tmp_path: Path,
                                       caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    """Off a terminal, the grid search logs its stage, fits done of all, and the end."""
    from sklearn.model_selection import ParameterGrid

    from recommender.intent.train import algorithms

    grid = algorithms("small")["logistic_regression"][1]
    fits = len(ParameterGrid(grid)) * 3
    with caplog.at_level(logging.INFO, logger="flashrec.progress"):
        train(signal_split, tmp_path / "m", grid="small", folds=3, only=["logistic_regression"])
    lines = [r.getMessage() for r in caplog.records if r.name == "flashrec.progress"]
    assert lines[0] == f"intent train: logistic_regression: started ({fits} fits)"
    assert lines[-1].startswith(f"intent train: logistic_regression: {fits}/{fits} fits (100%)")
    assert lines[-1].endswith("(done)")
