"""Synthetic flash-sale clickstream: a fashion shop's sessions, then a flash sale.

`generate(cfg)` yields contract events (dicts) in timestamp order, and - if
`cfg.malformed_share` > 0 - malformed messages as raw bytes between them. Deterministic for a
seed. `plan(cfg)` gives the ground truth (catalog, which categories and products are on sale,
when the sale starts); pass it to `generate` to also collect the bot session ids.

Ids: events `e<seed>-<n>`, sessions `s<seed>-<n>`, users `u<seed>-<n>` (bots `b<seed>-<n>`).
With `cfg.run_id` set, the run's tag follows the seed in every one of them (`e<seed>-<run>-<n>`),
so two runs of one seed share no ids while the traffic itself (products, actions, times) stays
the same. `flashrec produce flash-sale` sets a fresh tag per run (`new_run_id`).

Model (each knob is a FlashSaleConfig field):
- Sessions arrive as a Poisson process sized so the shop produces `rate` events per second of
  event time; sessions started up to `warmup_s` before `start` are already running at `start`
  (their earlier clicks are not sent). Session length (events) is log-normal: median
  `session_median` (4), p99 `session_p99` (38). Gaps between clicks are log-normal with a
  median of `gap_median_s`.
- Product popularity is Zipf (`zipf_s`). A session has a home category: each view is in that
  category with probability `category_focus`, otherwise anywhere (this creates co-viewing).
- Funnel: after a view, add_to_cart of that product with probability `cart_prob`; the last
  event of a session with a cart is a purchase of a carted product with `purchase_prob`.
- Users: a new session belongs to a returning user with probability `returning_share`; a user
  keeps their device (mobile / desktop / tablet).
- Bots (`bot_share` of sessions): 50-400 views, about `bot_gap_s` apart, uniformly random
  products, desktop.
- Purchase-intent patterns (`intent_patterns`, off by default): the session's device and
  purchase probability follow producers/intent_patterns.py (`SessionPatterns`): sessions
  in the evening (18-22 UTC) are mostly on desktop and buy more, daytime sessions are mostly
  on mobile and buy less (browse by day on mobile, buy in the evening on desktop); recent
  visits and an open cart raise the odds, a purchase in the last 2 days lowers them. Only
  visible over hours of event time (e.g. `start` at 08:00, `duration_s` 12 h or more).
- Flash sale from `sale_start`: sessions that start after it are "sale sessions" with a
  probability that ramps up to `sale_strength` over `sale_ramp_s`; sale sessions view sale
  products (chosen in `sale_categories` categories) with probability `sale_focus`, so
  popularity and co-viewing shift within minutes. Sale products' price drops by `discount`.
"""

from __future__ import annotations

import heapq
import math
import random
import re
import secrets
from bisect import bisect, bisect_left
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from typing import Any

import orjson

from producers.products import Product, build_catalog

MAX_USERS = 1_000_000  # returning users are drawn from at most this many known users
DEFAULT_START = datetime(2024, 3, 15, 13, 30, tzinfo=UTC)
DEVICES = ("mobile", "desktop", "tablet")
DEVICE_WEIGHTS = (0.62, 0.30, 0.08)


@dataclass
class FlashSaleConfig:
    seed: int = 42
    start: datetime = DEFAULT_START
    events: int | None = 100_000  # stop after this many valid events (None: no count limit)
    duration_s: float | None = None  # stop at this much event time (None: no time limit)
    rate: float = 200.0  # valid events per second of event time
    sale_offset_s: float = 1800.0  # sale starts this long after `start` (default 14:00)
    sale_strength: float = 0.6  # share of new sessions that are sale sessions at full ramp
    sale_ramp_s: float = 180.0  # seconds for the sale to reach full strength
    sale_focus: float = 0.8  # share of views of a sale session that are sale products
    sale_categories: int = 2
    sale_products: int = 60
    discount: float = 0.3
    n_products: int = 5000
    zipf_s: float = 1.05
    category_focus: float = 0.6
    session_median: float = 4.0
    session_p99: float = 38.0
    gap_median_s: float = 20.0
    cart_prob: float = 0.08
    purchase_prob: float = 0.35
    returning_share: float = 0.3
    bot_share: float = 0.0  # share of sessions that are bots
    bot_gap_s: float = 0.3
    malformed_share: float = 0.0  # extra malformed messages per valid event
    warmup_s: float = 1200.0  # sessions begun up to this long before `start` are running
    # plant the purchase-intent patterns of producers/intent_patterns.py (time of day, device,
    # customer history); off: the events are exactly those of earlier versions
    intent_patterns: bool = False
    # tag put after the seed in every event, session and user id ("" = no tag): runs with
    # different tags share no ids, the traffic is the seed's either way
    run_id: str = ""

    @property
    def sale_start(self) -> datetime:
        return self.start + timedelta(seconds=self.sale_offset_s)


