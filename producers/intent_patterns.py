"""Multi-day shop traffic with planted purchase-intent patterns (for `flashrec intent train`).

`generate(cfg)` yields contract events (dicts) in timestamp order over `cfg.days` days.
Deterministic for a seed. The planted patterns, which the intent features describe:
- Time of day: a session starts in the daytime (08-17 UTC, browsing) or in the evening
  (18-22 UTC, buying) or at night; evening sessions buy more often.
- Device: daytime sessions are mostly on mobile, evening sessions mostly on desktop, and a
  desktop session buys more often (browse on mobile, buy on desktop).
- Returning users: each visit in the last 7 days raises the odds of buying; a cart add in the
  last 14 days without a purchase since raises them more; a purchase in the last 2 days lowers
  them. Users also differ in a hidden affinity.
- Funnel: a buying session views products, adds one to the cart and ends with its purchase;
  a session that does not buy abandons a cart with probability `abandon_prob`.
- Bots: `bot_sessions_per_day` sessions of 100-300 clicks about 0.3 s apart on desktop; half
  of them end with add_to_cart + purchase (checkout bots), so training on them would mislead.

`purchase_logit` is the planted model; `IntentTruth` collects each session's planted
probability and the bot session ids when passed to `generate`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from producers.products import Product, build_catalog

DEFAULT_START = datetime(2024, 3, 1, tzinfo=UTC)
DAY_S = 86_400


@dataclass
class IntentConfig:
    seed: int = 7
    start: datetime = DEFAULT_START
    days: int = 21
    users: int = 1500
    visits_per_day: float = 0.35  # mean sessions per user per day (user rates vary around it)
    evening_share: float = 0.35
    night_share: float = 0.05
    n_products: int = 800
    abandon_prob: float = 0.2
    gap_median_s: float = 45.0
    bot_sessions_per_day: int = 4
    base_logit: float = -4.0
    evening_effect: float = 1.4
    desktop_effect: float = 1.0
    visit_effect: float = 0.35  # per visit in the last 7 days (at most 4 counted)
    cart_effect: float = 1.2  # a cart add in the last 14 days, no purchase since
    recent_buy_effect: float = -1.5  # a purchase in the last 2 days


@dataclass
class IntentTruth:
    """Filled by `generate`: planted purchase probability per human session, bot sessions."""

    probability: dict[str, float] = field(default_factory=dict)
    bot_sessions: set[str] = field(default_factory=set)


@dataclass
class _User:
    user_id: str
    rate: float
    affinity: float
    visits: list[float] = field(default_factory=list)  # session start times (epoch s)
    last_cart: float | None = None
    last_buy: float | None = None


def purchase_logit(cfg: IntentConfig, evening: bool, desktop: bool, visits_7d: int,
                   open_cart: bool, bought_2d: bool, affinity: float) -> float:
    """The planted log-odds that a human session ends in a purchase."""
    return (cfg.base_logit + cfg.evening_effect * evening + cfg.desktop_effect * desktop
            + cfg.visit_effect * min(visits_7d, 4) + cfg.cart_effect * open_cart
            + cfg.recent_buy_effect * bought_2d + 0.5 * affinity)


def generate(cfg: IntentConfig, truth: IntentTruth | None = None) -> Iterator[dict[str, Any]]:
    """Contract events of `cfg.days` days in timestamp order."""
    rng = random.Random(cfg.seed)
    catalog = build_catalog(cfg.n_products, cfg.seed)
    weights = [1.0 / (i + 1) ** 0.9 for i in range(len(catalog))]
    users = [
        _User(f"iu{cfg.seed}-{n}", cfg.visits_per_day * rng.lognormvariate(-0.3, 0.8),
              rng.gauss(0.0, 1.0))
        for n in range(cfg.users)
    ]
    start_s = cfg.start.timestamp()
    sessions: list[list[tuple[float, str, str, str, Product, str]]] = []
    for day in range(cfg.days):
        day_s = start_s + day * DAY_S
        starts = []
        for user in users:
            for _ in range(_poisson(rng, user.rate)):
                starts.append((day_s + _start_hour(rng, cfg) * 3600 + rng.random() * 3600, user))
        starts.sort(key=lambda s: s[0])
        for t, user in starts:  # in time order, so a user's history is known at each start
            sessions.append(_human_session(rng, cfg, catalog, weights, user, t, len(sessions),
                                           truth))
        for _ in range(cfg.bot_sessions_per_day):
            t = day_s + rng.random() * DAY_S
            sessions.append(_bot_session(rng, cfg, catalog, t, len(sessions), truth))
    rows = [row for s in sessions for row in s]
    rows.sort(key=lambda r: (r[0], r[1]))
    for n, (t, session_id, user_id, device, product, action) in enumerate(rows):
        yield {
            "event_id": f"ie{cfg.seed}-{n}",
            "session_id": session_id,
            "user_id": user_id,
            "product_id": product.product_id,
            "product_name": product.name,
            "category": product.category,
            "action": action,
            "ts": _iso(t),
            "device": device,
            "price": product.price,
        }


def _poisson(rng: random.Random, mean: float) -> int:
    limit, k, p = math.exp(-mean), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def _start_hour(rng: random.Random, cfg: IntentConfig) -> int:
    r = rng.random()
    if r < cfg.night_share:
        return rng.randrange(0, 8)
    if r < cfg.night_share + cfg.evening_share:
        return rng.randrange(18, 23)
    return rng.randrange(8, 18)


def _device(rng: random.Random, evening: bool) -> str:
    r = rng.random()
    if evening:
        return "desktop" if r < 0.7 else "mobile" if r < 0.95 else "tablet"
    return "mobile" if r < 0.7 else "desktop" if r < 0.92 else "tablet"


def _human_session(rng: random.Random, cfg: IntentConfig, catalog: list[Product],
                   weights: list[float], user: _User, t: float, n: int,
                   truth: IntentTruth | None) -> list[tuple[float, str, str, str, Product, str]]:
    session_id = f"is{cfg.seed}-{n}"
    hour = int((t % DAY_S) // 3600)
    evening = 18 <= hour <= 22
    device = _device(rng, evening)
    visits_7d = sum(1 for v in user.visits if t - v <= 7 * DAY_S)
    open_cart = (user.last_cart is not None and t - user.last_cart <= 14 * DAY_S
                 and (user.last_buy is None or user.last_buy < user.last_cart))
    bought_2d = user.last_buy is not None and t - user.last_buy <= 2 * DAY_S
    logit = purchase_logit(cfg, evening, device == "desktop", visits_7d, open_cart, bought_2d,
                           user.affinity)
    p_buy = 1.0 / (1.0 + math.exp(-logit))
    buys = rng.random() < p_buy
    if truth is not None:
        truth.probability[session_id] = p_buy
    user.visits.append(t)
    n_views = 1 + min(int(rng.expovariate(1 / 5.0)), 40)
    cart_at = rng.randrange(n_views) if buys or rng.random() < cfg.abandon_prob else None
    rows = []
    carted = viewed = catalog[0]
    for i in range(n_views):
        viewed = rng.choices(catalog, weights)[0]
        rows.append((t, session_id, user.user_id, device, viewed, "view"))
        t += _gap(rng, cfg)
        if i == cart_at:
            rows.append((t, session_id, user.user_id, device, viewed, "add_to_cart"))
            user.last_cart = t
            carted = viewed
            t += _gap(rng, cfg)
    if buys:
        rows.append((t, session_id, user.user_id, device, carted, "purchase"))
        user.last_buy = t
    return rows


def _bot_session(rng: random.Random, cfg: IntentConfig, catalog: list[Product], t: float, n: int,
                 truth: IntentTruth | None) -> list[tuple[float, str, str, str, Product, str]]:
    session_id, user_id = f"ib{cfg.seed}-{n}", f"ibot{cfg.seed}-{n}"
    if truth is not None:
        truth.bot_sessions.add(session_id)
    rows = []
    for _ in range(rng.randint(100, 300)):
        rows.append((t, session_id, user_id, "desktop", rng.choice(catalog), "view"))
        t += 0.05 + rng.expovariate(1 / 0.25)
    if rng.random() < 0.5:
        product = rows[-1][4]
        rows.append((t + 0.2, session_id, user_id, "desktop", product, "add_to_cart"))
        rows.append((t + 0.4, session_id, user_id, "desktop", product, "purchase"))
    return rows


def _gap(rng: random.Random, cfg: IntentConfig) -> float:
    return min(max(rng.lognormvariate(math.log(cfg.gap_median_s), 0.8), 2.0), 600.0)


def _iso(t: float) -> str:
    when = datetime.fromtimestamp(0, UTC) + timedelta(seconds=t)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


class SessionPatterns:
    """The planted intent patterns for another generator's sessions (producers/flash_sale.py
    with `intent_patterns=True`): the device and purchase probability of a new session from
    its start time and the customer's history, and that history's upkeep.

    The generator's own purchase probability is shifted on the log-odds scale by the same
    effects as `purchase_logit` (evening +-`evening_effect`/2 around the day average, desktop,
    visits in the last 7 days, an open cart, a recent purchase); users have no hidden
    affinity here."""

    def __init__(self, cfg: IntentConfig | None = None) -> None:
        self.cfg = cfg or IntentConfig()
        self.users: dict[str, _User] = {}

    def start(self, user_id: str, t_s: float, r_device: float, base_prob: float
              ) -> tuple[str, float]:
        """(device, purchase probability) of a session of `user_id` starting at `t_s` (epoch
        s); `base_prob` is the generator's own purchase probability, shifted by the patterns."""
        user = self.users.setdefault(user_id, _User(user_id, 0.0, 0.0))
        evening = 18 <= int((t_s % DAY_S) // 3600) <= 22
        device = _device(_Fixed(r_device), evening)
        user.visits = [v for v in user.visits if t_s - v <= 7 * DAY_S]
        visits_7d = len(user.visits)
        # a session still running (finished later in event time) is not history yet
        cart = user.last_cart if user.last_cart is not None and user.last_cart <= t_s else None
        buy = user.last_buy if user.last_buy is not None and user.last_buy <= t_s else None
        open_cart = (cart is not None and t_s - cart <= 14 * DAY_S
                     and (buy is None or buy < cart))
        bought_2d = buy is not None and t_s - buy <= 2 * DAY_S
        shift = purchase_logit(self.cfg, evening, device == "desktop", visits_7d, open_cart,
                               bought_2d, 0.0) - self.cfg.base_logit
        base = min(max(base_prob, 1e-6), 1 - 1e-6)
        logit = math.log(base / (1 - base)) + shift - self.cfg.evening_effect / 2
        user.visits.append(t_s)
        return device, 1.0 / (1.0 + math.exp(-logit))

    def finish(self, user_id: str, t_s: float, carted: bool, bought: bool) -> None:
        """Record the end of a session (cart add, purchase at `t_s`, its last event) in the
        customer's history. A generator that plans whole sessions at their start calls it
        then: `start` ignores history that lies after its own start time."""
        user = self.users.setdefault(user_id, _User(user_id, 0.0, 0.0))
        if carted:
            user.last_cart = t_s
        if bought:
            user.last_buy = t_s

    def forget(self, user_id: str) -> None:
        """Drop a customer who will not come back (bounded memory in endless runs)."""
        self.users.pop(user_id, None)


class _Fixed:
    """A stand-in random source that returns one given number (for `_device`)."""

    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value
