"""The incremental maintainers a view's catalog entry can name (`maintainer = "coview"` in its
.toml beside the .sql). Each keeps its views from the stored events instead of recomputing
their SQL, with the same rows, for one shape of query (sqlfiles.shape: the query with its
intervals and thresholds as placeholders), and reads those parameters from the SQL.

A view that names a maintainer whose shape its SQL does not have stops the engine with a
ValueError; a view that names none is recomputed by its SQL.
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType
from typing import Any

from recommender import sqlfiles

# the name in the catalog -> its module, which has parameters(view) (ShapeError when the
# view's SQL is not its shape) and maintainers(views) (the overrides of its views), and may
# have joint_problem(views) (why its views cannot share its state; None: they can)
MODULES = {
    "coview": "recommender.engine.coview",
    "customer": "recommender.engine.customer",
    "sessions": "recommender.engine.sessions",
    "trending": "recommender.engine.trending",
}


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


def build(views: list[sqlfiles.SqlObject]) -> dict[str, Any]:
    """The overrides of every view that names a maintainer (ValueError as `check`)."""
    check(views)
    out: dict[str, Any] = {}
    for name, group in declared(views).items():
        module = _module(name)
        assert module is not None  # check() refused unknown names
        out.update(module.maintainers(group))
    return out
