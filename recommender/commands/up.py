"""`flashrec up`: the embedded runtime on one machine: broker, PostgreSQL, streaming engine
(and, optionally, the recommendation API and the live purchase-intent scorer)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from recommender import config
from recommender.commands import options
from recommender.commands.signals import stop_on_signals

log = logging.getLogger("flashrec.up")


@dataclass(frozen=True)
class UpOptions:
    """What `flashrec up` was asked to run (its flags, after validation)."""

    bootstrap: str | None
    broker_port: int
    partitions: int
    pg_dsn: str | None
    pg_port: int
    pg_shared_buffers: str
    data_dir: Path
    clock: str
    refresh_interval: float
    background_interval: float
    background_share: float
    background_process: bool
    unlogged_views: bool
    duckdb_threads: int
    reindex_interval: float
    topic: str
    dlq_topic: str
    group_id: str
    api_port: int
    intent: bool
    intent_model_dir: Path | None
    broker_storage: str = config.DEFAULT_BROKER_STORAGE
    blend_weights: Any = None  # the API's blend weights (None: blend.DEFAULT)
    recommend_blend: bool = False  # the API's GET /v1/recommend answers the blend


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def start_api_hook(engine: Any, dsn: str, port: int, data_dir: Path, blend_weights: Any = None,
                   recommend_blend: bool = False) -> Any:  # fmt: skip
    """Start the recommendation API in this process, following the engine's change feed."""
    from recommender.serving.runtime import start_api

    return start_api(engine, dsn, port=port, data_dir=data_dir, blend_weights=blend_weights,
                     recommend_blend=recommend_blend)  # fmt: skip


# options of `up` that take more than a line; --help lists them in the signature's order
DATA_DIR = options.data_dir(
    help="Folder of the engine state, the local broker's and PostgreSQL's data."
)
API_PORT = options.api_port(
    "--api-port", default=0, help="Also serve the recommendation API on this port (0: no)."
)
BOOTSTRAP = options.bootstrap_servers(
    help="Use this Kafka/Redpanda instead of starting the local broker."
)
PG_DSN = options.pg_dsn(
    help="Publish the views into this PostgreSQL instead of starting the local one."
)
INTENT = options.setting("intent.enabled", "--intent/--no-intent")
BLEND_WEIGHTS = options.blend_weights()
RECOMMEND_BLEND = options.recommend_blend()
PG_SHARED_BUFFERS = options.setting(
    "postgres.shared_buffers", "--pg-shared-buffers", panel=options.TUNING
)
REFRESH_INTERVAL = options.setting(
    "engine.refresh_interval", "--refresh-interval", min=0.05, panel=options.TUNING
)
BACKGROUND_INTERVAL = options.setting(
    "engine.background_interval", "--background-interval", min=0.0, panel=options.TUNING
)
BACKGROUND_SHARE = options.setting(
    "engine.background_share", "--background-share", min=0.05, max=1.0, panel=options.TUNING
)
BACKGROUND_PROCESS = options.setting(
    "engine.background_process", "--background-process/--background-thread",
    panel=options.TUNING,
)  # fmt: skip
UNLOGGED_VIEWS = options.setting(
    "engine.unlogged_views", "--unlogged-views/--logged-views", panel=options.TUNING
)
DUCKDB_THREADS = options.setting(
    "engine.duckdb_threads", "--duckdb-threads", min=0, panel=options.TUNING
)
REINDEX_INTERVAL = options.setting(
    "engine.reindex_interval", "--reindex-interval", min=0.0, panel=options.TUNING
)
GROUP_ID = options.setting("engine.group_id", "--group-id", panel=options.TUNING)


def up(
    data_dir: Path = DATA_DIR,
    api_port: int = API_PORT,
    bootstrap: str | None = BOOTSTRAP,
    pg_dsn: str | None = PG_DSN,
    broker_port: int = options.broker_port(),
    pg_port: int = options.pg_port(),
    topic: str = options.topic(),
    dlq_topic: str = options.dlq_topic(),
    clock: str = options.clock(),
    intent: bool = INTENT,
    intent_model_dir: Path | None = options.intent_model_dir(),
    blend_weights: str = BLEND_WEIGHTS,
    recommend_blend: bool = RECOMMEND_BLEND,
    config_file: Path | None = options.config_file(),
    broker_storage: str = options.broker_storage(panel=options.TUNING),
    partitions: int = options.partitions(panel=options.TUNING),
    pg_shared_buffers: str = PG_SHARED_BUFFERS,
    refresh_interval: float = REFRESH_INTERVAL,
    background_interval: float = BACKGROUND_INTERVAL,
    background_share: float = BACKGROUND_SHARE,
    background_process: bool = BACKGROUND_PROCESS,
    unlogged_views: bool = UNLOGGED_VIEWS,
    duckdb_threads: int = DUCKDB_THREADS,
    reindex_interval: float = REINDEX_INTERVAL,
    group_id: str = GROUP_ID,
) -> None:
    """Start broker, PostgreSQL and the streaming engine on 127.0.0.1; Ctrl-C stops all."""
    from recommender.engine import CLOCKS
    from recommender.postgres.local import check_size

    config.setup_logging()
    options.one_of("--clock", clock, CLOCKS)
    try:
        check_size(pg_shared_buffers, "--pg-shared-buffers")
    except ValueError as exc:
        _fail(str(exc))
    weights = options.parse_blend_weights(blend_weights)
    run_until_stopped(UpOptions(
        bootstrap=bootstrap, broker_port=broker_port, partitions=partitions,
        pg_dsn=pg_dsn, pg_port=pg_port,
        pg_shared_buffers=pg_shared_buffers, data_dir=Path(data_dir), clock=clock,
        refresh_interval=refresh_interval, background_interval=background_interval,
        background_share=background_share, background_process=background_process,
        unlogged_views=unlogged_views, duckdb_threads=duckdb_threads,
        reindex_interval=reindex_interval, topic=topic, dlq_topic=dlq_topic, group_id=group_id,
        api_port=api_port, intent=intent,
        intent_model_dir=intent_model_dir, broker_storage=broker_storage,
        blend_weights=weights, recommend_blend=recommend_blend,
    ))  # fmt: skip


