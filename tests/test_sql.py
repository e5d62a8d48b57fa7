"""sql/: every statement parses with sqlglot's RisingWave dialect (Command fallbacks are
reported as unchecked), `flashrec sql check` lists each object, and the views' transpiled SQL
has the documented meaning on small hand-made event sets."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from engine_support import valid_events
from rw_support import mixed_stream, table_views, values_of
from sqlglot import exp
from typer.testing import CliRunner

from recommender import sqlfiles
from recommender.cli import app
from recommender.engine import evaluate
from recommender.events import format_ts

T0 = datetime(2024, 3, 15, 14, 0)
EXPECTED_VIEWS = ["co_view_pairs", "session_features", "trending_by_category", "vmis_history"]


def ev(i: int, session: str, product: str, action: str = "view", sec: float = 0.0,
       category: str = "shoes", event_id: str | None = None) -> dict:  # fmt: skip
    t = T0 + timedelta(seconds=sec)
    return {"event_id": event_id or f"e{i}", "session_id": session, "user_id": f"u-{session}",
            "product_id": product, "product_name": f"name {product}", "category": category,
            "action": action, "ts": format_ts(t),
            "device": "mobile", "price": 10.0}  # fmt: skip


def test_every_statement_parses_and_commands_are_unchecked() -> None:
    objects = sqlfiles.load()
    assert [o.status for o in objects if o.status == "error"] == []
    views = [o.name for o in objects if o.is_view]
    for name in EXPECTED_VIEWS:
        assert name in views
    assert views.index("session_features") < views.index("trending_by_category")
    table = next(o for o in objects if o.name == sqlfiles.CLICKSTREAM)
    assert table.kind == "table" and table.status == "unchecked"  # sqlglot lacks APPEND ONLY
    assert not [o for o in objects if o.kind == "source"]  # every view reads the table
    sub = next(o for o in objects if o.kind == "subscription")
    assert sub.status == "unchecked" and "Command" in sub.detail


def test_check_reports_errors_and_fallbacks(tmp_path: Path) -> None:
    (tmp_path / "010_ok.sql").write_text(
        "-- a comment; with a semicolon\nCREATE MATERIALIZED VIEW v AS SELECT 1 AS x;"
    )
    (tmp_path / "020_bad.sql").write_text("CREATE MATERIALIZED VIEW w AS SELECT FROM (;")
    (tmp_path / "030_cmd.sql").write_text("CREATE SUBSCRIPTION s FROM v WITH (retention='1h');")
    status = {o.name: o.status for o in sqlfiles.load(tmp_path)}
    assert status == {"v": "ok", "w": "error", "s": "unchecked"}
    result = CliRunner().invoke(app, ["sql", "check", "--sql-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "1 ok, 1 unchecked, 1 error" in result.output
    good = CliRunner().invoke(app, ["sql", "check"])
    assert good.exit_code == 0, good.output
    for name in EXPECTED_VIEWS:
        assert name in good.output
    shown = CliRunner().invoke(app, ["sql", "show", "trending_by_category"])
    assert shown.exit_code == 0 and "$now" in shown.output and "TUMBLE" not in shown.output
    missing = CliRunner().invoke(app, ["sql", "show", "nope"])
    assert missing.exit_code == 2 and "no view" in missing.output


def test_co_view_pairs_counts_distinct_sessions_in_window() -> None:
    events = []
    for k, s in enumerate(["s1", "s2", "s3"]):
        events += [ev(10 * k, s, "a", sec=100 + k), ev(10 * k + 1, s, "b", sec=101 + k),
                   ev(10 * k + 2, s, "a", sec=102 + k)]  # fmt: skip
    events += [ev(50, "s4", "a", sec=0), ev(51, "s4", "c", sec=1)]
    events += [ev(60, "s5", "a", action="add_to_cart", sec=110), ev(61, "s5", "b", sec=111)]
    now = T0 + timedelta(minutes=31)  # s1..s3 at 14:01:40+ stay; s4 at 14:00:00 is out
    rows = evaluate(events, now)["co_view_pairs"]
    assert rows == [("a", "name a", "b", "name b", 3)]
    assert evaluate(events, T0 + timedelta(minutes=32))["co_view_pairs"] == []


def test_trending_ranks_engagement_per_window_and_skips_bots() -> None:
    events = [ev(1, "h1", "x", sec=10), ev(2, "h1", "y", "add_to_cart", sec=20),
              ev(3, "h2", "y", "purchase", sec=30), ev(4, "h2", "z", sec=400),
              ev(5, "h3", "x", sec=40, category="bags")]  # fmt: skip
    bot = [ev(100 + i, "bot", "x", sec=50 + 0.2 * i) for i in range(8)]
    now = T0 + timedelta(minutes=10)
    rows = evaluate(events + bot, now)["trending_by_category"]
    first = T0
    assert [r for r in rows if r[0] == "shoes" and r[7] == first] == [
        ("shoes", 1, "y", "name y", 8, 0, 1, first),
        ("shoes", 2, "x", "name x", 1, 1, 0, first),
    ]
    assert ("shoes", 1, "z", "name z", 1, 1, 0, first + timedelta(minutes=5)) in rows
    assert ("bags", 1, "x", "name x", 1, 1, 0, first) in rows
    assert evaluate(events, T0 + timedelta(hours=2))["trending_by_category"] == []


def test_session_features_and_bot_rule() -> None:
    human = [ev(i, "h", f"p{i}", sec=i * 7.0, category=f"c{i % 2}") for i in range(6)]
    human.append(ev(9, "h", "p0", "add_to_cart", sec=50))
    bot = [ev(100 + i, "b", f"p{i}", sec=0.3 * i) for i in range(6)]
    rows = {r[0]: r for r in evaluate(human + bot, T0 + timedelta(minutes=5))["session_features"]}
    h = rows["h"]
    assert h[1:5] == ("u-h", T0, T0 + timedelta(seconds=50), 7)
    assert h[5:11] == (6, 1, 0, 6, 3, "mobile")  # c0, c1 and the cart add's shoes
    assert abs(h[11] - 50 / 6) < 1e-9 and h[12] == 7.0 and h[13] is False
    b = rows["b"]
    assert b[13] is True and abs(b[12] - 0.3) < 1e-6


def test_vmis_history_lists_first_viewed_items_of_humans() -> None:
    events = [ev(1, "h", "b", sec=1), ev(2, "h", "a", sec=2), ev(3, "h", "b", sec=3),
              ev(4, "h", "c", "purchase", sec=9)]  # fmt: skip
    events += [ev(10 + i, "bot", f"p{i}", sec=0.1 * i) for i in range(10)]
    rows = evaluate(events, T0 + timedelta(days=1))["vmis_history"]
    assert rows == [("h", ["b", "a"], T0 + timedelta(seconds=9))]
    assert evaluate(events, T0 + timedelta(days=8))["vmis_history"] == []


def test_tumble_windows_are_epoch_aligned_and_now_is_the_clock() -> None:
    view = next(v for v in sqlfiles.views() if v.name == "trending_by_category")
    sql = sqlfiles.to_duckdb(sqlfiles.view_query(view))
    assert sqlfiles.NOW_MARKER in sql and "TUMBLE" not in sql.upper()
    bound = sqlfiles.bind_now(sql, T0)
    assert "TIMESTAMP '2024-03-15 14:00:00.000000'" in bound
    assert sqlfiles.horizon(sqlfiles.view_query(view)) == timedelta(hours=1)
    events = [ev(1, "h", "x", sec=299.9), ev(2, "h", "y", sec=300.0)]
    starts = {r[2]: r[7] for r in evaluate(events, T0 + timedelta(minutes=6))[
        "trending_by_category"]}  # fmt: skip
    assert starts == {"x": T0, "y": T0 + timedelta(minutes=5)}


def test_duplicate_event_ids_count_once() -> None:
    events = [ev(1, "s", "a", sec=1), ev(1, "s", "a", sec=2, event_id="e1")]
    rows = evaluate(events, T0 + timedelta(minutes=1))["session_features"]
    assert rows[0][4] == 1


# --- the clickstream table: the same meaning on RisingWave and in the embedded engine ------


def test_clickstream_table_deduplicates_without_a_watermark() -> None:
    assert sqlfiles.clickstream_problems() == []
    table = sqlfiles.clickstream_table()
    assert table.key == ["event_id"] and table.on_conflict == "DO NOTHING"
    assert table.retention >= timedelta(days=30) and not table.watermark
    for view in sqlfiles.views():  # every view reads the deduplicated table
        assert sqlfiles.reads(view) & {sqlfiles.CLICKSTREAM, "session_features"}, view.name
    assert sqlfiles.clickstream_table().columns[0] == ("event_id", "VARCHAR")
    old = sqlfiles.load()[0].sql
    broken = (old.replace("    PRIMARY KEY (event_id)\n", "    WATERMARK FOR ts AS ts - "
                          "INTERVAL '5 MINUTES'\n").replace("2678400", "86400"))
    objects = [sqlfiles.check_statement("010.sql", broken)] + sqlfiles.views()
    problems = " | ".join(sqlfiles.clickstream_problems(objects))
    assert "PRIMARY KEY" in problems and "WATERMARK" in problems and "retention" in problems


def test_table_semantics_equal_the_engine_on_late_duplicate_and_malformed_events() -> None:
    items = mixed_stream()
    now = T0 + timedelta(hours=5, minutes=10)
    engine = evaluate(valid_events(items), now)  # the engine's dedup at ingest
    assert table_views(values_of(items), now) == engine
    assert engine["customer_features"] and engine["session_features"]
    counts = {r[0]: r[4] for r in engine["session_features"]}
    assert counts["s0"] == 6  # the retry and the differing copy of e1 are not counted


def test_customer_hours_are_utc_whatever_the_session_time_zone() -> None:
    for view in sqlfiles.views():  # RisingWave: every hour of day is read in UTC
        for node in sqlfiles.view_query(view).find_all(exp.Extract):
            if node.name.upper() == "HOUR":
                zone = node.expression
                assert isinstance(zone, exp.AtTimeZone) and zone.args["zone"].name == "UTC"
    items = [ev(1, "s", "a", "purchase", sec=9.5 * 3600)]  # 23:30 UTC
    now = T0 + timedelta(hours=10)
    for tz in ("UTC", "America/New_York"):
        rows = table_views(values_of(items), now, tz)["customer_hours"]
        assert {r[2] for r in rows} == {23}, tz
    assert evaluate(items, now)["customer_hours"] == table_views(values_of(items), now)[
        "customer_hours"]


def test_every_incremental_maintainer_still_applies_to_sql() -> None:
    """After a change to a view's SQL beyond its parameters its maintainer's shape must
    follow (or the engine refuses to start: the view's .toml names the maintainer)."""
    from recommender.engine.engine import incremental_overrides

    found = incremental_overrides(sqlfiles.load())
    assert {"co_view_pairs", "trending_by_category", "customer_features",
            "customer_hours", "session_features", "vmis_history"} <= set(found)  # fmt: skip
