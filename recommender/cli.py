"""The `flashrec` console command. Each command group lives in recommender/commands/<name>.py
and exposes `register(app)`; heavy imports stay inside the command functions so --help is fast.
"""

from __future__ import annotations

import importlib

import typer

from recommender import __version__

COMMAND_MODULES = [
    "evaluate",
    "broker",
    "produce",
    "sql",
    "up",
    "serve",
    "deploy",
    "relay",
    "intent",
    "experiment",
]

app = typer.Typer(
    name="flashrec",
    help=(
        "flashrec: real-time 'customers also viewed', 'trending now' and VMIS-kNN next-item "
        "recommendations from a live clickstream. Run `flashrec COMMAND --help` for details."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"flashrec {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """flashrec command line."""


for _name in COMMAND_MODULES:
    importlib.import_module(f"recommender.commands.{_name}").register(app)


if __name__ == "__main__":
    app()
