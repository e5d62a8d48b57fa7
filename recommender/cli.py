"""The `flashrec` console command. Each command group lives in recommender/commands/<name>.py
and exposes `register(app)`; heavy imports stay inside the command functions so --help is fast.
"""

from __future__ import annotations

import importlib
import os
import sys

import typer
import typer.rich_utils

from recommender import __version__

# Off a terminal (a pipe, CI, `docker logs`) rich renders help 80 columns wide, which cuts long
# option names; give it room unless TERMINAL_WIDTH or COLUMNS asks for a width.
HELP_WIDTH = 120
if (typer.rich_utils.MAX_WIDTH is None and not os.environ.get("COLUMNS")
        and not sys.stdout.isatty()):
    typer.rich_utils.MAX_WIDTH = HELP_WIDTH

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
        "recommendations from a live clickstream. Run `flashrec COMMAND --help` for details. "
        "A setting comes from its flag, else its FLASHREC_* variable, else the --config file, "
        "else its default."
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
