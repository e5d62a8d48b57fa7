"""`flashrec broker`: run the local Kafka-compatible broker (tansu) of the embedded runtime."""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path

import typer

from recommender import config

log = logging.getLogger("flashrec.broker")


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    """Add `broker` to the CLI."""

    @app.command("broker")
    def broker(
        port: int = typer.Option(
            config.DEFAULT_BROKER_PORT, "--port", min=1, max=65535, envvar=config.ENV_BROKER_PORT,
            help="TCP port on 127.0.0.1 for the local broker.",
        ),
        partitions: int = typer.Option(
            config.DEFAULT_PARTITIONS, "--partitions", min=1, envvar=config.ENV_PARTITIONS,
            help="Partitions of the clickstream and dead-letter topics. One engine reads them "
            "all; more partitions make the embedded broker hold more batches (three times as "
            "many for three), and its CPU grows with them (docs/producers.md).",
        ),
        topic: str = typer.Option(
            config.DEFAULT_TOPIC, "--topic", envvar=config.ENV_TOPIC, help="Clickstream topic."
        ),
        dlq_topic: str = typer.Option(
            config.DEFAULT_DLQ_TOPIC, "--dlq-topic", envvar=config.ENV_DLQ_TOPIC,
            help="Dead-letter topic (malformed events with the reason).",
        ),
        storage: str = typer.Option(
            config.DEFAULT_BROKER_STORAGE, "--storage", "--broker-storage",
            envvar=config.ENV_BROKER_STORAGE,
            help="disk (default: the events under --data-dir, kept across restarts and deleted "
            "once every consumer group has committed past them), memory (until the broker "
            "stops), or a tansu storage URL: memory://tansu/, s3://BUCKET/ (AWS_* env).",
        ),
        data_dir: Path = typer.Option(
            config.DEFAULT_DATA_DIR / "broker", "--data-dir",
            help="Folder of the disk storage (flashrec up uses DATA_DIR/broker).",
        ),
        bootstrap: str | None = typer.Option(
            None, "--bootstrap-servers", envvar=config.ENV_BOOTSTRAP,
            help="Use this running Kafka/Redpanda instead (create the topics there and exit). "
            "Ignored when it is the local address 127.0.0.1:PORT.",
        ),
        log_file: Path | None = typer.Option(
            None, "--log-file", help="Write the broker's own log here (default: discard)."
        ),
        wait: float = typer.Option(
            20.0, "--wait", min=0.5, envvar=config.ENV_BROKER_WAIT,
            help="Seconds to wait for the broker to answer before giving up.",
        ),
    ) -> None:
        """Start a Kafka-compatible broker on 127.0.0.1, create the topics, run until Ctrl-C."""
        from recommender.broker import BrokerUnavailable, LocalBroker, create_topics

        config.setup_logging()
        topics = (topic, dlq_topic)
        if bootstrap and bootstrap not in (f"127.0.0.1:{port}", f"localhost:{port}"):
            try:
                from recommender.broker import wait_for_broker

                wait_for_broker(bootstrap, wait)
                created = create_topics(bootstrap, topics, partitions, timeout=wait)
            except BrokerUnavailable as exc:
                _fail(str(exc))
            typer.echo(f"using external broker {bootstrap}; topics created: {created or 'none'}")
            return

        stop = False

        def on_signal(signum: int, frame: object) -> None:
            nonlocal stop
            stop = True

        # Handlers first: a signal that arrives while the broker starts still stops it cleanly.
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
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
            while not stop:
                if not local.running():
                    local.stop()
                    typer.echo("error: the broker process exited unexpectedly", err=True)
                    raise typer.Exit(1)
                time.sleep(0.2)
        finally:
            local.stop()
        log.info("broker on %s stopped", local.bootstrap)
