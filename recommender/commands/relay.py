"""`flashrec relay`: validate the clickstream in front of RisingWave (production path)."""

from __future__ import annotations

import signal
from pathlib import Path

import typer

from recommender import config


def register(app: typer.Typer) -> None:
    """Add `flashrec relay` to the CLI."""

    @app.command("relay")
    def relay(
        bootstrap_servers: str | None = typer.Option(
            None, "--bootstrap-servers", envvar=config.ENV_BOOTSTRAP,
            help="Kafka/Redpanda address (host:port[,host:port]); default 127.0.0.1:9092.",
        ),
        topic: str = typer.Option(
            config.DEFAULT_TOPIC, "--topic", envvar=config.ENV_TOPIC,
            help="Topic the producers write (raw events, any content).",
        ),
        valid_topic: str = typer.Option(
            config.DEFAULT_VALID_TOPIC, "--valid-topic", envvar=config.ENV_VALID_TOPIC,
            help="Topic of the valid events, the one RisingWave's clickstream table reads "
            "(`flashrec deploy --topic`).",
        ),
        dlq_topic: str = typer.Option(
            config.DEFAULT_DLQ_TOPIC, "--dlq-topic", envvar=config.ENV_DLQ_TOPIC,
            help="Dead-letter topic: one JSON record per refused message (reason, payload, "
            "topic, partition, offset), as the embedded engine writes them.",
        ),
        group_id: str = typer.Option(
            "flashrec-relay", "--group-id", help="Consumer group (its committed offsets are "
            "where a restarted relay resumes)."
        ),
        data_dir: Path | None = typer.Option(
            None, "--data-dir", envvar=config.ENV_DATA_DIR, show_default=".flashrec",
            help="Folder of dead-letters.jsonl, where dead letters the broker refuses go.",
        ),
        max_batch: int = typer.Option(
            10_000, "--max-batch", min=1, help="Most messages validated and sent per batch."
        ),
        report_every: float = typer.Option(
            30.0, "--report-every", min=1.0,
            help="Seconds between log lines counting relayed and rejected messages.",
        ),
    ) -> None:
        """Validate every message of the producers' topic with the engine's validator: valid
        events go on, keyed by session_id, to the topic RisingWave reads; refused ones go to
        the dead-letter topic with the reason. Offsets are committed only after both are
        delivered (at least once: RisingWave's clickstream table drops repeated event_ids).
        Runs until SIGTERM or Ctrl-C; counts are logged every --report-every seconds."""
        from recommender.broker import BrokerUnavailable
        from recommender.relay import RelayConfig, RelayError, run

        config.setup_logging()
        stop = False

        def on_signal(signum: int, frame: object) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        settings = RelayConfig(
            bootstrap=bootstrap_servers, topic=topic, valid_topic=valid_topic,
            dlq_topic=dlq_topic, group_id=group_id, folder=data_dir or config.data_dir(),
            max_batch=max_batch, report_every=report_every,
        )  # fmt: skip
        try:
            run(settings, lambda _counts: stop)
        except BrokerUnavailable as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
        except RelayError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
