"""`flashrec serve` (the recommendation API and dashboard) and `flashrec udf-server`."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from recommender import config

log = logging.getLogger("flashrec.serve")

SOURCE_HELP = (
    "Where the live history comes from: 'embedded' (PostgreSQL of `flashrec up`) or "
    "'risingwave' (subscription vmis_history_sub)."
)


def _params(m: int, k: int, how_many: int, max_items: int, idf_weighting: float):
    from recommender.serving.live_index import Params

    return Params(
        m=m, k=k, how_many=how_many, max_items_in_session=max_items, idf_weighting=idf_weighting
    )


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _check_inputs(history: Path | None, source: str, dsn: str | None) -> None:
    if source not in ("embedded", "risingwave"):
        _fail(f"--source must be 'embedded' or 'risingwave', not {source!r}")
    if history is not None and not history.is_file():
        _fail(f"history file not found: {history}")
    if history is None and not dsn:
        _fail(f"give --history PATH or a PostgreSQL DSN (--pg-dsn or {config.ENV_PG_DSN})")


def register(app: typer.Typer) -> None:
    """Add `serve` and `udf-server` to the CLI."""

    @app.command("serve")
    def serve(
        host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
        port: int = typer.Option(config.DEFAULT_API_PORT, "--port", help="HTTP port."),
        pg_dsn: str = typer.Option(
            None,
            "--pg-dsn",
            envvar=config.ENV_PG_DSN,
            help="PostgreSQL-wire DSN of the views (embedded PostgreSQL or RisingWave).",
        ),
        source: str = typer.Option("embedded", "--source", help=SOURCE_HELP),
        history: Path = typer.Option(
            None,
            "--history",
            help="Build the index once from this TSV (SessionId, ItemId, Time) instead of the "
            "vmis_history view (benchmarks, offline use).",
        ),
        data_dir: Path = typer.Option(
            config.DEFAULT_DATA_DIR,
            "--data-dir",
            envvar=config.ENV_DATA_DIR,
            help="Folder for the session store (sessions/).",
        ),
        m: int = typer.Option(500, "--m", help="Most recent sessions kept per item."),
        k: int = typer.Option(500, "--k", help="Neighbour sessions used per recommendation."),
        how_many: int = typer.Option(21, "--how-many", help="Items returned by /v1/recommend."),
        max_items: int = typer.Option(
            2, "--max-session-items", help="Newest clicks of a session kept and used."
        ),
        idf_weighting: float = typer.Option(1.0, "--idf-weighting", help="idf weight factor."),
        session_ttl: float = typer.Option(
            1800.0, "--session-ttl", help="Seconds of inactivity after which a session restarts."
        ),
        log_level: str = typer.Option(
            None, "--log-level", envvar=config.ENV_LOG_LEVEL, help="Logging level (INFO...)."
        ),
    ) -> None:
        """Serve recommendations, the dashboard, health and metrics over HTTP."""
        config.setup_logging(log_level)
        _check_inputs(history, source, pg_dsn)
        import uvicorn

        from recommender.serving.app import create_app
        from recommender.serving.runtime import build_state, http_impl, loop_impl

        try:
            state = build_state(
                params=_params(m, k, how_many, max_items, idf_weighting),
                data_dir=data_dir,
                history=history,
                source=source,
                dsn=pg_dsn,
                session_ttl_s=session_ttl,
            )
        except (OSError, ValueError) as exc:
            _fail(str(exc))
        log.info("serving on http://%s:%d (dashboard at /, API docs at /docs)", host, port)
        uvicorn.run(
            create_app(state),
            host=host,
            port=port,
            loop=loop_impl(),
            http=http_impl(),
            log_level="warning",
            access_log=False,
        )

    @app.command("udf-server")
    def udf_server(
        host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
        port: int = typer.Option(8815, "--port", help="Arrow Flight port."),
        pg_dsn: str = typer.Option(
            None,
            "--pg-dsn",
            envvar=config.ENV_PG_DSN,
            help="PostgreSQL-wire DSN of the views (embedded PostgreSQL or RisingWave).",
        ),
        source: str = typer.Option("risingwave", "--source", help=SOURCE_HELP),
        history: Path = typer.Option(
            None, "--history", help="Build the index once from this TSV instead of the view."
        ),
        m: int = typer.Option(500, "--m", help="Most recent sessions kept per item."),
        k: int = typer.Option(500, "--k", help="Neighbour sessions used per recommendation."),
        max_items: int = typer.Option(
            2, "--max-session-items", help="Newest clicks of a session used."
        ),
        idf_weighting: float = typer.Option(1.0, "--idf-weighting", help="idf weight factor."),
        log_level: str = typer.Option(
            None, "--log-level", envvar=config.ENV_LOG_LEVEL, help="Logging level (INFO...)."
        ),
    ) -> None:
        """Serve vmis_recommend(items, n) to RisingWave as an Arrow Flight UDF server."""
        config.setup_logging(log_level)
        _check_inputs(history, source, pg_dsn)
        from recommender.serving.runtime import make_index
        from udfs.server import make_server

        try:
            index, sync = make_index(
                _params(m, k, 21, max_items, idf_weighting),
                history=history,
                source=source,
                dsn=pg_dsn,
            )
        except (OSError, ValueError) as exc:
            _fail(str(exc))
        if sync is not None:
            sync.start()
        server = make_server(index, host, port)
        log.info("UDF server on %s:%d (vmis_recommend, vmis_recommend_scored)", host, port)
        try:
            server.serve()
        finally:
            if sync is not None:
                sync.stop()
