"""Training data for the purchase-intent model: events in, labelled feature rows out.

- Events: contract events from a JSON-lines file, the RetailRocket events CSV (sessions cut
  by 30 minutes of inactivity per visitor, as it has no session ids), or the generator.
- Examples: at every clock of a grid (`step`; None: after every event), each open, human,
  not yet bought session with a new event since the previous clock gives one row (the live
  scorer, too, scores a session when it changes): its features from the views of sql/ at
  that clock (features.py).
- Label: the session has a purchase after the clock (horizon 0), or the customer buys within
  `horizon` after the clock. A label must be known by the data's end: a session without a
  purchase counts as "no" only once it has closed (30 minutes without events).
- Split by time: training rows come from the events up to the cutoff only (their features
  and labels never see a later event); test rows are those with a clock after the cutoff.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from recommender.events import Rejected, format_ts, parse_ts, validate_event
from recommender.intent.features import (
    FEATURE_NAMES,
    SESSION_GAP,
    SqlSnapshots,
    feature_matrix,
)

log = logging.getLogger(__name__)

Event = dict[str, Any]
Progress = Callable[[int, int], None]
RR_ACTIONS = {"view": "view", "addtocart": "add_to_cart", "transaction": "purchase"}


class DataError(ValueError):
    """The training data cannot be read (bad path or format): a user error."""


# --- reading events ------------------------------------------------------------------------


def sessionize(rows: Sequence[tuple[str, datetime]], gap: timedelta = SESSION_GAP) -> list[str]:
    """Session ids for (user_id, ts) rows: a user's new session starts after `gap` of silence.

    Ids are '<user>-<n>' with n counting the user's sessions from 0 in time order.
    """
    order = sorted(range(len(rows)), key=lambda i: (rows[i][0], rows[i][1]))
    out = [""] * len(rows)
    user, last, n = None, None, 0
    for i in order:
        u, ts = rows[i]
        if u != user:
            user, n = u, 0
        elif ts - last > gap:
            n += 1
        last = ts
        out[i] = f"{u}-{n}"
    return out


def retailrocket_events(path: Path) -> list[Event]:
    """RetailRocket `timestamp,visitorid,event,itemid,transactionid` rows as contract events."""
    raw: list[tuple[datetime, str, str, str]] = []
    with open(path, newline="") as f:
        for n, rec in enumerate(csv.DictReader(f)):
            try:
                ts = datetime.utcfromtimestamp(int(rec["timestamp"]) / 1000)
                action = RR_ACTIONS[rec["event"]]
                raw.append((ts, f"rr{int(rec['visitorid'])}", action, str(int(rec["itemid"]))))
            except (KeyError, TypeError, ValueError):
                log.warning("%s line %d: not a RetailRocket event, skipped", path, n + 2)
    sessions = sessionize([(user, ts) for ts, user, _, _ in raw])
    events = [
        {
            "event_id": f"rr{n}", "session_id": sid, "user_id": user, "product_id": item,
            "product_name": "", "category": "unknown", "action": action,
            "ts": format_ts(ts), "device": None, "price": None,
        }  # fmt: skip
        for n, ((ts, user, action, item), sid) in enumerate(zip(raw, sessions, strict=True))
    ]
    events.sort(key=lambda e: e["ts"])
    return events


def jsonl_events(path: Path) -> list[Event]:
    """Contract events, one JSON object a line; invalid lines are skipped and counted."""
    events, bad = [], 0
    with open(path, "rb") as f:
        for line in f:
            if not line.strip():
                continue
            event = validate_event(line.strip(), now=datetime(2999, 1, 1, tzinfo=UTC))
            if isinstance(event, Rejected):
                bad += 1
            else:
                events.append(event)
    if bad:
        log.warning("%s: %d invalid event line(s) skipped", path, bad)
    events.sort(key=lambda e: e["ts"])
    return events


def generated_events(spec: str = "") -> list[Event]:
    """Events of producers/intent_patterns.py; `spec` like 'days=14,users=800,seed=3'."""
    from producers.intent_patterns import IntentConfig, generate

    cfg = IntentConfig()
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, _, value = part.partition("=")
        if not hasattr(cfg, key) or key == "start":
            raise DataError(f"unknown generator setting {key!r} in {spec!r}")
        try:
            setattr(cfg, key, type(getattr(cfg, key))(value))
        except ValueError as exc:
            raise DataError(f"bad value for {key}: {value!r}") from exc
    return list(generate(cfg))


def load_events(data: str) -> list[Event]:
    """Events of `data`: 'generated[:k=v,...]', a RetailRocket CSV, or a JSON-lines file."""
    if data == "generated" or data.startswith("generated:"):
        return generated_events(data.partition(":")[2])
    path = Path(data)
    if not path.is_file():
        raise DataError(f"no such file: {data} (or use 'generated[:days=14,users=800]')")
    with open(path, encoding="utf-8", errors="replace") as f:
        head = f.readline()
    if head.startswith("timestamp,visitorid,event"):
        return retailrocket_events(path)
    if head.lstrip().startswith("{"):
        return jsonl_events(path)
    raise DataError(f"{data}: neither a RetailRocket events CSV nor JSON-lines events")


# --- examples ------------------------------------------------------------------------------


@dataclass
class Examples:
    """Labelled feature rows, in clock order."""

    X: np.ndarray
    y: np.ndarray
    clocks: list[datetime] = field(default_factory=list)
    session_ids: list[str] = field(default_factory=list)
    user_ids: list[str] = field(default_factory=list)
    feature_names: list[str] = field(default_factory=lambda: list(FEATURE_NAMES))

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class _Outcomes:
    """Per session and per customer: purchase times and last event time (sorted)."""

    session_buys: dict[str, list[datetime]] = field(default_factory=dict)
    user_buys: dict[str, list[datetime]] = field(default_factory=dict)
    session_last: dict[str, datetime] = field(default_factory=dict)

    @classmethod
    def of(cls, events: Iterable[Event]) -> _Outcomes:
        out = cls()
        for e in events:
            ts = parse_ts(e["ts"]).replace(tzinfo=None)
            sid = e["session_id"]
            if e["action"] == "purchase":
                out.session_buys.setdefault(sid, []).append(ts)
                out.user_buys.setdefault(e["user_id"], []).append(ts)
            if sid not in out.session_last or ts > out.session_last[sid]:
                out.session_last[sid] = ts
        for buys in (*out.session_buys.values(), *out.user_buys.values()):
            buys.sort()
        return out


def _first_after(times: list[datetime], after: datetime) -> datetime | None:
    return next((t for t in times if t > after), None)


def label(outcomes: _Outcomes, session_id: str, user_id: str, clock: datetime,
          horizon: timedelta, known_by: datetime) -> int | None:
    """1 / 0 / None (not known by `known_by`) for a session seen at `clock`."""
    if horizon > timedelta(0):
        buy = _first_after(outcomes.user_buys.get(user_id, []), clock)
        if buy is not None and buy <= clock + horizon and buy <= known_by:
            return 1
        return 0 if clock + horizon <= known_by else None
    buy = _first_after(outcomes.session_buys.get(session_id, []), clock)
    if buy is not None and buy <= known_by:
        return 1
    return 0 if outcomes.session_last[session_id] + SESSION_GAP <= known_by else None


def grid(times: np.ndarray, start: datetime, end: datetime, step: timedelta | None
         ) -> list[datetime]:
    """Clocks start+step, start+2*step, ... <= end with an event in the step up to them (no
    session changed at the others); with `step` None, every distinct event time after
    `start` (a snapshot after each event)."""
    if step is None:
        after = times[times > np.datetime64(start, "us")]
        return [t.astype(datetime) for t in np.unique(after[after <= np.datetime64(end, "us")])]
    base = np.datetime64(start, "us")
    n = int((end - start) / step)
    clocks = base + np.arange(1, n + 1) * np.timedelta64(int(step.total_seconds() * 1e6), "us")
    lo = np.searchsorted(times, clocks - np.timedelta64(int(step.total_seconds() * 1e6), "us"),
                         side="right")
    hi = np.searchsorted(times, clocks, side="right")
    return [c.astype(datetime) for c in clocks[hi > lo]]


def build_examples(events: Sequence[Event], step: timedelta | None, horizon: timedelta,
                   since: datetime | None = None, progress: Progress | None = None) -> Examples:
    """Examples at grid clocks after `since` (default: the first event) over `events`.

    Labels are known by the last event of `events`; features read only events up to each
    clock. Sessions flagged as bots at any clock are left out entirely.
    """
    if not events:
        return Examples(np.zeros((0, len(FEATURE_NAMES))), np.zeros(0, dtype=np.int8))
    first = parse_ts(events[0]["ts"]).replace(tzinfo=None)
    known_by = max(parse_ts(e["ts"]) for e in events).replace(tzinfo=None)
    start = _floor(since or first, step) if step else (since or first - timedelta(seconds=1))
    snaps = SqlSnapshots(events)
    outcomes = _Outcomes.of(events)
    try:
        clocks = grid(snaps.event_times(), start, known_by, step)
        xs, ys, meta, bots = [], [], [], set()
        previous = start
        for n, clock in enumerate(clocks):
            snapshot = snaps.at(clock)
            bots.update(r["session_id"] for r in snapshot.sessions if r["is_bot"])
            rows, x = feature_matrix(snapshot)
            for row, vector in zip(rows, x, strict=True):
                if row["last_event_at"] <= previous:
                    continue  # unchanged since the previous clock: scored there already
                y = label(outcomes, row["session_id"], row["user_id"], clock, horizon, known_by)
                if y is not None:
                    xs.append(vector)
                    ys.append(y)
                    meta.append((clock, row["session_id"], row["user_id"]))
            previous = clock
            if progress:
                progress(n + 1, len(clocks))
    finally:
        snaps.close()
    keep = [i for i, m in enumerate(meta) if m[1] not in bots]
    X = np.array([xs[i] for i in keep]).reshape(len(keep), len(FEATURE_NAMES))
    return Examples(
        X, np.array([ys[i] for i in keep], dtype=np.int8),
        [meta[i][0] for i in keep], [meta[i][1] for i in keep], [meta[i][2] for i in keep],
    )


def _floor(when: datetime, step: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1)
    return epoch + ((when - epoch) // step) * step


@dataclass
class Split:
    """A time-ordered train/test split."""

    train: Examples
    test: Examples
    cutoff: datetime
    first: datetime
    last: datetime
    events: int


def time_split(events: Sequence[Event], test_share: float = 0.25,
               step: timedelta | None = timedelta(minutes=10),
               horizon: timedelta = timedelta(0),
               cutoff: datetime | None = None,
               progress: Callable[[str, int, int], None] | None = None) -> Split:
    """Train on the events up to the cutoff (default: `1 - test_share` of the time span),
    test on the clocks after it (features from all events up to each clock)."""
    if not events:
        raise DataError("no events to train on")
    first = parse_ts(events[0]["ts"]).replace(tzinfo=None)
    last = parse_ts(events[-1]["ts"]).replace(tzinfo=None)
    if cutoff is None:
        cutoff = _floor(first + (last - first) * (1 - test_share), step or timedelta(minutes=1))
    before = [e for e in events if parse_ts(e["ts"]).replace(tzinfo=None) <= cutoff]
    train = build_examples(before, step, horizon,
                           progress=progress and (lambda d, t: progress("train", d, t)))
    test = build_examples(events, step, horizon, since=cutoff,
                          progress=progress and (lambda d, t: progress("test", d, t)))
    return Split(train, test, cutoff, first, last, len(events))
