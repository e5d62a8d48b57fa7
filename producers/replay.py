"""Real data sets mapped onto the clickstream event contract, in timestamp order.

`read_dataset(path, fmt)` reads a whole file, maps every row to an event and yields the events
sorted by time (ties keep file order). Pacing (`--speed`) and `--rebase-time` are done by the
`flashrec replay` command. docs/producers.md documents each format's mapping.

Formats:
- yoochoose: the session-rec prepared TSV (`SessionId ItemId Time`, epoch seconds; also the
  Serenade example), or the original `yoochoose-clicks.dat` (SessionID,Timestamp,ItemID,Category)
  or `yoochoose-buys.dat` (SessionID,Timestamp,ItemID,Price,Quantity).
- retailrocket: `events.csv` (timestamp ms, visitorid, event, itemid, transactionid),
  sessionized per visitor by 30 minutes of inactivity; categories from
  `item_properties_part*.csv` + `category_tree.csv` beside it, when present.
- rees46: `event_time,event_type,product_id,category_id,category_code,brand,price,user_id,
  user_session`.
- diginetica: `session_id;user_id;item_id;timeframe;eventdate`; categories from
  `product-categories.csv` beside it, when present.
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from recommender.events import SESSION_GAP, format_ts

log = logging.getLogger(__name__)

FORMATS = ("yoochoose", "retailrocket", "rees46", "diginetica")
SESSION_GAP_MS = int(SESSION_GAP.total_seconds() * 1000)
UNKNOWN = "unknown"


class DatasetError(ValueError):
    """The file cannot be read as the given format (user error: wrong --format or path)."""


class ReplayStats:
    """Rows read, events mapped and rows skipped (with the reason) for one data set."""

    def __init__(self) -> None:
        self.rows = 0
        self.mapped = 0
        self.skipped: Counter[str] = Counter()

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "mapped": self.mapped, "skipped": dict(self.skipped)}


def read_dataset(
    path: Path | str, fmt: str, stats: ReplayStats | None = None
) -> Iterator[dict[str, Any]]:
    """Every row of `path` as a contract event, in timestamp order."""
    path = Path(path)
    if fmt not in FORMATS:
        raise DatasetError(f"unknown format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if not path.is_file():
        raise DatasetError(f"data set file not found: {path}")
    stats = stats if stats is not None else ReplayStats()
    reader = {"yoochoose": _yoochoose, "retailrocket": _retailrocket, "rees46": _rees46,
              "diginetica": _diginetica}[fmt]
    rows = list(reader(path, stats))  # (epoch ms, row number, event without ts)
    rows.sort(key=lambda r: (r[0], r[1]))
    stem = path.stem[:100]
    for ms, n, event in rows:
        # file name without its extension + data row number: unique per file, traceable, and
        # the same on every replay (a replay again is the same data, dropped as duplicates)
        event["event_id"] = f"{stem}-{n}"
        event["ts"] = format_ts(datetime(1970, 1, 1) + timedelta(milliseconds=ms))
        yield event


Row = tuple[int, int, dict[str, Any]]
# a data row to (epoch ms, event), or None for a row skipped (the reason counted in stats)
Convert = Callable[[list[str]], tuple[int, dict[str, Any]] | None]


def _mapped(rows: Iterable[list[str]], stats: ReplayStats, convert: Convert) -> Iterator[Row]:
    """(epoch ms, data row number, event) of every row `convert` maps; rows it cannot
    read (IndexError, ValueError) are counted as unreadable."""
    for n, row in enumerate(rows, 1):
        stats.rows += 1
        try:
            got = convert(row)
        except (IndexError, ValueError):
            stats.skipped["unreadable row"] += 1
            continue
        if got is not None:
            stats.mapped += 1
            yield got[0], n, got[1]


def _event(session: str, user: str, item: str, category: str, action: str,
           name: str = "", price: float | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": "",
        "session_id": session,
        "user_id": user,
        "product_id": item,
        "product_name": name,
        "category": category or UNKNOWN,
        "action": action,
        "ts": "",
    }
    if price is not None:
        event["price"] = price
    return event


def _lines(path: Path, delimiter: str) -> Iterator[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        yield from csv.reader(f, delimiter=delimiter)


def _data_rows(path: Path, delimiter: str, what: str, header: str, check: int = 3
               ) -> Iterator[list[str]]:  # fmt: skip
    """The rows of `path` after its header; DatasetError unless the header starts with the
    first `check` columns of `header` (the format `what`'s header, as the error shows it)."""
    lines = _lines(path, delimiter)
    found = next(lines)
    if found[:check] != header.split(delimiter)[:check]:
        raise DatasetError(f"{path}: expected {what} header {header}, got {found}")
    return lines


def _iso_ms(text: str) -> int:
    """'2014-04-07T10:51:09.277Z' or '2019-10-01 00:00:00 UTC' to epoch milliseconds."""
    text = text.strip().replace(" UTC", "+00:00").replace("Z", "+00:00")
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return round(when.timestamp() * 1000)


def _yoochoose(path: Path, stats: ReplayStats) -> Iterator[Row]:
    first = path.open(encoding="utf-8").readline()
    if first.startswith("SessionId\t"):
        yield from _yoochoose_prepared(path, stats)
        return

    def convert(row: list[str]) -> tuple[int, dict[str, Any]]:
        session, stamp, item = row[0], row[1], row[2]
        if len(row) == 4:  # clicks: SessionID,Timestamp,ItemID,Category
            return _iso_ms(stamp), _event(session, session, item, _yc_category(row[3]), "view")
        # buys: SessionID,Timestamp,ItemID,Price,Quantity
        price = float(row[3]) if row[3] and float(row[3]) > 0 else None
        return _iso_ms(stamp), _event(session, session, item, UNKNOWN, "purchase", price=price)

    yield from _mapped(_lines(path, ","), stats, convert)


def _yc_category(value: str) -> str:
    if value in ("", "0"):
        return UNKNOWN
    if value == "S":
        return "special-offer"
    return f"category-{value}" if len(value) <= 2 else f"brand-{value}"


def _yoochoose_prepared(path: Path, stats: ReplayStats) -> Iterator[Row]:
    lines = _lines(path, "\t")
    header = next(lines)
    col = {name: i for i, name in enumerate(header)}
    try:
        s, i, t = col["SessionId"], col["ItemId"], col["Time"]
    except KeyError as exc:
        raise DatasetError(f"{path}: expected header SessionId ItemId Time, got {header}") from exc
    yield from _mapped(lines, stats, lambda row: (
        round(float(row[t]) * 1000), _event(row[s], row[s], row[i], UNKNOWN, "view")))


RR_ACTIONS = {"view": "view", "addtocart": "add_to_cart", "transaction": "purchase"}


def _retailrocket(path: Path, stats: ReplayStats) -> Iterator[Row]:
    lines = _data_rows(path, ",", "RetailRocket",
                       "timestamp,visitorid,event,itemid,transactionid", check=4)
    categories = _rr_categories(path.parent)
    raw: list[tuple[str, int, int, str, str]] = []
    for n, row in enumerate(lines, 1):
        stats.rows += 1
        try:
            action = RR_ACTIONS[row[2]]
            raw.append((row[1], int(row[0]), n, action, row[3]))
        except KeyError:
            stats.skipped[f"unknown event type {row[2]!r}"] += 1
        except (IndexError, ValueError):
            stats.skipped["unreadable row"] += 1
    raw.sort()  # per visitor, by time: cut sessions at SESSION_GAP of inactivity
    visitor, last_ms, k = None, 0, 0
    for who, ms, n, action, item in raw:
        if who != visitor:
            visitor, k = who, 0
        elif ms - last_ms > SESSION_GAP_MS:
            k += 1
        last_ms = ms
        stats.mapped += 1
        yield ms, n, _event(f"{who}-{k}", who, item,
                            categories.get(item, UNKNOWN), action)


def _rr_categories(folder: Path) -> dict[str, str]:
    """item id -> top-level category id, from item_properties_part*.csv and category_tree.csv."""
    parts = sorted(folder.glob("item_properties_part*.csv"))
    if not parts:
        return {}
    parent: dict[str, str] = {}
    tree = folder / "category_tree.csv"
    if tree.is_file():
        for row in list(_lines(tree, ","))[1:]:
            if len(row) >= 2 and row[1]:
                parent[row[0]] = row[1]
    latest: dict[str, tuple[int, str]] = {}
    for part in parts:
        with open(part, encoding="utf-8") as f:
            for line in f:
                if ",categoryid," not in line:
                    continue
                stamp, item, _, value = line.rstrip("\n").split(",", 3)
                if item not in latest or int(stamp) > latest[item][0]:
                    latest[item] = (int(stamp), value)
    result = {}
    for item, (_, cat) in latest.items():
        seen = set()
        while cat in parent and cat not in seen:  # walk up to the root category
            seen.add(cat)
            cat = parent[cat]
        result[item] = f"category-{cat}"
    log.info("RetailRocket categories for %d items", len(result))
    return result


REES_ACTIONS = {"view": "view", "cart": "add_to_cart", "purchase": "purchase"}


def _rees46(path: Path, stats: ReplayStats) -> Iterator[Row]:
    lines = _data_rows(path, ",", "REES46", "event_time,event_type,product_id,...")

    def convert(row: list[str]) -> tuple[int, dict[str, Any]] | None:
        stamp, kind, item, cat_id, cat_code, brand, price, user, session = row[:9]
        action = REES_ACTIONS.get(kind)
        if action is None:
            stats.skipped[f"event type {kind!r} has no contract action"] += 1
            return None
        ms = _iso_ms(stamp)
        name = " ".join(x for x in (brand, cat_code.rsplit(".", 1)[-1]) if x)
        return ms, _event(session or f"{user}-nosession", user, item,
                          cat_code or (f"category-{cat_id}" if cat_id else UNKNOWN), action,
                          name=name, price=float(price) if price else None)

    yield from _mapped(lines, stats, convert)


def _diginetica(path: Path, stats: ReplayStats) -> Iterator[Row]:
    lines = _data_rows(path, ";", "DIGINETICA", "session_id;user_id;item_id;timeframe;eventdate")
    categories: dict[str, str] = {}
    cat_file = path.parent / "product-categories.csv"
    if cat_file.is_file():
        categories = {r[0]: f"category-{r[1]}" for r in list(_lines(cat_file, ";"))[1:]
                      if len(r) >= 2}

    def convert(row: list[str]) -> tuple[int, dict[str, Any]]:
        session, user, item, frame, date = row[:5]
        day = datetime.fromisoformat(date).replace(tzinfo=UTC)
        return round(day.timestamp() * 1000) + int(frame), _event(
            session, user if user and user != "NA" else f"anon-{session}", item,
            categories.get(item, UNKNOWN), "view")

    yield from _mapped(lines, stats, convert)
