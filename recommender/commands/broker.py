"""`flashrec broker`: run the local Kafka-compatible broker (tansu) of the embedded runtime."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import typer

from recommender import config
from recommender.commands import options
from recommender.commands.signals import stop_on_signals

log = logging.getLogger("flashrec.broker")


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    """Add `broker` to the CLI."""

    @app.command("broker")
    def broker(
        port: int = options.broker_port("--port"),
        partitions: int = options.partitions(),
        topic: str = options.topic(),
        dlq_topic: str = options.dlq_topic(),
        storage: str = options.broker_storage(
            "--storage", "--broker-storage",
            help="disk, memory, or a tansu storage URL (memory://tansu/, s3://BUCKET/).",
        ),
        data_dir: Path = typer.Option(
            config.DEFAULT_DATA_DIR / "broker", "--data-dir",
            help="Folder of the disk storage (flashrec up uses DATA_DIR/broker).",
        ),
        bootstrap: str | None = options.bootstrap_servers(
            help="Use this Kafka/Redpanda instead: create the topics there and exit."
        ),
        log_file: Path | None = typer.Option(
            None, "--log-file", help="Write the broker's own log here (default: discard)."
        ),
        wait: float = options.broker_wait(20.0),
        config_file: Path | None = options.config_file(),
    ) -> None:
        """Start a Kafka-compatible broker on 127.0.0.1, create the topics, run until Ctrl-C."""
        from recommender.local_broker import BrokerUnavailable, LocalBroker, create_topics

        config.setup_logging()
        topics = (topic, dlq_topic)
        if bootstrap and bootstrap not in (f"127.0.0.1:{port}", f"localhost:{port}"):
            try:
                from recommender.local_broker import wait_for_broker

                wait_for_broker(bootstrap, wait)
                created = create_topics(bootstrap, topics, partitions, timeout=wait)
            except BrokerUnavailable as exc:
                _fail(str(exc))
            typer.echo(f"using external broker {bootstrap}; topics created: {created or 'none'}")
            return

        # Handlers first: a signal that arrives while the broker starts still stops it cleanly.
        stop = stop_on_signals()
        local = LocalBroker(port=port, partitions=partitions, topics=topics, log_path=log_file,
                            storage=storage, data_dir=data_dir)
        try:
            local.start(timeout=wait)
        except BrokerUnavailable as exc:
            _fail(f"{exc}. Try another --port, or --bootstrap-servers to use a running broker.")
        typer.echo(f"broker ready: bootstrap {local.bootstrap} (topics {topic}, {dlq_topic}; "
                   f"{partitions} partitions; storage {storage}"
                   f"{f' in {data_dir}' if local.disk else ''}). Ctrl-C stops it.", err=False)
        try:
            while not stop.is_set():
                if not local.running():
                    local.stop()
                    typer.echo("error: the broker process exited unexpectedly", err=True)
                    raise typer.Exit(1)
                time.sleep(0.2)
        finally:
            local.stop()
        log.info("broker on %s stopped", local.bootstrap)
