"""Read session-rec / Serenade click files: TSV with a header naming SessionId, ItemId, Time.

Ids are kept as int64 when every value of the column is an integer, else as strings; Time is
epoch seconds (float). Any problem raises SessionFileError naming the file and the line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

COLUMNS = ("SessionId", "ItemId", "Time")


class SessionFileError(ValueError):
    """A click file that cannot be read; the message names the file (and line, if any)."""

    def __init__(self, path: Path | str, message: str, line: int | None = None) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")
        self.path = str(path)
        self.line = line


@dataclass(frozen=True)
class Sessions:
    """Clicks as parallel arrays, in file order."""

    session_ids: np.ndarray
    item_ids: np.ndarray
    timestamps: np.ndarray

    def __len__(self) -> int:
        return len(self.timestamps)


def _ids(values: list[str]) -> np.ndarray:
    try:
        return np.array([int(v) for v in values], dtype=np.int64)
    except (ValueError, OverflowError):
        return np.array(values, dtype=object)


def read_sessions(path: Path | str) -> Sessions:
    """All clicks of a TSV file with columns SessionId, ItemId, Time (other columns ignored)."""
    path = Path(path)
    try:
        handle = path.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise SessionFileError(path, f"cannot open: {exc.strerror or exc}") from None
    sessions: list[str] = []
    items: list[str] = []
    times: list[float] = []
    try:
        with handle:
            header = handle.readline()
            if not header:
                raise SessionFileError(path, "empty file (expected a header line)", 1)
            names = header.rstrip("\r\n").split("\t")
            missing = [c for c in COLUMNS if c not in names]
            if missing:
                raise SessionFileError(
                    path,
                    f"header lacks {', '.join(missing)} (expected tab-separated "
                    f"{', '.join(COLUMNS)}; got {header.strip()[:80]!r})",
                    1,
                )
            s_col, i_col, t_col = (names.index(c) for c in COLUMNS)
            width = len(names)
            for number, raw in enumerate(handle, start=2):
                line = raw.rstrip("\r\n")
                if not line.strip():
                    continue
                fields = line.split("\t")
                if len(fields) != width:
                    raise SessionFileError(
                        path, f"expected {width} tab-separated fields, got {len(fields)}", number
                    )
                session, item, stamp = fields[s_col], fields[i_col], fields[t_col]
                if not session or not item:
                    raise SessionFileError(path, "empty SessionId or ItemId", number)
                try:
                    t = float(stamp)
                except ValueError:
                    message = f"Time is not a number: {stamp!r}"
                    raise SessionFileError(path, message, number) from None
                if not math.isfinite(t):
                    raise SessionFileError(path, f"Time is not finite: {stamp!r}", number)
                sessions.append(session)
                items.append(item)
                times.append(t)
    except UnicodeDecodeError as exc:
        raise SessionFileError(path, f"not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise SessionFileError(path, f"cannot read: {exc.strerror or exc}") from None
    return Sessions(_ids(sessions), _ids(items), np.asarray(times, dtype=np.float64))


def group_sessions(data: Sessions) -> list[tuple[object, np.ndarray]]:
    """(session id, item ids ordered by time) per session; ties keep file order."""
    if len(data) == 0:
        return []
    from recommender.ids import first_appearance_codes

    ids, codes = first_appearance_codes(data.session_ids)
    order = np.lexsort((data.timestamps, codes))
    sorted_codes = codes[order]
    cuts = np.flatnonzero(np.diff(sorted_codes)) + 1
    starts = np.concatenate(([0], cuts))
    ends = np.concatenate((cuts, [len(order)]))
    items = data.item_ids[order]
    return [(ids[sorted_codes[a]], items[a:b]) for a, b in zip(starts, ends, strict=True)]


def from_dataset(path: Path | str, fmt: str) -> Sessions:
    """The views of a raw data set (producers.replay formats) as session clicks."""
    from producers.replay import read_dataset
    from recommender.events import parse_ts

    sessions: list[str] = []
    items: list[str] = []
    times: list[float] = []
    for event in read_dataset(path, fmt):
        if event["action"] == "view":
            sessions.append(event["session_id"])
            items.append(event["product_id"])
            times.append(parse_ts(event["ts"]).timestamp())
    return Sessions(_ids(sessions), _ids(items), np.asarray(times, dtype=np.float64))


def split_by_time(data: Sessions, share: float = 0.2) -> tuple[Sessions, Sessions]:
    """(earlier, later): whole sessions, the later `share` of them by first click."""
    if len(data) == 0:
        return data, data
    from recommender.ids import first_appearance_codes

    _, codes = first_appearance_codes(data.session_ids)
    first = np.full(int(codes.max()) + 1, np.inf)
    np.minimum.at(first, codes, data.timestamps)
    order = np.lexsort((np.arange(len(first)), first))
    cut = len(order) - max(1, round(share * len(order)))
    later = np.zeros(len(first), dtype=bool)
    later[order[cut:]] = True
    mask = later[codes]

    def pick(m: np.ndarray) -> Sessions:
        return Sessions(data.session_ids[m], data.item_ids[m], data.timestamps[m])

    return pick(~mask), pick(mask)
