"""`flashrec up`: the embedded runtime on one machine: broker, PostgreSQL, streaming engine
(and, optionally, the recommendation API and the live purchase-intent scorer)."""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from recommender import config

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
    topic: str
    dlq_topic: str
    group_id: str
    api_port: int
    intent: bool
    intent_model_dir: Path | None
    broker_storage: str = config.DEFAULT_BROKER_STORAGE


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def start_api_hook(engine: Any, dsn: str, port: int, data_dir: Path) -> Any:
    """Start the recommendation API in this process, following the engine's change feed."""
    from recommender.serving.runtime import start_api

    return start_api(engine, dsn, port=port, data_dir=data_dir)


def register(app: typer.Typer) -> None:
    """Add `up` to the CLI."""

    @app.command("up")
    def up(
        bootstrap: str | None = typer.Option(
            None, "--bootstrap-servers", envvar=config.ENV_BOOTSTRAP,
            help="Use this running Kafka/Redpanda instead of starting the local broker.",
        ),
        broker_port: int = typer.Option(
            config.DEFAULT_BROKER_PORT, "--broker-port", min=1, max=65535,
            envvar=config.ENV_BROKER_PORT, help="Port of the local broker on 127.0.0.1.",
        ),
        broker_storage: str = typer.Option(
            config.DEFAULT_BROKER_STORAGE, "--broker-storage", envvar=config.ENV_BROKER_STORAGE,
            help="Where the local broker keeps the events: disk (DATA_DIR/broker, kept across "
            "restarts, deleted once the engine has stored them) or memory (until it stops; "
            "for tests and demos).",
        ),
        partitions: int = typer.Option(
            config.DEFAULT_PARTITIONS, "--partitions", min=1, envvar=config.ENV_PARTITIONS,
            help="Partitions of the clickstream and dead-letter topics, where flashrec creates "
            "them (topics that exist keep theirs). The engine reads them all; more partitions "
            "make the embedded broker hold more batches, and its CPU grows with them "
            "(docs/producers.md).",
        ),
        pg_dsn: str | None = typer.Option(
            None, "--pg-dsn", envvar=config.ENV_PG_DSN,
            help="Publish the views into this PostgreSQL instead of starting the local one.",
        ),
        pg_port: int = typer.Option(
            config.DEFAULT_PG_PORT, "--pg-port", min=1, max=65535, envvar=config.ENV_PG_PORT,
            help="TCP port of the local PostgreSQL on 127.0.0.1 (psql -h 127.0.0.1 -p PORT).",
        ),
        pg_shared_buffers: str = typer.Option(
            config.DEFAULT_PG_SHARED_BUFFERS, "--pg-shared-buffers",
            envvar=config.ENV_PG_SHARED_BUFFERS,
            help="Buffer cache of the local PostgreSQL (e.g. 512MB, 2GB). Large view tables "
            "such as co_view_pairs at flash-sale rates need it in memory: at 5,000 events/s "
            "1GB published co_view_pairs 3-5 times faster than PostgreSQL's 128MB "
            "(docs/benchmarks.md).",
        ),
        data_dir: Path = typer.Option(
            config.DEFAULT_DATA_DIR, "--data-dir", envvar=config.ENV_DATA_DIR,
            help="Folder of the engine state (engine.duckdb) and PostgreSQL data (pg/).",
        ),
        clock: str = typer.Option(
            "wall", "--clock", envvar=config.ENV_CLOCK,
            help="NOW() of the views: 'wall' (current time) or 'event' (newest event time "
            "seen; deterministic replays).",
        ),
        refresh_interval: float = typer.Option(
            1.0, "--refresh-interval", min=0.05, envvar=config.ENV_REFRESH_INTERVAL,
            help="Seconds between view refreshes (each one PostgreSQL transaction).",
        ),
        background_interval: float = typer.Option(
            30.0, "--background-interval", min=0.0, envvar=config.ENV_BACKGROUND_INTERVAL,
            help="Seconds between refreshes of the heavy 30-day customer views, which run "
            "apart from the other views so they never delay them (0: refresh them with every "
            "other view).",
        ),
        background_share: float = typer.Option(
            config.DEFAULT_BACKGROUND_SHARE, "--background-share", min=0.05, max=1.0,
            envvar=config.ENV_BACKGROUND_SHARE,
            help="At most this share of the time goes to refreshing the customer views: when "
            "a refresh takes D seconds, the next starts after max(--background-interval, "
            "D*(1-share)/share) seconds. At the full 30-minute window at 5,000 events/s a "
            "refresh takes minutes and slows every other view while it runs: the default 0.2 "
            "keeps those views fresher than 0.5 did, and the customer views up to about 7-12 "
            "minutes behind there (docs/benchmarks.md). 1: only the interval. Not used with "
            "--background-process.",
        ),
        background_process: bool = typer.Option(
            False, "--background-process/--background-thread",
            envvar=config.ENV_BACKGROUND_PROCESS,
            help="Run the customer views in a child process (own interpreter, Kafka consumer "
            "and state file engine-background.duckdb) instead of a thread of the engine. It "
            "reads and stores every event a second time: on 2 cores the thread measured "
            "fresher (docs/benchmarks.md); with cores to spare the process keeps the engine's "
            "interpreter free.",
        ),
        unlogged_views: bool = typer.Option(
            False, "--unlogged-views/--logged-views", envvar=config.ENV_UNLOGGED_VIEWS,
            help="Keep the views without a change feed (co_view_pairs and the customer views) "
            "in UNLOGGED tables: PostgreSQL writes no WAL for them (the customer views write "
            "about 230 MB per 500,000 events). PostgreSQL empties them if it crashes, and the "
            "engine republishes them when it starts again; replicas and backups do not hold "
            "them. For disks or replication links short of WAL bandwidth; no speed gain was "
            "measured on a 2-core machine (docs/benchmarks.md).",
        ),
        duckdb_threads: int = typer.Option(
            1, "--duckdb-threads", min=0, envvar=config.ENV_DUCKDB_THREADS,
            help="Threads of the engine's DuckDB (0: one per core, DuckDB's default). One "
            "measured fresher and faster on 2 cores, where the broker and PostgreSQL share "
            "them (docs/benchmarks.md).",
        ),
        topic: str = typer.Option(
            config.DEFAULT_TOPIC, "--topic", envvar=config.ENV_TOPIC, help="Clickstream topic."
        ),
        dlq_topic: str = typer.Option(
            config.DEFAULT_DLQ_TOPIC, "--dlq-topic", envvar=config.ENV_DLQ_TOPIC,
            help="Dead-letter topic for malformed and duplicate events.",
        ),
        group_id: str = typer.Option(
            "flashrec-engine", "--group-id", envvar=config.ENV_ENGINE_GROUP,
            help="Kafka consumer group of the engine.",
        ),
        api_port: int = typer.Option(
            0, "--api-port", min=0, max=65535,
            help="Also serve the recommendation API on this port (0: do not).",
        ),
        intent: bool = typer.Option(
            True, "--intent/--no-intent", envvar=config.ENV_INTENT,
            help="Score live sessions' purchase intent into session_intent with the promoted "
            "model of --intent-model-dir (off when there is none).",
        ),
        intent_model_dir: Path | None = typer.Option(
            None, "--intent-model-dir", envvar=config.ENV_INTENT_MODEL_DIR,
            help="Folder of the intent models (default: DATA_DIR/intent_models, where "
            "`flashrec intent train` puts them).",
        ),
    ) -> None:
        """Start broker, PostgreSQL and the streaming engine on 127.0.0.1; Ctrl-C stops all."""
        from recommender.engine import CLOCKS
        from recommender.pgserve import check_size

        config.setup_logging()
        if clock not in CLOCKS:
            _fail(f"--clock must be one of {', '.join(CLOCKS)}, not {clock!r}")
        try:
            check_size(pg_shared_buffers, "--pg-shared-buffers")
        except ValueError as exc:
            _fail(str(exc))
        stop = threading.Event()
        starting = threading.Event()  # set while the engine starts (reads its views back)

        def on_signal(signum: int, frame: object) -> None:
            stop.set()
            if starting.is_set():  # interrupt the engine's start; a second signal only stops
                starting.clear()
                raise KeyboardInterrupt

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, on_signal)
        options = UpOptions(
            bootstrap=bootstrap, broker_port=broker_port, partitions=partitions,
            pg_dsn=pg_dsn, pg_port=pg_port,
            pg_shared_buffers=pg_shared_buffers, data_dir=Path(data_dir), clock=clock,
            refresh_interval=refresh_interval, background_interval=background_interval,
            background_share=background_share, background_process=background_process,
            unlogged_views=unlogged_views, duckdb_threads=duckdb_threads, topic=topic,
            dlq_topic=dlq_topic, group_id=group_id, api_port=api_port, intent=intent,
            intent_model_dir=intent_model_dir, broker_storage=broker_storage,
        )  # fmt: skip
        started: list[Any] = []
        try:
            _run(options, stop, started, starting)
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
    except (FileNotFoundError, psycopg.Error) as exc:
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
    from recommender.broker import BrokerUnavailable, LocalBroker, create_topics
    from recommender.pgserve import READER, LocalPostgres, PostgresUnavailable

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
            started.append(start_api_hook(engine, pg_dsn, o.api_port, o.data_dir))
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
    while not stop.wait(0.5):
        if engine.error is not None:
            log.error("engine failed: %s", engine.error)
            raise typer.Exit(1)
        if local_pg is not None and not local_pg.running():
            _restart_postgres(local_pg)


