"""The view catalog: the .toml beside a view's .sql in sql/ says how flashrec runs the view.

`sql/045_co_view_pairs.toml` describes the one view of `sql/045_co_view_pairs.sql`. Its keys,
all optional (a view without a .toml has the defaults):

- keys (list of column names): the columns that identify a row (the PostgreSQL index that
  deletes find rows by); none: rows are matched whole.
- partition (column name): each row depends only on the events of one value of this column,
  so a refresh recomputes the values touched since the last one, not all of them.
- window_partitioned (bool): each row belongs to one TUMBLE window of `ts` (window_start) and
  depends only on that window's events and on the bot flags of their sessions.
- feed (bool): the publisher keeps a change feed table for the view.
- tier ("main" or "background"): background views are refreshed on their own cadence.
- maintainer (name): the incremental maintainer that keeps the view instead of its SQL
  (recommender/engine/maintainers.py); absent: the SQL recomputes it.
- bot_source (bool): the view whose is_bot flags keep bot sessions out of the others (one).
- history (bool): the session history the VMIS-kNN index is built from and follows (one).

Unknown keys and values of the wrong type are refused with the file's name.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TIERS = ("main", "background")
# key -> (type of its value, the type's name in messages)
FIELDS: dict[str, tuple[type, str]] = {
    "keys": (list, "a list of column names"),
    "partition": (str, "a column name"),
    "window_partitioned": (bool, "true or false"),
    "feed": (bool, "true or false"),
    "tier": (str, f"one of {', '.join(TIERS)}"),
    "maintainer": (str, "a maintainer's name"),
    "bot_source": (bool, "true or false"),
    "history": (bool, "true or false"),
}


@dataclass(frozen=True)
class ViewMeta:
    """One view's catalog entry."""

    name: str  # the view's name, from its SQL
    file: str  # the .toml's file name
    keys: tuple[str, ...] = ()
    partition: str | None = None
    window_partitioned: bool = False
    feed: bool = False
    tier: str = "main"
    maintainer: str | None = None
    bot_source: bool = False
    history: bool = False


def read(path: Path, name: str) -> ViewMeta:
    """The catalog entry of view `name` in file `path`; ValueError naming the file when it
    is not valid TOML or holds an unknown key or a value of the wrong type."""
    try:
        doc: dict[str, Any] = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path.name}: not valid TOML ({exc})") from None
    unknown = sorted(set(doc) - set(FIELDS))
    if unknown:
        raise ValueError(f"{path.name}: unknown key(s) {', '.join(unknown)} "
                         f"(known: {', '.join(FIELDS)})")  # fmt: skip
    for key, value in doc.items():
        kind, expected = FIELDS[key]
        items_ok = kind is not list or all(isinstance(v, str) and v for v in value)
        if not isinstance(value, kind) or not items_ok:
            raise ValueError(f"{path.name}: {key} must be {expected}, not {value!r}")
    if doc.get("tier", "main") not in TIERS:
        raise ValueError(f"{path.name}: tier must be one of {', '.join(TIERS)}, "
                         f"not {doc['tier']!r}")  # fmt: skip
    return ViewMeta(name=name, file=path.name, **{**doc, "keys": tuple(doc.get("keys", ()))})


def check(entries: list[ViewMeta]) -> None:
    """ValueError when several entries claim what only one view can be."""
    for flag in ("bot_source", "history"):
        claimed = [m.file for m in entries if getattr(m, flag)]
        if len(claimed) > 1:
            raise ValueError(f"{flag} = true in several files ({', '.join(claimed)}); "
                             "one view at most")  # fmt: skip


def _flagged(catalog: dict[str, ViewMeta], flag: str) -> str | None:
    names = [n for n, m in catalog.items() if getattr(m, flag)]
    return names[0] if names else None


def bot_view(catalog: dict[str, ViewMeta]) -> str | None:
    """The view whose is_bot flags keep bots out of the others (None: no such view)."""
    return _flagged(catalog, "bot_source")


def history_view(catalog: dict[str, ViewMeta]) -> str | None:
    """The session history view the VMIS-kNN index follows (None: no such view)."""
    return _flagged(catalog, "history")


def feed_views(catalog: dict[str, ViewMeta]) -> tuple[str, ...]:
    """The views whose changes go to a change feed table."""
    return tuple(n for n, m in catalog.items() if m.feed)


def tier_views(catalog: dict[str, ViewMeta], tier: str) -> tuple[str, ...]:
    """The views of one tier ("main" or "background")."""
    return tuple(n for n, m in catalog.items() if m.tier == tier)


def view_keys(catalog: dict[str, ViewMeta]) -> dict[str, tuple[str, ...]]:
    """Each view's key columns (views without keys left out)."""
    return {n: m.keys for n, m in catalog.items() if m.keys}
