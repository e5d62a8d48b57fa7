"""`flashrec relay`: validate the clickstream in front of RisingWave (production path)."""

from __future__ import annotations

from pathlib import Path

import typer

from recommender import config
from recommender.commands import options
from recommender.commands.signals import stop_on_signals


def register(app: typer.Typer) -> None:
    """Add `flashrec relay` to the CLI."""

    @app.command("relay")
    def relay(
        bootstrap_servers: str | None = options.bootstrap_servers(),
        topic: str = options.topic(help="Topic the producers write (raw events, any content)."),
        valid_topic: str = options.valid_topic(),
        dlq_topic: str = options.dlq_topic(),
        group_id: str = typer.Option(
            "flashrec-relay", "--group-id", help="Consumer group (where a restart resumes)."
        ),
        data_dir: Path = options.data_dir(help="Folder of dead-letters.jsonl (dead letters the "
                                          "broker refuses)."),
        max_batch: int = typer.Option(
            10_000, "--max-batch", min=1, help="Most messages validated and sent per batch."
        ),
        report_every: float = typer.Option(
            30.0, "--report-every", min=1.0, help="Seconds between log lines of the counts."
        ),
        config_file: Path | None = options.config_file(),
    ) -> None:
        """Validate every message of the producers' topic with the engine's validator: valid
        events go on, keyed by session_id, to the topic RisingWave reads; refused ones go to
        the dead-letter topic with the reason. Offsets are committed only after both are
        delivered (at least once: RisingWave's clickstream table drops repeated event_ids).
        Runs until SIGTERM or Ctrl-C; counts are logged every --report-every seconds."""
        from recommender.local_broker import BrokerUnavailable
        from recommender.validate_relay import RelayConfig, RelayError, run

        config.setup_logging()
        stop = stop_on_signals()
        settings = RelayConfig(
            bootstrap=bootstrap_servers, topic=topic, valid_topic=valid_topic,
            dlq_topic=dlq_topic, group_id=group_id, folder=data_dir,
            max_batch=max_batch, report_every=report_every,
        )  # fmt: skip
        try:
            run(settings, lambda _counts: stop.is_set())
        except BrokerUnavailable as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
        except RelayError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
