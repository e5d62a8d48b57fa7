"""`flashrec serve` (the recommendation API and dashboard) and `flashrec udf-server`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import NoReturn

import typer

from recommender import config
from recommender.commands import options
from udfs.params import VmisParams

log = logging.getLogger("flashrec.serve")

SOURCE_HELP = "Where the history comes from: embedded (`flashrec up`) or risingwave."
DSN_HELP = "PostgreSQL-wire DSN of the views (embedded PostgreSQL or RisingWave)."
HISTORY_HELP = "Build the index once from this TSV (SessionId, ItemId, Time) instead."


def _params(m: int, k: int, how_many: int, max_items: int, idf_weighting: float
            ) -> VmisParams:  # fmt: skip
    return VmisParams(
        m=m, k=k, how_many=how_many, max_items_in_session=max_items, idf_weighting=idf_weighting
    )


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _check_inputs(history: Path | None, source: str, dsn: str | None) -> None:
    if source not in ("embedded", "risingwave"):
        _fail(f"--source must be 'embedded' or 'risingwave', not {source!r}")
    if history is not None and not history.is_file():
        _fail(f"history file not found: {history}")
    if history is None and not dsn:
        _fail(f"give --history PATH or a PostgreSQL DSN (--pg-dsn or {config.ENV_PG_DSN})")


def serve(
    host: str = options.host(),
    port: int = options.api_port(),
    pg_dsn: str | None = options.pg_dsn(help=DSN_HELP),
    source: str = typer.Option("embedded", "--source", help=SOURCE_HELP),
    history: Path | None = typer.Option(None, "--history", help=HISTORY_HELP),
    data_dir: Path = options.data_dir(help="Folder for the session store (sessions/)."),
    m: int = options.vmis_m(),
    k: int = options.vmis_k(),
    how_many: int = options.vmis_how_many(),
    max_items: int = options.vmis_max_items(),
    idf_weighting: float = options.vmis_idf_weighting(),
    session_ttl: float = options.setting("api.session_ttl", "--session-ttl", min=0.0),
    blend_weights: str = options.blend_weights(),
    recommend_blend: bool = options.recommend_blend(),
    log_level: str | None = options.log_level(),
    config_file: Path | None = options.config_file(),
) -> None:
    """Serve recommendations, the dashboard, health and metrics over HTTP."""
    config.setup_logging(log_level)
    _check_inputs(history, source, pg_dsn)
    weights = options.parse_blend_weights(blend_weights)
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
            blend_weights=weights,
            recommend_blend=recommend_blend,
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


def udf_server(
    host: str = options.host(),
    port: int = options.port("udf.port", "--port"),
    pg_dsn: str | None = options.pg_dsn(help=DSN_HELP),
    source: str = typer.Option("risingwave", "--source", help=SOURCE_HELP),
    history: Path | None = typer.Option(None, "--history", help=HISTORY_HELP),
    m: int = options.vmis_m(),
    k: int = options.vmis_k(),
    how_many: int = options.vmis_how_many(),
    max_items: int = options.vmis_max_items(),
    idf_weighting: float = options.vmis_idf_weighting(),
    log_level: str | None = options.log_level(),
    config_file: Path | None = options.config_file(),
) -> None:
    """Serve vmis_recommend(items, n) to RisingWave as an Arrow Flight UDF server."""
    config.setup_logging(log_level)
    _check_inputs(history, source, pg_dsn)
    from recommender.serving.runtime import make_index
    from recommender.serving.udf_server import make_server

    try:
        index, sync = make_index(
            _params(m, k, how_many, max_items, idf_weighting),
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


def register(app: typer.Typer) -> None:
    """Add `serve` and `udf-server` to the CLI."""
    app.command("serve")(serve)
    app.command("udf-server")(udf_server)