@dataclass
class SalePlan:
    """Ground truth of a run: what is on sale and when, plus the bot sessions seen."""

    catalog: list[Product]
    sale_start: datetime
    sale_categories: tuple[str, ...]
    sale_products: tuple[str, ...]
    bot_sessions: set[str] = field(default_factory=set)
    # sessions s<prefix>-0 .. s<prefix>-(warm_sessions - 1), prefix `id_prefix(cfg)`, began
    # before `start` (warm start): their clicks before `start` are not sent, so they may begin
    # mid-funnel
    warm_sessions: int = 0


RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9_.]{1,40}")


def new_run_id() -> str:
    """A fresh random tag for one run: 8 hex digits."""
    return secrets.token_hex(4)


def id_prefix(cfg: FlashSaleConfig) -> str:
    """What follows the letter of every id of a run: `<seed>` or `<seed>-<run_id>`."""
    if not cfg.run_id:
        return f"{cfg.seed}"
    if not RUN_ID_PATTERN.fullmatch(cfg.run_id):
        raise ValueError(f"run_id must be 1-40 letters, digits, '_' or '.': {cfg.run_id!r}")
    return f"{cfg.seed}-{cfg.run_id}"


def plan(cfg: FlashSaleConfig) -> SalePlan:
    """The catalog and the sale's products/categories for `cfg` (no events generated)."""
    catalog = build_catalog(cfg.n_products, cfg.seed)
    rng = random.Random(f"sale-{cfg.seed}")
    categories = sorted({p.category for p in catalog})
    chosen = tuple(sorted(rng.sample(categories, min(cfg.sale_categories, len(categories)))))
    pool = [p.product_id for p in catalog if p.category in chosen]
    # Skip the category's top sellers so the shift is visible: take from the long tail.
    on_sale = tuple(sorted(rng.sample(pool[len(pool) // 10 :], min(cfg.sale_products,
                                                                    len(pool) * 9 // 10))))
    return SalePlan(catalog, cfg.sale_start, chosen, on_sale)


def _lognormal_params(median: float, p99: float) -> tuple[float, float]:
    mu = math.log(median)
    return mu, (math.log(p99) - mu) / 2.3263478740408408


class _Sampler:
    """Zipf-weighted choice from a list by bisecting cumulative weights."""

    __slots__ = ("items", "cum", "total")

    def __init__(self, items: list[Any], weights: list[float]) -> None:
        self.items = items
        self.cum = list(accumulate(weights))
        self.total = self.cum[-1]
        self.cum[-1] = math.inf  # r * total rounding up to total still picks the last item

    def pick(self, r: float) -> Any:
        return self.items[bisect(self.cum, r * self.total)]


class _Shop:
    """Precomputed samplers and event templates for one run."""

    def __init__(self, cfg: FlashSaleConfig, sale: SalePlan) -> None:
        rng = random.Random(f"popularity-{cfg.seed}")
        ranked = list(sale.catalog)
        rng.shuffle(ranked)
        weight = {p.product_id: 1.0 / (rank + 1) ** cfg.zipf_s for rank, p in enumerate(ranked)}
        self.by_id = {p.product_id: p for p in sale.catalog}
        self.all = _Sampler(ranked, [weight[p.product_id] for p in ranked])
        self.uniform = ranked
        per_cat: dict[str, list[Product]] = {}
        for p in ranked:
            per_cat.setdefault(p.category, []).append(p)
        self.categories = _Sampler(
            list(per_cat), [sum(weight[p.product_id] for p in ps) for ps in per_cat.values()]
        )
        self.in_category = {
            c: _Sampler(ps, [weight[p.product_id] for p in ps]) for c, ps in per_cat.items()
        }
        on_sale = [self.by_id[pid] for pid in sale.sale_products]
        on_sale.sort(key=lambda p: -weight[p.product_id])
        self.sale = _Sampler(on_sale, [1.0 / (i + 1) ** 0.6 for i in range(len(on_sale))])
        self.sale_ids = set(sale.sale_products)
        self.sale_price = {p.product_id: round(p.price * (1 - cfg.discount), 2) for p in on_sale}


Clicks = list[tuple[Product, str]]  # (product, action) of each click of a session


class _Sessions:
    """Draws the sessions of one run: click times, (product, action) per click and who."""

    def __init__(self, cfg: FlashSaleConfig, sale: SalePlan, rng: random.Random) -> None:
        self.cfg = cfg
        self.sale = sale
        self.shop = _Shop(cfg, sale)
        self.rng = rng
        self.prefix = id_prefix(cfg)
        self.sale_ms = int(sale.sale_start.timestamp() * 1000)
        self.length = _lognormal_params(cfg.session_median, cfg.session_p99)  # (mu, sigma)
        self.gap = (math.log(cfg.gap_median_s), 1.0)  # (mu, sigma)
        self.users: list[tuple[str, str]] = []  # (user_id, device)
        self.patterns: Any = None  # producers.intent_patterns.SessionPatterns, when planted
        if cfg.intent_patterns:
            from producers.intent_patterns import SessionPatterns

            self.patterns = SessionPatterns()

    def rate_ms(self) -> float:
        """Sessions per ms of event time, so that the shop produces `rate` events per second
        (mean events per session over humans and bots)."""
        mu, sigma = self.length
        mean_human = sum(_session_length(random.Random(i), mu, sigma) for i in range(4000))
        mean_len = (1 - self.cfg.bot_share) * mean_human / 4000 + self.cfg.bot_share * 225
        return self.cfg.rate / mean_len / 1000.0

    def new(
        self, t: int, n: int, times: list[int] | None = None, bot: bool = False
    ) -> tuple[list[int], Clicks, tuple[str, str, str]]:
        """Session number n starting at t (ms): click times, (product, action) per click and
        (session, user, device); `times` given for warm-start sessions. Events are built when
        sent (cheap start with many running sessions)."""
        session_id = f"s{self.prefix}-{n}"
        if times is None:
            bot = self.rng.random() < self.cfg.bot_share
            times = self._bot_times(t) if bot else self._human_times(t)
        if bot:
            self.sale.bot_sessions.add(session_id)
            rand, uniform = self.rng.random, self.shop.uniform
            clicks = [(uniform[int(rand() * len(uniform))], "view") for _ in times]
            return times, clicks, (session_id, f"b{self.prefix}-{n}", "desktop")
        user, device = self._user(n)
        buy_prob = self.cfg.purchase_prob
        if self.patterns is not None:  # device and purchase odds from time of day and history
            device, buy_prob = self.patterns.start(user, times[0] / 1000, self.rng.random(),
                                                   self.cfg.purchase_prob)  # fmt: skip
        clicks, carted = self._clicks(times[0], len(times), buy_prob)
        if self.patterns is not None:
            self.patterns.finish(user, times[-1] / 1000, carted, clicks[-1][1] == "purchase")
        return times, clicks, (session_id, user, device)

    def _bot_times(self, t: int) -> list[int]:
        """A bot's click times from t: 50-400 clicks about `bot_gap_s` apart."""
        rng, times = self.rng, []
        for _ in range(rng.randint(50, 400)):
            times.append(t)
            t += 1 + int(rng.expovariate(1.0 / self.cfg.bot_gap_s) * 1000)
        return times

    def _human_times(self, t: int) -> list[int]:
        """A human session's click times from t: log-normal length and gaps."""
        rng, exp, times = self.rng, math.exp, []
        mu_gap, sigma_gap = self.gap
        for _ in range(_session_length(rng, *self.length)):
            times.append(t)
            t += 1000 + min(int(exp(mu_gap + sigma_gap * rng.gauss()) * 1000), 600_000)
        return times

    def _user(self, n: int) -> tuple[str, str]:
        """(user, device) of session n: a returning user, or a new one put in the pool."""
        rand, users = self.rng.random, self.users
        if users and rand() < self.cfg.returning_share:
            return users[int(rand() * len(users))]
        user = f"u{self.prefix}-{n}"
        device = DEVICES[bisect(_DEVICE_CUM, rand())]
        if len(users) < MAX_USERS:
            users.append((user, device))
        else:  # endless runs: a new user takes a random old one's place in the pool
            slot = int(rand() * MAX_USERS)
            if self.patterns is not None:
                self.patterns.forget(users[slot][0])
            users[slot] = (user, device)
        return user, device

    def _clicks(self, t: int, length: int, buy_prob: float) -> tuple[Clicks, bool]:
        """(product, action) of each of a human session's clicks from t, and whether it
        carted anything: views in its home category, on sale or anywhere, carts of the last
        view, a purchase of a carted product last."""
        cfg, shop, rand = self.cfg, self.shop, self.rng.random
        in_sale = t >= self.sale_ms and rand() < cfg.sale_strength * min(
            1.0, (t - self.sale_ms) / (cfg.sale_ramp_s * 1000 or 1)
        )
        home = shop.in_category[shop.categories.pick(rand())]
        clicks: Clicks = []
        cart: list[Product] = []
        last: Product | None = None
        for i in range(length):
            if last is not None and rand() < cfg.cart_prob:
                action, product = "add_to_cart", last
                cart.append(last)
                last = None
            elif i == length - 1 and cart and rand() < buy_prob:
                action, product = "purchase", cart[int(rand() * len(cart))]
            else:
                r = rand()
                if in_sale and r < cfg.sale_focus:
                    product = shop.sale.pick(rand())
                elif r < cfg.category_focus:
                    product = home.pick(rand())
                else:
                    product = shop.all.pick(rand())
                action, last = "view", product
            clicks.append((product, action))
        return clicks, bool(cart)


def generate(cfg: FlashSaleConfig, sale: SalePlan | None = None) -> Iterator[dict | bytes]:
    """Events in timestamp order (dicts), with malformed messages (bytes) between them."""
    sale = sale or plan(cfg)
    rng = random.Random(cfg.seed)
    maker = _Sessions(cfg, sale, rng)
    rand, expo = rng.random, rng.expovariate
    shop, prefix, sale_ms = maker.shop, maker.prefix, maker.sale_ms
    start_ms = int(cfg.start.timestamp() * 1000)
    end_ms = start_ms + int(cfg.duration_s * 1000) if cfg.duration_s is not None else None
    limit = cfg.events  # None with duration_s None too: endless (the command stops on Ctrl-C)
    session_rate_ms = maker.rate_ms()
    heap = _running_at_start(cfg, maker, start_ms, session_rate_ms)
    next_start = start_ms + expo(session_rate_ms)  # float ms: many sessions per ms at high rates
    sessions, emitted = sale.warm_sessions, 0
    last_sec, sec_text = -1, ""
    malformed = _Malformed(rng) if cfg.malformed_share > 0 else None
    while limit is None or emitted < limit:
        while not heap or next_start <= heap[0][0]:
            at = int(next_start)
            heapq.heappush(heap, (at, sessions, 0, *maker.new(at, sessions)))
            sessions += 1
            next_start += expo(session_rate_ms)
        t, sid, i, times, clicks, who = heap[0]
        if end_ms is not None and t >= end_ms:
            return
        if i + 1 < len(times):
            heapq.heapreplace(heap, (times[i + 1], sid, i + 1, times, clicks, who))
        else:
            heapq.heappop(heap)
        sec = t // 1000
        if sec != last_sec:
            last_sec = sec
            sec_text = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        product, action = clicks[i]
        event = _event(who, product, action, shop, t >= sale_ms)
        event["event_id"] = f"e{prefix}-{emitted}"
        event["ts"] = f"{sec_text}.{t % 1000:03d}Z"
        if malformed is not None and rand() < cfg.malformed_share:
            yield malformed.make(event)
        emitted += 1
        yield event


def _running_at_start(cfg: FlashSaleConfig, maker: _Sessions, start_ms: int,
                      session_rate_ms: float) -> list[tuple[Any, ...]]:  # fmt: skip
    """The click heap at `start` (next click ms, session no, click index, session...): the
    sessions that began before `start` and are still running, their earlier clicks dropped,
    so the stream runs at `rate` from the first second. Sets the plan's warm_sessions."""
    warm, still_running = _warm_start(cfg, start_ms, session_rate_ms, maker.length, maker.gap)
    maker.sale.warm_sessions = warm
    heap: list[tuple[Any, ...]] = []
    for n, bot, times in still_running:
        rest = times[bisect_left(times, start_ms) :]  # clicks before `start` are not sent
        heapq.heappush(heap, (rest[0], n, 0, *maker.new(rest[0], n, rest, bot)))
    return heap


_DEVICE_CUM = list(accumulate(DEVICE_WEIGHTS))
MAX_WARM_SESSIONS = 500_000


def _warm_start(
    cfg: FlashSaleConfig,
    start_ms: int,
    session_rate_ms: float,
    length_params: tuple[float, float],
    gap_params: tuple[float, float],
) -> tuple[int, list[tuple[int, bool, list[int]]]]:
    """Sessions that began in the `warmup_s` before `start` (same model, drawn with numpy):
    how many there were, and (number, is_bot, click times) of those still running at start."""
    import numpy as np

    g = np.random.default_rng([cfg.seed, 1])
    expected = cfg.warmup_s * 1000 * session_rate_ms
    k = int(min(expected * 1.2 + 100, MAX_WARM_SESSIONS))
    back = np.cumsum(g.exponential(1 / session_rate_ms, k))
    arrivals = (start_ms - np.ceil(back[back <= cfg.warmup_s * 1000]).astype(np.int64))[::-1]
    m = len(arrivals)
    if m == 0:
        return 0, []
    bot = g.random(m) < cfg.bot_share
    human_len = np.exp(length_params[0] + length_params[1] * g.standard_normal(m))
    lengths = np.where(bot, g.integers(50, 401, m), np.clip(np.rint(human_len), 1, 200))
    lengths = lengths.astype(np.int64)
    owner = np.repeat(np.arange(m), lengths)
    total = len(owner)
    human_gap = np.exp(gap_params[0] + gap_params[1] * g.standard_normal(total)) * 1000
    gaps = np.where(
        bot[owner],
        1 + (g.exponential(cfg.bot_gap_s, total) * 1000).astype(np.int64),
        1000 + np.minimum(human_gap.astype(np.int64), 600_000),
    )
    first = np.cumsum(lengths) - lengths  # index of each session's first click
    before = np.cumsum(gaps) - gaps  # sum of all earlier gaps
    times = arrivals[owner] + before - before[first][owner]
    running = np.nonzero(times[first + lengths - 1] >= start_ms)[0]
    return m, [
        (int(i), bool(bot[i]), times[first[i] : first[i] + lengths[i]].tolist()) for i in running
    ]


def _session_length(rng: random.Random, mu: float, sigma: float) -> int:
    return max(1, min(200, round(math.exp(mu + sigma * rng.gauss()))))


def _event(
    who: tuple[str, str, str], p: Product, action: str, shop: _Shop, sale_on: bool
) -> dict[str, Any]:
    session_id, user, device = who
    price = shop.sale_price[p.product_id] if sale_on and p.product_id in shop.sale_ids else p.price
    return {
        "event_id": "",
        "session_id": session_id,
        "user_id": user,
        "product_id": p.product_id,
        "product_name": p.name,
        "category": p.category,
        "action": action,
        "ts": "",
        "device": device,
        "price": price,
    }


MALFORMED_KINDS = (
    "not_json", "not_object", "missing_field", "bad_action", "bad_ts_format", "impossible_date",
    "future_ts", "empty_session", "negative_price", "wrong_type", "bad_device", "too_large",
)


class _Malformed:
    """One malformed message per call, cycling through MALFORMED_KINDS (no newlines inside)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.n = 0

    def make(self, near: dict[str, Any]) -> bytes:
        kind = MALFORMED_KINDS[self.n % len(MALFORMED_KINDS)]
        self.n += 1
        e = dict(near, event_id=f"bad-{near['event_id']}-{kind}")
        if kind == "not_json":
            return b'{"event_id": "' + e["event_id"].encode() + b'", "action": view'
        if kind == "not_object":
            return orjson.dumps([e["event_id"], e["product_id"]])
        if kind == "missing_field":
            del e["product_id"]
        elif kind == "bad_action":
            e["action"] = "wishlist"
        elif kind == "bad_ts_format":
            e["ts"] = e["ts"].replace("T", " ").replace("Z", "+01:00")
        elif kind == "impossible_date":
            e["ts"] = "2024-02-30T25:61:00.000Z"
        elif kind == "future_ts":
            e["ts"] = "2999-01-01T00:00:00.000Z"
        elif kind == "empty_session":
            e["session_id"] = ""
        elif kind == "negative_price":
            e["price"] = -abs(e.get("price") or 1.0)
        elif kind == "wrong_type":
            e["product_id"] = 12345
        elif kind == "bad_device":
            e["device"] = "smart-fridge"
        elif kind == "too_large":
            e["product_name"] = "x" * 20_000
        return orjson.dumps(e)
