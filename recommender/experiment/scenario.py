"""The replayed days: a seeded flash-sale day after history days, or a real data set.

A `Scenario` maps onto producers.flash_sale.FlashSaleConfig: the generator starts at midnight
`history_days` before the test day and runs to the end of the test day; the sale starts at
`sale_hour` of the test day and lasts to the end of the replay (the generator has no sale end).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from recommender.experiment.clicks import Clicks, from_events

DAY_S = 86_400


@dataclass(frozen=True)
class Scenario:
    seed: int = 42
    day: date = date(2024, 3, 15)  # the test day (UTC); the nightly models are built at its start
    history_days: int = 1  # days of traffic before the test day
    hours: float = 24.0  # replayed hours of the test day
    rate: float = 4.0  # valid events per second of event time
    sale: bool = True  # False: the same day without a flash sale
    sale_hour: float = 14.0  # sale start, hours after the test day's midnight
    sale_strength: float = 0.6  # share of new sessions that are sale sessions at full ramp
    sale_focus: float = 0.8  # share of a sale session's views that are sale products
    sale_products: int = 60
    n_products: int = 5000
    bot_share: float = 0.0

    @property
    def start(self) -> datetime:
        return datetime(self.day.year, self.day.month, self.day.day, tzinfo=UTC) - timedelta(
            days=self.history_days
        )

    @property
    def cut(self) -> datetime:
        """Midnight at the start of the test day: the nightly models see events before it."""
        return self.start + timedelta(days=self.history_days)

    @property
    def sale_start(self) -> datetime:
        return self.cut + timedelta(hours=self.sale_hour)

    @property
    def end(self) -> datetime:
        return self.cut + timedelta(hours=self.hours)

    def flash_sale_config(self) -> Any:
        from producers.flash_sale import FlashSaleConfig

        return FlashSaleConfig(
            seed=self.seed,
            start=self.start,
            events=None,
            duration_s=(self.end - self.start).total_seconds(),
            rate=self.rate,
            sale_offset_s=(self.sale_start - self.start).total_seconds(),
            sale_strength=self.sale_strength if self.sale else 0.0,
            sale_focus=self.sale_focus,
            sale_products=self.sale_products,
            n_products=self.n_products,
            bot_share=self.bot_share,
        )

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["day"] = self.day.isoformat()
        out["cut"] = self.cut.isoformat()
        out["sale_start"] = self.sale_start.isoformat() if self.sale else None
        return out


@dataclass
class Replay:
    """What the experiment replays: the clicks, the midnight cut and the sale window."""

    name: str
    clicks: Clicks
    cut_ms: int  # the nightly models see events before this time
    end_ms: int  # evaluations stop here
    sale_start_ms: int | None  # None: no sale window (real data)
    split_ms: int  # normal hours are [cut, split), the "sale window" [split, end)
    info: dict[str, Any]


def _ms(when: datetime) -> int:
    return round(when.timestamp() * 1000)


def flash_sale_replay(
    scenario: Scenario, progress: Callable[[int], None] | None = None
) -> Replay:
    """Generate the scenario's events (deterministic for its seed) as columns."""
    from producers.flash_sale import generate, plan

    cfg = scenario.flash_sale_config()
    sale = plan(cfg)
    clicks = from_events(generate(cfg, sale), progress)
    info = scenario.as_dict()
    info["sale_categories"] = list(sale.sale_categories) if scenario.sale else []
    info["sale_product_ids"] = list(sale.sale_products) if scenario.sale else []
    return Replay(
        name=f"flash-sale seed {scenario.seed}" + ("" if scenario.sale else " (no sale)"),
        clicks=clicks,
        cut_ms=_ms(scenario.cut),
        end_ms=_ms(scenario.end),
        sale_start_ms=_ms(scenario.sale_start) if scenario.sale else None,
        split_ms=_ms(scenario.sale_start),
        info=info,
    )


def dataset_replay(train: Path, test: Path, fmt: str = "yoochoose") -> Replay:
    """A real data set: `train` is the history, `test` the replayed day(s).

    The cut is the first event of `test`; `split` is its median event time, so the "normal"
    and "later" halves of the test period can be compared like normal hours and a sale."""
    from producers.replay import read_dataset

    def merged() -> Iterator[dict[str, Any]]:
        import heapq

        key = lambda e: e["ts"]  # noqa: E731 - ISO strings of one format sort by time
        yield from heapq.merge(read_dataset(train, fmt), read_dataset(test, fmt), key=key)

    test_first = min(e["ts"] for e in read_dataset(test, fmt))
    clicks = from_events(merged())
    from recommender.events import parse_ts

    cut = _ms(parse_ts(test_first))
    end = int(clicks.ts_ms[-1]) + 1
    after = clicks.ts_ms[clicks.ts_ms >= cut]
    split = int(after[len(after) // 2]) if len(after) else cut
    info = {"train": str(train), "test": str(test), "format": fmt,
            "cut": datetime.fromtimestamp(cut / 1000, UTC).isoformat(),
            "split": datetime.fromtimestamp(split / 1000, UTC).isoformat()}
    return Replay(f"{fmt}: {Path(test).name}", clicks, cut, end, None, split, info)