def _start_engine(o: UpOptions, pg_dsn: str, bootstrap: str | None, starting: threading.Event
                  ) -> Any:  # fmt: skip
    """The engine, started. `starting` is set meanwhile: it reads every view table back
    first, and a signal then raises KeyboardInterrupt."""
    from recommender.engine import Engine, EngineConfig

    starting.set()
    try:
        return Engine(EngineConfig(
            pg_dsn=pg_dsn, state_path=o.data_dir / "engine.duckdb", bootstrap=bootstrap,
            topic=o.topic, dlq_topic=o.dlq_topic, group_id=o.group_id, clock=o.clock,
            refresh_interval=o.refresh_interval, background_interval=o.background_interval,
            background_process=o.background_process, background_share=o.background_share,
            unlogged_views=o.unlogged_views,
            duckdb_threads=o.duckdb_threads or None,
        )).start()  # fmt: skip
    finally:
        starting.clear()


def _restart_postgres(pg: Any) -> None:
    """Start the local PostgreSQL again after it died (the engine's publishes wait for it
    and then go through)."""
    from recommender.pgserve import PostgresUnavailable

    log.warning("the local PostgreSQL is not running (crashed or killed): starting it again")
    try:
        pg.start()
    except PostgresUnavailable as exc:
        log.error("PostgreSQL did not start again: %s; trying again", exc)
