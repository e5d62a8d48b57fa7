"""Bot sessions (sql/030_session_features.sql: at least 5 events with a mean gap under 1 s)
are kept out of trending_by_category and vmis_history. The views' SQL runs on DuckDB
(`recommender.engine.evaluate`, the engine's batch reference); a control run of the same SQL
with the bot rule switched off (`is_bot` always false) shows the bot WOULD top trending and
enter the history, so the assertions fail if the filter is removed."""

from __future__ import annotations

import re
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from producers.flash_sale import FlashSaleConfig, generate, plan
from recommender import sqlfiles
from recommender.config import SQL_DIR
from recommender.engine import evaluate
from recommender.events import format_ts

T0 = datetime(2024, 3, 15, 14, 0)
NOW = T0 + timedelta(minutes=10)
BOT_RULE = re.compile(r"event_count >= 5\s+AND\s.*?\sAS is_bot", re.DOTALL)


def ev(n: int, session: str, product: str, sec: float, action: str = "view") -> dict:
    t = T0 + timedelta(seconds=sec)
    return {"event_id": f"e{n}", "session_id": session, "user_id": f"u-{session}",
            "product_id": product, "product_name": f"name {product}", "category": "shoes",
            "action": action, "ts": format_ts(t),
            "device": "desktop", "price": 10.0}  # fmt: skip


@pytest.fixture(scope="module")
def no_bot_rule(tmp_path_factory: pytest.TempPathFactory) -> list[sqlfiles.SqlObject]:
    """sql/ with session_features.is_bot always FALSE (the control: no bot filtering)."""
    folder = tmp_path_factory.mktemp("sql")
    for path in sorted(Path(SQL_DIR).glob("*.sql")):
        shutil.copy(path, folder / path.name)
    features = folder / "030_session_features.sql"
    text, found = BOT_RULE.subn("FALSE AS is_bot", features.read_text())
    assert found == 1, "the bot rule of sql/030_session_features.sql was not found"
    features.write_text(text)
    return sqlfiles.load(folder)


def _events() -> list[dict]:
    """Three human sessions (about 20 s between clicks) that make 'boot' the humans' top
    product, and one bot: 40 views of 'bot-bag' 0.25 s apart plus a cart add."""
    events, n = [], 0
    for k, products in enumerate([["boot", "sock", "boot"], ["boot", "lace"], ["sock", "boot"]]):
        for i, product in enumerate(products):
            events.append(ev(n, f"human{k}", product, 30 + 10 * k + 20 * i))
            n += 1
    for i in range(40):
        events.append(ev(n, "bot", "bot-bag", 60 + 0.25 * i))
        n += 1
    events.append(ev(n, "bot", "bot-bag", 70.1, "add_to_cart"))
    return events


def _top(rows: list[tuple]) -> list[str]:
    """Products of the first trending window of 'shoes', by rank."""
    return [r[2] for r in sorted(rows, key=lambda r: r[1]) if r[0] == "shoes" and r[7] == T0]


def test_bot_is_flagged_by_the_rule() -> None:
    features = {r[0]: r for r in evaluate(_events(), NOW)["session_features"]}
    assert features["bot"][-1] is True and features["bot"][4] == 41
    assert all(features[f"human{k}"][-1] is False for k in range(3))


def test_bot_is_kept_out_of_trending_and_history(no_bot_rule) -> None:
    events = _events()
    views = evaluate(events, NOW)
    top = _top(views["trending_by_category"])
    assert top[0] == "boot" and "bot-bag" not in top
    assert not [r for r in views["trending_by_category"] if r[2] == "bot-bag"]
    history = {r[0]: r[1] for r in views["vmis_history"]}
    assert history == {"human0": ["boot", "sock"], "human1": ["boot", "lace"],
                       "human2": ["sock", "boot"]}

    # control: the same SQL without the bot rule lets the bot dominate
    control = evaluate(events, NOW, no_bot_rule)
    assert _top(control["trending_by_category"])[:2] == ["bot-bag", "boot"]
    assert "bot" in {r[0] for r in control["vmis_history"]}


def test_generated_bots_never_reach_the_history_or_trending(no_bot_rule) -> None:
    """The flash-sale generator's bots (50-400 views about 0.3 s apart): none of their
    sessions is in vmis_history, and trending's view counts are the humans' views alone."""
    cfg = FlashSaleConfig(seed=9, events=None, duration_s=600, rate=20, bot_share=0.05)
    sale = plan(cfg)
    events = [e for e in generate(cfg, sale) if isinstance(e, dict)]
    clock = datetime.fromisoformat(events[-1]["ts"].replace("Z", "")) + timedelta(seconds=1)
    bots_seen = {e["session_id"] for e in events} & sale.bot_sessions
    assert len(bots_seen) >= 3
    views = evaluate(events, clock)
    flagged = {r[0] for r in views["session_features"] if r[-1]}
    assert flagged == bots_seen
    assert not {r[0] for r in views["vmis_history"]} & bots_seen
    human_views: dict[tuple, int] = {}  # (category, product, 5-minute window) -> views
    for e in events:
        if e["action"] == "view" and e["session_id"] not in bots_seen:
            t = datetime.fromisoformat(e["ts"].replace("Z", ""))
            window = t.replace(minute=t.minute - t.minute % 5, second=0, microsecond=0)
            key = (e["category"], e["product_id"], window)
            human_views[key] = human_views.get(key, 0) + 1
    assert views["trending_by_category"]
    for r in views["trending_by_category"]:
        assert r[5] == human_views.get((r[0], r[2], r[7]), 0), r

    control = evaluate(events, clock, no_bot_rule)
    assert {r[0] for r in control["vmis_history"]} & bots_seen == bots_seen
