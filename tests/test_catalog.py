"""The view catalog (the .toml beside each view of sql/) and the incremental maintainers that
recognise their view by its shape and read its parameters from the SQL: a changed window or
threshold keeps the maintainer, with the SQL's rows; a changed shape stops the engine."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from engine_support import bot_mix
from test_engine_customer import _events as customer_events
from test_engine_sessions import _events as session_events
from typer.testing import CliRunner

from recommender import catalog, sqlfiles
from recommender.cli import app
from recommender.config import SQL_DIR
from recommender.engine.coview import CoViewMaintainer
from recommender.engine.customer import CustomerView
from recommender.engine.engine import Engine, EngineConfig, incremental_overrides
from recommender.engine.refresh import ViewRunner
from recommender.engine.sessions import SessionView
from recommender.engine.store import StateStore
from recommender.engine.trending import TrendingMaintainer

DECLARED = {  # view -> (keys, partition, window_partitioned, feed, tier, maintainer)
    "session_features": (("session_id",), "session_id", False, True, "main", "sessions"),
    "trending_by_category": (("category", "window_start", "rank"), None, True, True, "main",
                             "trending"),
    "co_view_pairs": (("product_a", "product_b"), None, False, False, "main", "coview"),
    "vmis_history": (("session_id",), "session_id", False, True, "main", "sessions"),
    "customer_features": (("user_id", "window_days"), "user_id", False, False, "background",
                          "customer"),
    "customer_hours": (("user_id", "window_days", "hour_of_day"), "user_id", False, False,
                       "background", "customer"),
}  # fmt: skip


def sql_copy(folder: Path, edits: dict[str, list[tuple[str, str]]] | None = None) -> Path:
    """sql/ (SQL and catalog) copied to `folder`, with (old, new) text edits per file."""
    folder.mkdir()
    for path in sorted(SQL_DIR.iterdir()):
        if path.suffix in (".sql", ".toml"):
            shutil.copy(path, folder / path.name)
    for name, changes in (edits or {}).items():
        text = (folder / name).read_text()
        for old, new in changes:
            assert text.count(old) == 1, (name, old)
            text = text.replace(old, new)
        (folder / name).write_text(text)
    return folder


def _key(row: Any) -> tuple:
    return tuple(tuple(v) if isinstance(v, list) else v for v in row)


def _rows(runner: ViewRunner, name: str) -> set[tuple]:
    return {_key(r) for r in runner.rows(name)}


# --- the catalog ----------------------------------------------------------------------------


def test_every_view_has_what_its_toml_declares(tmp_path: Path) -> None:
    entries = sqlfiles.catalog()
    assert list(entries) == list(DECLARED)  # file order
    for name, (keys, partition, windowed, feed, tier, maintainer) in DECLARED.items():
        meta = entries[name]
        assert (meta.keys, meta.partition, meta.window_partitioned, meta.feed, meta.tier,
                meta.maintainer) == (keys, partition, windowed, feed, tier, maintainer), name
        view = next(v for v in sqlfiles.views() if v.name == name)
        assert meta.file == Path(view.file).with_suffix(".toml").name
    assert catalog.bot_view(entries) == "session_features"
    assert catalog.history_view(entries) == "vmis_history"
    assert set(catalog.feed_views(entries)) == {"session_features", "vmis_history",
                                                "trending_by_category"}  # fmt: skip
    assert catalog.tier_views(entries, "background") == ("customer_features", "customer_hours")
    assert catalog.view_keys(entries)["customer_hours"] == ("user_id", "window_days",
                                                            "hour_of_day")  # fmt: skip
    assert EngineConfig.of(pg_dsn="", state_path=None).background.views == (
        "customer_features", "customer_hours")  # fmt: skip
    # the catalog of the engine's own sql_dir, not sql/'s
    moved = sql_copy(tmp_path / "sql", {"061_customer_hours.toml": [('"background"', '"main"')]})
    assert EngineConfig.of(pg_dsn="", state_path=None, sql_dir=moved).background.views == (
        "customer_features",)
    # views without a .toml have no entry: the clickstream table, the intent scores
    assert "clickstream" not in entries and "session_intent" not in entries


def test_runner_partitions_by_the_catalog(tmp_path: Path) -> None:
    """The runner's partitioned refreshes and bot view come from the catalog: a view whose
    .toml is gone is recomputed whole."""
    runner = ViewRunner(StateStore(None).con, sqlfiles.load())
    assert runner.bot_view == "session_features"
    assert runner.partitioned == {"session_features": "session_id", "vmis_history": "session_id",
                                  "customer_features": "user_id", "customer_hours": "user_id",
                                  "trending_by_category": "window_start"}  # fmt: skip
    folder = sql_copy(tmp_path / "sql")
    (folder / "061_customer_hours.toml").unlink()
    runner = ViewRunner(StateStore(None).con, sqlfiles.load(folder))
    assert "customer_hours" not in runner.partitioned and "customer_features" in runner.partitioned


@pytest.mark.parametrize(("text", "message"), [
    ('maintainr = "coview"\n', "unknown key(s) maintainr"),
    ("feed = 1\n", "feed must be true or false"),
    ('keys = "session_id"\n', "keys must be a list of column names"),
    ('tier = "side"\n', "tier must be one of main, background"),
    ("feed = \n", "not valid TOML"),
])  # fmt: skip
def test_a_toml_that_is_not_valid_is_refused_with_its_name(tmp_path: Path, text: str,
                                                           message: str) -> None:  # fmt: skip
    folder = sql_copy(tmp_path / "sql")
    (folder / "045_co_view_pairs.toml").write_text(text)
    with pytest.raises(ValueError, match="045_co_view_pairs.toml") as raised:
        sqlfiles.load(folder)
    assert message in str(raised.value)


def test_a_toml_must_sit_beside_one_view_and_claims_are_single(tmp_path: Path) -> None:
    folder = sql_copy(tmp_path / "sql")
    (folder / "099_nothing.toml").write_text("feed = true\n")
    with pytest.raises(ValueError, match="099_nothing.toml: no .sql"):
        sqlfiles.load(folder)
    (folder / "099_nothing.toml").rename(folder / "090_vmis_udf.toml")
    with pytest.raises(ValueError, match="090_vmis_udf.toml: a catalog entry describes"):
        sqlfiles.load(folder)
    (folder / "090_vmis_udf.toml").unlink()
    (folder / "045_co_view_pairs.toml").write_text("bot_source = true\n")
    with pytest.raises(ValueError, match="bot_source = true in several files"):
        sqlfiles.load(folder)


# --- shapes and parameters ------------------------------------------------------------------


def _query(objects: list[sqlfiles.SqlObject], name: str) -> Any:
    return sqlfiles.view_query(next(o for o in objects if o.name == name))


def test_shape_leaves_out_windows_and_thresholds(tmp_path: Path) -> None:
    folder = sql_copy(tmp_path / "sql", {
        "045_co_view_pairs.sql": [("'30 MINUTES'", "'20 MINUTES'"), (">= 3", ">= 4")],
        "040_trending_by_category.sql": [("THEN 3", "THEN 4")],
    })  # fmt: skip
    edited, original = sqlfiles.load(folder), sqlfiles.load()
    shape, params = sqlfiles.shape(_query(edited, "co_view_pairs"))
    assert shape == sqlfiles.shape(_query(original, "co_view_pairs"))[0]
    assert [(p.kind, p.value) for p in params] == [("interval", 1200.0), ("number", 4.0)]
    # a weight is not a parameter: another shape
    assert (sqlfiles.shape(_query(edited, "trending_by_category"))[0]
            != sqlfiles.shape(_query(original, "trending_by_category"))[0])  # fmt: skip


# --- a changed parameter keeps the maintainer, with the SQL's rows ---------------------------


def _same_rows(objects: list[sqlfiles.SqlObject], events: list[dict], names: tuple[str, ...],
               clocks: list[timedelta], batch: int) -> dict[str, Any]:  # fmt: skip
    """Feed the events in batches to a runner with the engine's maintainers and to one by
    SQL, each refresh at the newest event time plus the next of `clocks`: the maintained
    views' changes, applied one refresh after the other, give the SQL's rows of `names` every
    time. Returns the maintainers."""
    overrides = incremental_overrides(objects)
    store = StateStore(None)
    fast = ViewRunner(store.con, objects, overrides)
    reference = ViewRunner(store.con.cursor(), objects)
    mirrors: dict[str, set[tuple]] = {name: set() for name in names}
    now = datetime(1970, 1, 1)
    seen = 0
    for step, start in enumerate(range(0, len(events), batch)):
        store.apply(events[start : start + batch], {})
        now = max(now, (store.max_event_time() or now) + clocks[step % len(clocks)])
        results = {r.name: r for r in fast.refresh(now)}
        fast.commit()
        reference.refresh(now, diff=False)
        for name in names:
            mirror = mirrors[name]
            mirror -= {_key(r) for r in results[name].deletes}
            mirror |= {_key(r) for r in results[name].inserts}
            expected = _rows(reference, name)
            assert mirror == expected, (name, step, now)
            seen += len(expected)
    assert seen
    store.close()
    return overrides


def test_co_view_window_and_threshold_changed(tmp_path: Path) -> None:
    folder = sql_copy(tmp_path / "sql", {
        "045_co_view_pairs.sql": [("'30 MINUTES'", "'20 MINUTES'"), (">= 3", ">= 4")],
    })  # fmt: skip
    objects = [o for o in sqlfiles.load(folder)
               if o.name in ("session_features", "vmis_history", "co_view_pairs")]  # fmt: skip
    events = bot_mix(4000, 5, datetime(2024, 3, 15, 14), spacing=1.5, late=120, products=20,
                     sessions=120, actions=["view", "view", "view", "add_to_cart"],
                     period=700, burst=30, burst_gap=0.3, comeback=timedelta(minutes=10))
    overrides = _same_rows(objects, events, ("co_view_pairs",), [timedelta(0)], 400)
    maintainer = overrides["co_view_pairs"]
    assert isinstance(maintainer, CoViewMaintainer)
    assert maintainer.window == timedelta(minutes=20) and maintainer.min_sessions == 4
    assert maintainer.chunks  # the window slid past the first events


def test_customer_window_changed(tmp_path: Path) -> None:
    """customer_features looks back 10 days instead of 7; customer_hours keeps 7."""
    folder = sql_copy(tmp_path / "sql", {
        "060_customer_features.sql": [("7 AS window_days", "10 AS window_days"),
                                      ("'7 DAYS'", "'10 DAYS'")],
    })  # fmt: skip
    names = ("customer_features", "customer_hours")
    objects = [o for o in sqlfiles.load(folder) if o.name in names]
    clocks = [timedelta(hours=h) for h in (0, 3, 30, 80, 11)]
    overrides = _same_rows(objects, customer_events(300, seed=7), names, clocks, 40)
    assert all(isinstance(overrides[n], CustomerView) for n in names)
    assert overrides["customer_features"].windows == (1, 10, 14, 30)
    assert overrides["customer_hours"].windows == (1, 7, 14, 30)


def test_customer_windows_shorter_than_a_day(tmp_path: Path) -> None:
    """Both customer views look back minutes and hours under their day labels (a soak's
    shortened sql/): the maintainer reads the INTERVAL, the label is only a value."""
    shorter = [("'1 DAY'", "'20 MINUTES'"), ("'7 DAYS'", "'2 HOURS'"),
               ("'14 DAYS'", "'5 HOURS'"), ("'30 DAYS'", "'10 HOURS'")]  # fmt: skip
    folder = sql_copy(tmp_path / "sql", {"060_customer_features.sql": shorter,
                                         "061_customer_hours.sql": shorter})  # fmt: skip
    names = ("customer_features", "customer_hours")
    objects = [o for o in sqlfiles.load(folder) if o.name in names]
    clocks = [timedelta(minutes=m) for m in (0, 15, 50, 130, 290, 700, 30)]
    overrides = _same_rows(objects, customer_events(800, seed=11), names, clocks, 40)
    assert all(isinstance(overrides[n], CustomerView) for n in names)
    assert overrides["customer_features"].state.spans[30] == 10 * 3_600_000_000


def test_session_horizon_and_bot_rule_changed(tmp_path: Path) -> None:
    """Both session views look back 5 days; a bot makes 4 clicks at most 0.3 s apart."""
    folder = sql_copy(tmp_path / "sql", {
        "030_session_features.sql": [("'7 DAYS'", "'5 DAYS'"), ("event_count >= 5",
                                     "event_count >= 4"), ("< 1.0 *", "< 0.3 *")],
        "050_vmis_history.sql": [("'7 DAYS'", "'5 DAYS'")],
    })  # fmt: skip
    names = ("session_features", "vmis_history")
    objects = [o for o in sqlfiles.load(folder) if o.name in names]
    clocks = [timedelta(hours=h) for h in (0, 0.2, 9, 30, 1)]
    overrides = _same_rows(objects, session_events(300, seed=11), names, clocks, 30)
    state = overrides["session_features"].state
    assert all(isinstance(overrides[n], SessionView) for n in names)
    assert state.horizon == timedelta(days=5) and state.bot_rule[0] == 4
    assert str(state.bot_rule[1]) == "0.3"


# --- a changed shape stops the engine ---------------------------------------------------------


def test_a_declared_maintainer_with_another_shape_raises_at_start(tmp_path: Path) -> None:
    folder = sql_copy(tmp_path / "sql", {
        "045_co_view_pairs.sql": [("WHERE action = 'view' AND", "WHERE action = 'view' AND "
                                   "product_id <> 'p0' AND")],
    })  # fmt: skip
    objects = sqlfiles.load(folder)
    with pytest.raises(ValueError, match="co_view_pairs: 045_co_view_pairs.toml names "
                                         "maintainer 'coview'.*shape") as raised:  # fmt: skip
        incremental_overrides(objects)
    assert "more than its parameters" in str(raised.value)
    with pytest.raises(ValueError, match="co_view_pairs.*'coview'"):
        Engine(EngineConfig.of(pg_dsn="", state_path=None, sql_dir=folder))
    # without the maintainer named, the SQL recomputes the view, and the others keep theirs
    (folder / "045_co_view_pairs.toml").write_text('keys = ["product_a", "product_b"]\n')
    found = incremental_overrides(sqlfiles.load(folder))
    assert "co_view_pairs" not in found
    assert isinstance(found["trending_by_category"], TrendingMaintainer)


@pytest.mark.parametrize(("file", "edit", "problem"), [
    ("040_trending_by_category.sql", ("THEN 3", "THEN 2"), "more than its parameters"),
    ("061_customer_hours.sql", ("7 AS window_days", "14 AS window_days"), "repeat a label"),
    ("061_customer_hours.sql", ("'7 DAYS'", "'8 DAYS'"), "window_days \\[7\\] must look back"),
    ("050_vmis_history.sql", ("'7 DAYS'", "'6 DAYS'"), "must look back as far as each other"),
    ("045_co_view_pairs.toml", ('"coview"', '"coveiw"'), "there is no maintainer 'coveiw'"),
])  # fmt: skip
def test_other_mismatches_name_what_differs(tmp_path: Path, file: str, edit: tuple[str, str],
                                            problem: str) -> None:  # fmt: skip
    folder = sql_copy(tmp_path / "sql", {file: [edit]})
    with pytest.raises(ValueError, match=problem):
        incremental_overrides(sqlfiles.load(folder))


def test_sql_check_reports_each_views_maintainer(tmp_path: Path) -> None:
    good = CliRunner().invoke(app, ["sql", "check"])
    assert good.exit_code == 0, good.output
    assert "maintainers: 6 match, 0 mismatch" in good.output
    folder = sql_copy(tmp_path / "sql", {
        "045_co_view_pairs.sql": [("HAVING COUNT(*) >= 3", "HAVING COUNT(*) >= 3 AND "
                                   "COUNT(*) < 90")],
    })  # fmt: skip
    bad = CliRunner().invoke(app, ["sql", "check", "--sql-dir", str(folder)])
    assert bad.exit_code == 1, bad.output
    assert "maintainers: 5 match, 1 mismatch" in bad.output
    line = next(x for x in bad.output.splitlines() if "co_view_pairs" in x and "coview" in x)
    assert "mismatch" in line
    (folder / "045_co_view_pairs.toml").write_text("feed = 1\n")
    broken = CliRunner().invoke(app, ["sql", "check", "--sql-dir", str(folder)])
    assert broken.exit_code == 2 and "045_co_view_pairs.toml" in broken.output
