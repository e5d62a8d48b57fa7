"""`flashrec intent` (not built yet)."""

import typer


def register(app: typer.Typer) -> None:
    """Nothing to register until this command is built."""
