"""Contract events as compact columns (integer codes), in stream order."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from recommender.events import parse_ts

ACTION_CODES = {"view": 0, "add_to_cart": 1, "purchase": 2}
ACTION_NAMES = tuple(ACTION_CODES)
VIEW = 0


@dataclass
class Clicks:
    """One row per event: time (epoch ms), session, product and action as codes.

    Codes are dense, in order of first appearance; `session_ids`, `product_ids`,
    `product_names` and `categories` map them back to the shop's ids.
    """

    ts_ms: np.ndarray  # int64
    session: np.ndarray  # int32
    product: np.ndarray  # int32
    action: np.ndarray  # int8
    session_ids: list[str]
    product_ids: list[str]
    product_names: list[str]
    categories: list[str]

    def __len__(self) -> int:
        return len(self.ts_ms)

    def index_at(self, ts_ms: int) -> int:
        """Position of the first event at or after `ts_ms`."""
        return int(np.searchsorted(self.ts_ms, ts_ms, side="left"))


def _ms(ts: str) -> int:
    return round(parse_ts(ts).timestamp() * 1000)


def from_events(
    events: Iterable[dict[str, Any] | bytes], progress: Callable[[int], None] | None = None
) -> Clicks:
    """Columns of the valid events (dicts) of a stream; raw bytes (malformed) are skipped.

    The stream must be in timestamp order (the generator's and the replay's is)."""
    sessions: dict[str, int] = {}
    products: dict[str, int] = {}
    names: list[str] = []
    categories: list[str] = []
    ts: list[int] = []
    sess: list[int] = []
    prod: list[int] = []
    act: list[int] = []
    last_text, last_ms = "", 0
    for n, e in enumerate(events):
        if not isinstance(e, dict):
            continue
        text = e["ts"]
        if text != last_text:  # consecutive events often share a timestamp
            last_text, last_ms = text, _ms(text)
        ts.append(last_ms)
        sess.append(sessions.setdefault(e["session_id"], len(sessions)))
        p = products.get(e["product_id"])
        if p is None:
            p = products[e["product_id"]] = len(products)
            names.append(e.get("product_name") or "")
            categories.append(e.get("category") or "")
        prod.append(p)
        act.append(ACTION_CODES[e["action"]])
        if progress is not None and n % 65536 == 0:
            progress(last_ms)
    ts_arr = np.asarray(ts, dtype=np.int64)
    if len(ts_arr) > 1 and np.any(np.diff(ts_arr) < 0):
        raise ValueError("events are not in timestamp order")
    return Clicks(
        ts_arr,
        np.asarray(sess, dtype=np.int32),
        np.asarray(prod, dtype=np.int32),
        np.asarray(act, dtype=np.int8),
        list(sessions),
        list(products),
        names,
        categories,
    )
