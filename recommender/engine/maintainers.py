"""The incremental maintainers a view's catalog entry can name (`maintainer = "coview"` in its
.toml beside the .sql). Each keeps its views from the stored events instead of recomputing
their SQL, with the same rows, for one shape of query (sqlfiles.shape: the query with its
intervals and thresholds as placeholders), and reads those parameters from the SQL.

A view that names a maintainer whose shape its SQL does not have stops the engine with a
ValueError; a view that names none is recomputed by its SQL.

Every maintainer implements `Maintainer`, what ViewRunner (refresh.py) asks of a view kept by
code: its rows, and where it has them its own changes or its changed keys' rows, and the
session and bot state it shares with the other maintainers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from importlib import import_module
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

import duckdb

from recommender import sqlfiles

# the name in the catalog -> its module, which has parameters(view) (ShapeError when the
# view's SQL is not its shape) and maintainers(views) (the Maintainer of each of its views),
# and may have joint_problem(views) (why its views cannot share its state; None: they can)
MODULES = {
    "coview": "recommender.engine.coview",
    "customer": "recommender.engine.customer",
    "sessions": "recommender.engine.sessions",
    "trending": "recommender.engine.trending",
}


# A view's changes in one refresh: (inserted rows, deleted rows, rows after the refresh)
Delta = tuple[Sequence[tuple[Any, ...]], Sequence[tuple[Any, ...]], int]
# session_features' bot sessions as last computed (ViewRunner.bots, refresh.bot_sessions)
BotsOf = Callable[[duckdb.DuckDBPyConnection], frozenset[str]]
# the oldest stored click of these sessions among the events up to a seq (None: not known)
FirstClick = Callable[[Iterable[str], int], datetime | None]
# a view computed by a function: (connection, clock) -> SQL of a relation of its rows
Compute = Callable[[duckdb.DuckDBPyConnection, datetime], str]


@runtime_checkable
class Maintainer(Protocol):
    """A view kept by code instead of its SQL, as ViewRunner drives it. Every maintainer has
    every member; one without a capability answers False or None, or ignores the call."""

    # the view's columns and DuckDB types, as `delta` gives its rows (empty without delta)
    COLUMNS: list[str]
    TYPES: list[str]

    def override(self, con: duckdb.DuckDBPyConnection, now: datetime) -> str:
        """The whole view at clock `now`: SQL of a relation of its rows."""
        ...

    @property
    def reports_changes(self) -> bool:
        """True: once built by `override` and committed, its changes come from `delta`."""
        ...

    def delta(self, con: duckdb.DuckDBPyConnection, now: datetime) -> Delta | None:
        """The view's changes since its last refresh (None: it does not report them)."""
        ...

    @property
    def by_touched_keys(self) -> bool:
        """True: once built and committed, the rows of its changed partition keys come from
        `touched`."""
        ...

    def touched(self, con: duckdb.DuckDBPyConnection, now: datetime, table: str) -> str | None:
        """Fill `table` (column k) with the keys whose rows changed; returns SQL of those
        keys' rows (None: it does not give them)."""
        ...

    def first_clicks(self) -> FirstClick | None:
        """Where the oldest clicks of the sessions it keeps are looked up (None: it keeps
        no sessions)."""
        ...

    def read_first_clicks(self, first_click: FirstClick) -> None:
        """Look up the oldest clicks of sessions whose bot flag flipped in `first_click`
        (ignored where not needed)."""
        ...

    def read_bots(self, bots_of: BotsOf) -> None:
        """Read session_features' bot sessions from `bots_of` (ignored by a maintainer that
        does not keep bots out)."""
        ...

    def read_flips_from(self, table: str) -> None:
        """Read the events of sessions whose bot flag flipped from `table`, which has the
        columns of flashrec_events (ignored where not needed)."""
        ...


class Defaults:
    """The members of the protocol a maintainer lacks, as a base class: no change report,
    no touched keys, no sessions kept, nothing read from the runner."""

    @property
    def reports_changes(self) -> bool:
        return False

    def delta(self, con: duckdb.DuckDBPyConnection, now: datetime) -> Delta | None:
        return None

    @property
    def by_touched_keys(self) -> bool:
        return False

    def touched(self, con: duckdb.DuckDBPyConnection, now: datetime, table: str) -> str | None:
        return None

    def first_clicks(self) -> FirstClick | None:
        return None

    def read_first_clicks(self, first_click: FirstClick) -> None:
        pass

    def read_bots(self, bots_of: BotsOf) -> None:
        pass

    def read_flips_from(self, table: str) -> None:
        pass


class Computed(Defaults):
    """A view computed by a function in every refresh: a maintainer with no other
    capability."""

    def __init__(self, compute: Compute) -> None:
        self.compute = compute
        self.COLUMNS: list[str] = []
        self.TYPES: list[str] = []

    def override(self, con: duckdb.DuckDBPyConnection, now: datetime) -> str:
        return self.compute(con, now)


def as_maintainer(override: Maintainer | Compute) -> Maintainer:
    """A maintainer as it is; a function as a view computed by it in every refresh."""
    return override if isinstance(override, Maintainer) else Computed(override)


def declared(views: list[sqlfiles.SqlObject]) -> dict[str, list[sqlfiles.SqlObject]]:
    """The views that name each maintainer, in file order."""
    out: dict[str, list[sqlfiles.SqlObject]] = {}
    for view in views:
        if view.meta is not None and view.meta.maintainer is not None:
            out.setdefault(view.meta.maintainer, []).append(view)
    return out


def _module(name: str) -> ModuleType | None:
    return import_module(MODULES[name]) if name in MODULES else None


def problems(views: list[sqlfiles.SqlObject]) -> dict[str, str | None]:
    """Per view that names a maintainer: why its SQL does not have the shape that maintainer
    reproduces (None: it has)."""
    out: dict[str, str | None] = {}
    for name, group in declared(views).items():
        module = _module(name)
        if module is None:
            out.update({v.name: f"there is no maintainer {name!r} (known: "
                                f"{', '.join(MODULES)})" for v in group})  # fmt: skip
            continue
        for view in group:
            try:
                module.parameters(view)
                out[view.name] = None
            except sqlfiles.ShapeError as exc:
                out[view.name] = str(exc)
        joint = getattr(module, "joint_problem", None)
        if joint is not None and not any(out[v.name] for v in group):
            problem = joint(group)
            out.update({v.name: problem for v in group})
    return out


def check(views: list[sqlfiles.SqlObject]) -> None:
    """ValueError naming each view whose SQL does not have the shape of the maintainer its
    catalog entry names, and what differs."""
    found = problems(views)
    lines = []
    for view in views:
        problem = found.get(view.name)
        if problem and view.meta is not None:
            lines.append(f"{view.name}: {view.meta.file} names maintainer "
                         f"{view.meta.maintainer!r}, but {view.file} does not have the shape "
                         f"of query it reproduces: {problem}")  # fmt: skip
    if lines:
        raise ValueError("\n".join(lines))


def build(views: list[sqlfiles.SqlObject]) -> dict[str, Maintainer]:
    """The maintainer of every view that names one (ValueError as `check`)."""
    check(views)
    out: dict[str, Maintainer] = {}
    for name, group in declared(views).items():
        module = _module(name)
        assert module is not None  # check() refused unknown names
        out.update(module.maintainers(group))
    return out
