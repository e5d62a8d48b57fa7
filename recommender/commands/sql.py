"""`flashrec sql`: check the RisingWave SQL of sql/ and show what the embedded engine runs."""

from __future__ import annotations

from pathlib import Path

import typer

from recommender import config

STATUS_STYLE = {"ok": "green", "unchecked": "yellow", "error": "red"}


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    """Add the `sql` command group to the CLI."""
    group = typer.Typer(help="The RisingWave SQL of sql/ (views, source, subscriptions).",
                        no_args_is_help=True)  # fmt: skip
    app.add_typer(group, name="sql")

    sql_dir_option = typer.Option(
        None, "--sql-dir", envvar=config.ENV_SQL_DIR,
        help="Folder of the .sql files (default: the project's sql/).",
    )  # fmt: skip

    @group.command("check")
    def check(sql_dir: Path | None = sql_dir_option) -> None:
        """Parse every statement with sqlglot (RisingWave dialect) and list each object.

        ok: parsed; unchecked: sqlglot only sees a generic command (not validated);
        error: does not parse. Exit code 1 when a statement has an error.
        """
        from rich.console import Console
        from rich.table import Table

        from recommender import sqlfiles

        folder = sql_dir or config.SQL_DIR
        if not Path(folder).is_dir():
            _fail(f"no SQL folder at {folder}")
        objects = sqlfiles.load(folder)
        table = Table(title=f"sql/ objects ({folder})")
        for column in ("file", "kind", "name", "status", "detail"):
            table.add_column(column)
        for o in objects:
            style = STATUS_STYLE.get(o.status, "")
            table.add_row(o.file, o.kind, o.name, f"[{style}]{o.status}[/]", o.detail)
        Console(width=160).print(table)
        counts = {s: sum(o.status == s for o in objects) for s in STATUS_STYLE}
        typer.echo(", ".join(f"{n} {s}" for s, n in counts.items()))
        if counts["error"]:
            raise typer.Exit(1)

    @group.command("show")
    def show(
        view: str = typer.Argument(..., help="Name of a materialized view of sql/."),
        sql_dir: Path | None = sql_dir_option,
    ) -> None:
        """Print the DuckDB SQL the embedded engine runs for VIEW (NOW() = the engine clock)."""
        from recommender import sqlfiles

        views = {v.name: v for v in sqlfiles.views(sqlfiles.load(sql_dir))}
        if view not in views:
            _fail(f"no view {view!r}; views: {', '.join(views)}")
        query = sqlfiles.view_query(views[view])
        typer.echo(f"-- {views[view].file}; look-back {sqlfiles.horizon(query)}")
        typer.echo(sqlfiles.to_duckdb(query).replace(sqlfiles.NOW_MARKER, "$now"))
