"""Optional dependencies (pyproject's extras): imported where they are used, with an error that
names the extra to install when one is missing."""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message says which extra installs it."""


def require(module: str, extra: str) -> ModuleType:
    """Import and return `module`, part of the extra `extra`; MissingExtra when it (or a
    package it needs) is not installed."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = exc.name or module
        what = missing if missing == module else f"{missing} (needed by {module})"
        raise MissingExtra(f"{what} is not installed; it comes with the '{extra}' extra: "
                           f"pip install 'flashrec[{extra}]'") from exc
