"""`flashrec deploy`: apply sql/ to RisingWave (production path)."""

from __future__ import annotations

from pathlib import Path

import typer

from recommender import config

DEFAULT_DSN = "postgresql://root@localhost:4566/dev"


def register(app: typer.Typer) -> None:
    """Add `flashrec deploy` to the CLI."""

    @app.command("deploy")
    def deploy(
        dsn: str = typer.Option(
            DEFAULT_DSN, "--dsn", envvar="FLASHREC_RW_DSN",
            help="RisingWave SQL endpoint (PostgreSQL wire protocol).",
        ),
        bootstrap_servers: str = typer.Option(
            config.DEFAULT_BOOTSTRAP, "--bootstrap-servers", envvar=config.ENV_BOOTSTRAP,
            help="Kafka/Redpanda address as RisingWave reaches it (host:port[,host:port]).",
        ),
        topic: str = typer.Option(
            config.DEFAULT_TOPIC, "--topic", envvar=config.ENV_TOPIC,
            help="Kafka topic of the clickstream source.",
        ),
        udf_link: str | None = typer.Option(
            None, "--udf-link", envvar="FLASHREC_UDF_LINK",
            help="Address of `flashrec udf-server` as RisingWave reaches it, e.g. "
            "http://udf:8815. Without it the UDFs are skipped.",
        ),
        sql_dir: Path | None = typer.Option(
            None, "--sql-dir", envvar=config.ENV_SQL_DIR, help="Folder of the .sql files."
        ),
        dry_run: bool = typer.Option(
            False, "--dry-run", help="Print the SQL that would run; connect to nothing."
        ),
        drop: bool = typer.Option(
            False, "--drop", help="Remove every object of sql/ (newest first) instead."
        ),
        timeout: float = typer.Option(
            30.0, "--connect-timeout", help="Seconds to wait for RisingWave to answer."
        ),
    ) -> None:
        """Create the clickstream source, views, subscriptions and UDFs of sql/ on RisingWave.

        Idempotent: an object already in RisingWave's catalog is reported as found and left
        as it is. --dry-run prints the SQL; --drop removes it all.
        """
        from rich.console import Console
        from rich.table import Table

        from recommender import deploy as dep
        from recommender import sqlfiles

        folder = Path(sql_dir or config.SQL_DIR)
        if not folder.is_dir():
            typer.echo(f"error: no SQL folder at {folder}", err=True)
            raise typer.Exit(2)
        try:
            steps = dep.plan(
                sqlfiles.load(folder), bootstrap_servers, topic, udf_link,
                include_functions=udf_link is not None or dry_run,
            )
        except dep.DeployError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
        if dry_run:
            for step in reversed(steps) if drop else steps:
                sql = dep.drop_sql(step.obj) if drop else step.sql
                typer.echo(f"-- {step.obj.file}: {step.obj.kind} {step.obj.name}\n{sql};\n")
            return
        import psycopg

        try:
            conn = psycopg.connect(dsn, autocommit=True, connect_timeout=int(timeout))
        except psycopg.OperationalError as exc:
            typer.echo(f"error: cannot reach RisingWave at {dsn}: {exc}", err=True)
            raise typer.Exit(2) from exc
        with conn:
            def query(sql: str, params: tuple) -> list[tuple]:
                return conn.execute(sql, params).fetchall()

            def execute(sql: str) -> None:
                conn.execute(sql)

            try:
                done = (dep.drop if drop else dep.apply)(steps, query, execute)
            except dep.DeployError as exc:
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(1) from exc
        table = Table(title=f"flashrec deploy -> {dsn}")
        for column in ("file", "kind", "name", "outcome"):
            table.add_column(column)
        for step in done:
            table.add_row(step.obj.file, step.obj.kind, step.obj.name, step.outcome)
        Console(width=120).print(table)