def register(app: typer.Typer) -> None:
    """Add `up` to the CLI."""
    app.command("up")(up)


def run_until_stopped(o: UpOptions) -> None:
    """Run what `o` asks for until SIGINT or SIGTERM, then stop all of it, newest first."""
    starting = threading.Event()  # set while the engine starts (reads its views back)

    def interrupt_start() -> None:
        if starting.is_set():  # interrupt the engine's start; a second signal only stops
            starting.clear()
            raise KeyboardInterrupt

    stop = stop_on_signals(interrupt_start)
    started: list[Any] = []
    try:
        _run(o, stop, started, starting)
    except KeyboardInterrupt:
        log.info("stopped while the engine started")
    finally:
        for thing in reversed(started):
            try:
                thing.stop()
            except Exception as exc:  # keep stopping the rest
                log.warning("stopping %s failed: %s", type(thing).__name__, exc)
        typer.echo("flashrec up: stopped")


def start_intent(engine: Any, dsn: str, model_dir: Path, clock: str, started: list[Any]
                 ) -> str:
    """Start the live intent scorer on the engine's session_features feed when a promoted
    model exists; returns the status line to print."""
    import psycopg

    from recommender.extras import MissingExtra
    from recommender.intent.score import ScorerThread
    from recommender.intent.train import current_version

    version = current_version(model_dir)
    if version is None:
        hint = "" if model_dir == config.data_dir() / "intent_models" else (
            f" --model-dir {model_dir}")
        log.info("no promoted intent model in %s: train one with "
                 "`flashrec intent train --data generated%s`", model_dir, hint)
        return f"intent: off (no promoted model in {model_dir})"
    try:
        feed = engine.subscribe("session_features")
    except KeyError:
        return "intent: off (no session_features view)"
    try:
        scorer = ScorerThread(dsn, model_dir, feed, clock=clock)
    except (FileNotFoundError, psycopg.Error, MissingExtra) as exc:
        feed.close()
        log.warning("intent scorer not started: %s", exc)
        return f"intent: off ({exc})"
    started.append(scorer.start())
    return f"intent: scoring sessions with model {scorer.version} (from {model_dir})"


def producer_command(bootstrap: str, topic: str) -> str:
    """The command that sends a flash sale to this broker and topic (printed in the banner)."""
    command = f"flashrec produce flash-sale --bootstrap-servers {bootstrap} --rate 200"
    return command if topic == config.DEFAULT_TOPIC else f"{command} --topic {topic}"


