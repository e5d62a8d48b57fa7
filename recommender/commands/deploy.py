"""`flashrec deploy`: apply sql/ to RisingWave (production path)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from recommender import config
from recommender.commands import options

if TYPE_CHECKING:
    from recommender.risingwave import Step


def deploy(
    dsn: str = options.setting("risingwave.dsn", "--dsn"),
    bootstrap_servers: str = options.bootstrap_servers(
        default=config.DEFAULT_BOOTSTRAP,
        help="Kafka/Redpanda address as RisingWave reaches it (host:port[,host:port]).",
    ),
    topic: str = options.valid_topic("--topic"),
    udf_link: str | None = options.setting(
        "udf.link", "--udf-link",
        help="Address of the UDF server as RisingWave reaches it (none: UDFs skipped).",
    ),
    sql_dir: Path | None = options.setting("paths.sql_dir", "--sql-dir"),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the SQL that would run; connect to nothing."
    ),
    drop: bool = typer.Option(
        False, "--drop", help="Remove every object of sql/ (newest first) instead."
    ),
    timeout: float = typer.Option(
        30.0, "--connect-timeout", help="Seconds one connection attempt may take."
    ),
    wait: float = options.setting("risingwave.wait", "--wait", min=0.0),
    config_file: Path | None = options.config_file(),
) -> None:
    """Create the clickstream table, views, subscriptions and UDFs of sql/ on RisingWave.

    Waits first (up to --wait seconds, with backoff) until RisingWave answers a query and
    has a running compute node. Idempotent: an object already in RisingWave's catalog is
    reported as found and left as it is. --dry-run prints the SQL; --drop removes it all.
    The clickstream table reads --topic: the validated events of `flashrec relay`.
    """
    from recommender import risingwave as dep

    folder = Path(sql_dir or config.SQL_DIR)
    if not folder.is_dir():
        typer.echo(f"error: no SQL folder at {folder}", err=True)
        raise typer.Exit(2)
    try:
        steps = dep.plan_folder(folder, bootstrap_servers, topic, udf_link)
    except dep.DeployError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if dry_run:
        print_plan(steps, drop)
        return
    _print_outcomes(dsn, apply_steps(dsn, steps, drop, timeout, wait))


def print_plan(steps: list[Step], drop: bool) -> None:
    """Print what a real run sends, in its order; a skipped step says why."""
    from recommender import risingwave as dep

    for step in reversed(steps) if drop else steps:
        typer.echo(f"-- {step.obj.file}: {step.obj.kind} {step.obj.name}")
        if drop:
            typer.echo(f"{dep.drop_sql(step.obj)};\n")
        elif step.outcome == "skipped":
            typer.echo("-- skipped: no --udf-link (FLASHREC_UDF_LINK) given, so a real "
                       "run does not create it\n")  # fmt: skip
        else:
            typer.echo(f"{step.sql};\n")


def apply_steps(dsn: str, steps: list[Step], drop: bool, timeout: float, wait: float
                ) -> list[Step]:  # fmt: skip
    """Wait for RisingWave at `dsn`, then create (or with `drop`, remove) what `steps` name;
    returns the steps with their outcomes."""
    import psycopg

    from recommender import risingwave as dep

    config.setup_logging()  # the retries are logged
    try:
        conn = dep.wait_ready(
            lambda: psycopg.connect(dsn, autocommit=True, connect_timeout=int(timeout)), wait
        )
    except dep.DeployError as exc:
        typer.echo(f"error: cannot reach RisingWave at {dsn}: {exc}", err=True)
        raise typer.Exit(2) from exc
    with conn:
        def query(sql: str, params: tuple) -> list[tuple]:
            return conn.execute(sql, params).fetchall()

        def execute(sql: str) -> None:
            conn.execute(sql)

        try:
            return (dep.drop if drop else dep.apply)(steps, query, execute)
        except dep.DeployError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc


def _print_outcomes(dsn: str, done: list[Step]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"flashrec deploy -> {dsn}")
    for column in ("file", "kind", "name", "outcome"):
        table.add_column(column)
    for step in done:
        table.add_row(step.obj.file, step.obj.kind, step.obj.name, step.outcome)
    Console(width=120).print(table)


def register(app: typer.Typer) -> None:
    """Add `flashrec deploy` to the CLI."""
    app.command("deploy")(deploy)
