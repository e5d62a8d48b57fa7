"""The live-versus-nightly experiment on small seeded replays (docs/flash-sale.md)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recommender import surge
from recommender.experiment import runner, scores
from recommender.experiment.blended import recent_counts
from recommender.experiment.live import LiveHistory, also_viewed_table
from recommender.experiment.nightly_vs_live import Params
from recommender.experiment.scenario import Scenario, flash_sale_replay
from recommender.experiment.sqlviews import SqlViews
from recommender.serving.live_index import LiveIndex

logging.getLogger("sqlglot").setLevel(logging.ERROR)

# 1 history day and 6 replayed hours at 1 event/s; the sale (if any) starts at 03:00.
SMALL = dict(seed=5, rate=1.0, history_days=1, hours=6.0, sale_hour=3.0, n_products=2000)
PARAMS = Params(refresh_s=60.0)


def _run(scenario: Scenario, out: Path | None = None) -> dict:
    return runner.run(lambda: flash_sale_replay(scenario), PARAMS, out, "test",
                          replicates=200)


@pytest.fixture(scope="module")
def no_sale() -> dict:
    return _run(Scenario(sale=False, **SMALL))


@pytest.fixture(scope="module")
def strong_sale(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("report")
    return _run(Scenario(sale=True, sale_strength=0.9, **SMALL), out), out


def value(summary: dict, key: str) -> float:
    return summary["stats"][key]["value"]


def test_without_a_sale_nightly_and_live_are_close(no_sale: dict) -> None:
    for window in ("normal", "sale"):
        night = value(no_sale, f"vmis_nightly|hit_rate|{window}")
        live = value(no_sale, f"vmis_live|hit_rate|{window}")
        assert night > 0.2, night  # the models work at all
        assert abs(live - night) < 0.03, (window, night, live)
    # the nightly model does not lose much in the later hours without a sale
    assert abs(value(no_sale, "vmis|hit_rate|nightly_drop")) < 0.1
    # no drop, so no "share recovered" is claimed
    assert value(no_sale, "vmis|hit_rate|recovered_share") is None


def test_with_a_strong_sale_live_beats_nightly_in_the_sale(strong_sale) -> None:
    summary, _ = strong_sale
    night = value(summary, "vmis_nightly|hit_rate|sale")
    live = value(summary, "vmis_live|hit_rate|sale")
    assert live > night + 0.1, (night, live)
    lo, _ = summary["stats"]["vmis|hit_rate|live_minus_nightly_sale"]["ci"]
    assert lo > 0  # not a bootstrap accident
    assert value(summary, "vmis|hit_rate|nightly_drop") > 0.2
    assert value(summary, "vmis|hit_rate|recovered_share") > 0.5
    assert summary["stats"]["vmis|mrr|live_minus_nightly_sale"]["ci"][0] > 0
    assert value(summary, "also_live|hit_rate|sale") > value(summary, "also_nightly|hit_rate|sale")
    # before the sale the two are close: the gap comes from the sale
    assert abs(value(summary, "vmis|hit_rate|live_minus_nightly_normal")) < 0.03


def test_report_files_are_written_and_parse(strong_sale) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary, out = strong_sale
    data = json.loads((out / "summary.json").read_text())
    assert data["run"]["evaluations"] == summary["run"]["evaluations"] > 1000
    assert len(data["hourly"]["vmis_live"]) == 6
    assert data["windows"]["sale_hours"] == [3.0, 6.0]
    ci = data["stats"]["vmis_live|hit_rate|sale"]["ci"]
    assert ci[0] <= data["stats"]["vmis_live|hit_rate|sale"]["value"] <= ci[1]
    text = (out / "report.md").read_text()
    assert "| VMIS-kNN live |" in text and "recovered share" in text
    for name in ("hit_rate_per_hour.png", "mrr_per_hour.png", "also_viewed_per_hour.png"):
        assert f"]({name})" in text
        image = plt.imread(out / name)
        assert image.shape[0] > 100 and image.shape[1] > 100


def test_live_history_equals_the_sql_view() -> None:
    """The incrementally kept vmis_history equals sql/050 run by DuckDB at the same clock,
    bots included (they must be left out by both)."""
    replay = flash_sale_replay(Scenario(seed=3, rate=0.5, history_days=1, hours=1,
                                        n_products=500, bot_share=0.05))
    c = replay.clicks
    views = SqlViews(c)
    views.append(0, len(c))
    state = LiveHistory()
    for i in range(len(c)):
        state.add(int(c.session[i]), int(c.product[i]), int(c.action[i]), int(c.ts_ms[i]))
    sql_rows = views.vmis_history(int(c.ts_ms[-1]))
    live_rows = state.rows()
    bots = sum(1 for s in state.items if state.is_bot(s))
    assert bots > 0
    assert len(sql_rows) > 1000
    assert live_rows == sql_rows
    # the sessions of the last stretch, newest first, and the surge's counts over them: as
    # the API's live index counts the same rows
    index = LiveIndex()
    index.build([(str(s), [str(i) for i in items], t) for s, items, t in live_rows])
    for back_ms in (0, 60_000, 1_800_000, 10**9):
        since = int(c.ts_ms[-1]) - back_ms
        want = sorted((s for s in state.last_ms if state.last_ms[s] >= since),
                      key=lambda s: -state.last_ms[s])  # fmt: skip
        assert [state.last_ms[s] for s in state.recent(since)] == [state.last_ms[s] for s in want]
        assert set(state.recent(since)) == set(want)
    now_ms = round(index.last_change * 1000)
    counts = recent_counts(state, now_ms)
    assert len(counts) > 100
    assert {str(i): n for i, n in counts.items()} == index.recent_counts(surge.RECENT_S)


def test_also_viewed_table_orders_by_count_then_product_id() -> None:
    ids = ["P3", "P1", "P2", "P0"]
    table = also_viewed_table([(0, 1, 3), (0, 2, 5), (0, 3, 3), (1, 2, 4)], ids, how_many=2)
    assert table[0] == [2, 3]  # count 5, then P0 before P1 at count 3
    assert table[1] == [2, 0]


def test_bootstrap_is_deterministic_and_brackets_the_value(no_sale: dict) -> None:
    stats = no_sale["stats"]
    for key in ("vmis_nightly|mrr|normal", "popular_live|hit_rate|sale"):
        lo, hi = stats[key]["ci"]
        assert lo <= stats[key]["value"] <= hi
    assert set(scores.WINDOWS) == {"normal", "sale"}


def test_cli_writes_the_report_and_rejects_bad_input(tmp_path: Path) -> None:
    from recommender.cli import app

    runner = CliRunner()
    out = tmp_path / "cli"
    args = ["experiment", "flash-sale", "--seed", "1", "--rate", "0.3", "--hours", "2",
            "--sale-hour", "1", "--products", "500", "--refresh-s", "120", "--bootstrap", "50",
            "--quiet", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "recovered by live" in result.output
    first = json.loads((out / "summary.json").read_text())["stats"]
    again = runner.invoke(app, [*args[:-1], str(tmp_path / "again")])
    assert again.exit_code == 0, again.output
    assert json.loads((tmp_path / "again" / "summary.json").read_text())["stats"] == first
    bad = runner.invoke(app, [*args, "--sale-hour", "5"])
    assert bad.exit_code == 2 and "--sale-hour" in bad.output
    bad = runner.invoke(app, [*args, "--day", "15/03/2024"])
    assert bad.exit_code == 2 and "YYYY-MM-DD" in bad.output


def test_live_co_view_incremental_equals_the_sql() -> None:
    """The live path's co_view_pairs (the engine's incremental maintainer) equals sql/020
    recomputed by DuckDB, refresh after refresh."""
    replay = flash_sale_replay(Scenario(seed=4, rate=2.0, history_days=1, hours=2,
                                        sale_hour=1, n_products=300))
    c = replay.clicks
    inc, sql = SqlViews(c, incremental=True), SqlViews(c)
    lo = c.index_at(replay.cut_ms)
    step = 600_000  # 10 minutes of event time
    checked = 0
    for now in range(replay.cut_ms + step, replay.end_ms, step):
        hi = c.index_at(now)
        inc.append(lo, hi)
        sql.append(lo, hi)
        lo = hi
        clock = int(c.ts_ms[hi - 1])
        rows = sorted(sql.co_view(clock))
        assert sorted(inc.co_view(clock)) == rows
        checked += len(rows)
    assert checked > 100


def test_dataset_command_reports_a_missing_file(tmp_path: Path) -> None:
    from recommender.cli import app

    result = CliRunner().invoke(app, [
        "experiment", "dataset", "--train", str(tmp_path / "nope.txt"), "--test",
        str(tmp_path / "nope2.txt"), "--out", str(tmp_path / "out"), "--quiet",
    ])  # fmt: skip
    assert result.exit_code == 2
    assert "not found" in result.output


def test_cli_off_a_terminal_logs_its_progress(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    """Not on a terminal (CI, nohup), the run says what it does and how far it is."""
    import logging

    from recommender.cli import app

    args = ["experiment", "flash-sale", "--seed", "1", "--rate", "0.3", "--hours", "2",
            "--sale-hour", "1", "--products", "500", "--refresh-s", "120", "--bootstrap", "20",
            "--out", str(tmp_path / "out")]
    caplog.handler.setLevel(logging.INFO)  # the command sets its loggers' levels itself
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = [r.getMessage() for r in caplog.records if r.name == "flashrec.progress"]
    assert lines[0] == "experiment: generating events: started"
    assert any(x.startswith("experiment: replaying the day") and "started (" in x for x in lines)
    assert lines[-1].endswith("(done)") and "(100%)" in lines[-1]