def _run(o: UpOptions, stop: threading.Event, started: list[Any],
         starting: threading.Event) -> None:  # fmt: skip
    """Start what `o` asks for (each appended to `started`, which the caller stops) and
    wait for `stop` or an engine failure. `starting` is set while the engine starts: a
    signal then raises KeyboardInterrupt (the engine reads every view table back first)."""
    from recommender.local_broker import BrokerUnavailable, LocalBroker, create_topics
    from recommender.postgres.local import READER, LocalPostgres, PostgresUnavailable

    o.data_dir.mkdir(parents=True, exist_ok=True)
    bootstrap = o.bootstrap
    try:
        if bootstrap is None:
            broker = LocalBroker(port=o.broker_port, topics=(o.topic, o.dlq_topic),
                                 partitions=o.partitions, log_path=o.data_dir / "broker.log",
                                 pid_file=o.data_dir / "broker.pid", storage=o.broker_storage,
                                 data_dir=o.data_dir / "broker")  # fmt: skip
            broker.start()
            started.append(broker)
            bootstrap = broker.bootstrap
            if not broker.disk:
                log.info("the embedded broker keeps every event in memory, and its CPU grows "
                         "with the batches it holds: --broker-storage disk keeps only what the "
                         "engine has not stored (docs/producers.md)")  # fmt: skip
        else:
            create_topics(bootstrap, [o.topic, o.dlq_topic], o.partitions)
    except BrokerUnavailable as exc:
        _fail(str(exc))
    pg_dsn, psql, shown_dsn = o.pg_dsn, None, o.pg_dsn
    if pg_dsn is None:
        try:
            pg = LocalPostgres(o.data_dir / "pg", o.pg_port,
                               shared_buffers=o.pg_shared_buffers).start()  # fmt: skip
        except PostgresUnavailable as exc:
            _fail(str(exc))
        started.append(pg)
        # printed: the writer's DSN naming its password file, psql as the read-only role
        pg_dsn, psql, shown_dsn = pg.dsn, pg.psql_command(), f"{pg.passfile_dsn} (writer)"
    if stop.is_set():  # a signal came while the broker or PostgreSQL started
        return
    engine = _start_engine(o, pg_dsn, bootstrap, starting)
    started.append(engine)
    if o.api_port:
        try:
            started.append(start_api_hook(engine, pg_dsn, o.api_port, o.data_dir,
                                          o.blend_weights, o.recommend_blend))  # fmt: skip
        except RuntimeError as exc:  # e.g. the port is taken
            _fail(f"{exc} (is port {o.api_port} free?)")
    intent_line = "intent: off (--no-intent)"
    if o.intent:
        model_dir = Path(o.intent_model_dir or o.data_dir / "intent_models")
        intent_line = start_intent(engine, pg_dsn, model_dir, o.clock, started)
    typer.echo(f"broker: {bootstrap} (topic {o.topic}, dead letters {o.dlq_topic})")
    typer.echo(f"produce: {producer_command(bootstrap, o.topic)}")
    typer.echo(f"views: {', '.join(engine.view_names)} (clock {o.clock}, every "
               f"{o.refresh_interval:g} s)")  # fmt: skip
    typer.echo(f"PostgreSQL: {shown_dsn}")
    if psql:
        typer.echo(f"psql (read-only role {READER}): {psql}")
    if o.api_port:
        typer.echo(f"API: http://127.0.0.1:{o.api_port}")
    typer.echo(intent_line)
    typer.echo("flashrec up: running (Ctrl-C to stop)", err=False)
    local_pg = next((x for x in started if type(x).__name__ == "LocalPostgres"), None)
    local_broker = next((x for x in started if type(x).__name__ == "LocalBroker"), None)
    while not stop.wait(0.5):
        if engine.error is not None:
            log.error("engine failed: %s", engine.error)
            raise typer.Exit(1)
        if local_pg is not None and not local_pg.running():
            _restart_postgres(local_pg)
        if local_broker is not None and not local_broker.running() and not stop.is_set():
            _restart_broker(local_broker)


def _start_engine(o: UpOptions, pg_dsn: str, bootstrap: str | None, starting: threading.Event
                  ) -> Any:  # fmt: skip
    """The engine, started. `starting` is set meanwhile: it reads every view table back
    first, and a signal then raises KeyboardInterrupt."""
    from recommender.engine import (
        BackgroundConfig,
        Engine,
        EngineConfig,
        PublishConfig,
        RefreshConfig,
        SourceConfig,
    )
    from recommender.engine.background import thread_tier
    from recommender.engine.worker import process_tier

    engine_config = EngineConfig(
        PublishConfig(pg_dsn, unlogged=o.unlogged_views, reindex_interval=o.reindex_interval),
        o.data_dir / "engine.duckdb",
        source=SourceConfig(bootstrap, o.topic, o.dlq_topic, o.group_id, clock=o.clock),
        refresh=RefreshConfig(interval=o.refresh_interval),
        background=BackgroundConfig(interval=o.background_interval, share=o.background_share),
        duckdb_threads=o.duckdb_threads or None,
    )  # fmt: skip
    starting.set()
    try:
        tier = process_tier if o.background_process else thread_tier
        return Engine(engine_config, tier=tier).start()
    finally:
        starting.clear()


def _restart_broker(broker: Any) -> None:
    """Start the local broker again after it (or its object store) died: on disk it comes
    back with the events it held; in memory it is a new, empty incarnation, which the engine
    recognises and reads from its start. Producers and the engine reconnect by themselves."""
    from recommender.local_broker import BrokerUnavailable

    log.warning("the local broker is not running (crashed or killed): starting it again on "
                "%s", broker.bootstrap)  # fmt: skip
    broker.stop()  # what is left of it (its object store, its pid file)
    try:
        broker.start()
    except BrokerUnavailable as exc:
        log.error("the broker did not start again: %s; trying again", exc)


def _restart_postgres(pg: Any) -> None:
    """Start the local PostgreSQL again after it died (the engine's publishes wait for it
    and then go through)."""
    from recommender.postgres.local import PostgresUnavailable

    log.warning("the local PostgreSQL is not running (crashed or killed): starting it again")
    try:
        pg.start()
    except PostgresUnavailable as exc:
        log.error("PostgreSQL did not start again: %s; trying again", exc)
