"""`flashrec produce flash-sale` (synthetic traffic) and `flashrec replay` (real data sets).

Both send contract events to Kafka (keyed by session_id) or, with --out, to a JSONL file; both
pace by event time (--speed), show a progress bar and print a summary. Ctrl-C / SIGTERM stop
sending, flush what was sent and report it.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from recommender import config
from recommender.commands import options

if TYPE_CHECKING:
    from rich.progress import Progress

    from producers.flash_sale import FlashSaleConfig, SalePlan

log = logging.getLogger("flashrec.produce")


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _open_sink(out: Path | None, bootstrap: str | None, topic: str, wait: float,
               delivery_timeout: float = 30.0):
    from producers.sink import JsonlSink, KafkaSink
    from recommender.local_broker import BrokerUnavailable

    if out is not None:
        return JsonlSink(out)
    try:
        return KafkaSink(bootstrap, topic, wait=wait, delivery_timeout=delivery_timeout)
    except BrokerUnavailable as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        typer.echo("interrupted while waiting for the broker: nothing sent", err=True)
        raise typer.Exit(130) from None


def _epoch_s(ts: str) -> float:
    from recommender.events import parse_ts

    return parse_ts(ts).timestamp()


LOG_EVERY_S = 10.0  # off a terminal: a progress line this often


def _progress_bar(quiet: bool) -> Progress:
    """The progress bar of `pump`: messages sent, rate and event time."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>9} ev/s  event time {task.fields[at]}"),
        TimeElapsedColumn(), disable=quiet, transient=False,
    )


def pump(
    items: Iterable[dict[str, Any] | bytes],
    sink: Any,
    speed: float = 0.0,
    total: int | None = None,
    label: str = "events",
    quiet: bool = False,
) -> dict[str, Any]:
    """Send every item to `sink`, pacing by event time at `speed` (0 = as fast as possible).

    Returns the sink's summary plus first/last event time and whether it was interrupted.
    """
    from producers.sink import DeliveryFailed

    interrupted = False
    # Ctrl-C and SIGTERM stop the loop between two messages: raised inside sink.send they
    # could land after a message was queued and before it was counted
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}  # fmt: skip
    first_ts = last_ts = None
    t0_event = t0_wall = None
    n = 0
    started = time.monotonic()
    progress = _progress_bar(quiet)
    task = progress.add_task(label, total=total, rate="", at="")
    logged = not quiet and not progress.console.is_terminal  # a line every 10 s instead
    next_line = started + LOG_EVERY_S
    try:
        with progress:
            next_update = started + 0.2
            for item in items:
                if stop.is_set():
                    break
                if isinstance(item, dict):
                    last_ts = item["ts"]
                    if first_ts is None:
                        first_ts = last_ts
                    if speed > 0:
                        when = _epoch_s(last_ts)
                        if t0_event is None:
                            t0_event, t0_wall = when, time.monotonic()
                        delay = t0_wall + (when - t0_event) / speed - time.monotonic()
                        if delay > 0 and stop.wait(delay):
                            break
                sink.send(item)
                n += 1
                now = time.monotonic()
                if now >= next_update:
                    next_update = now + 0.2
                    rate = n / max(now - started, 1e-9)
                    progress.update(task, completed=n, rate=f"{rate:,.0f}", at=last_ts or "")
                    if logged and now >= next_line:
                        next_line = now + LOG_EVERY_S
                        of = f" of {total:,}" if total else ""
                        log.info("%s: %s%s sent, %.0f/s, event time %s", label, f"{n:,}", of,
                                 rate, last_ts)  # fmt: skip
            progress.update(task, completed=n, at=last_ts or "",
                            rate=f"{n / max(time.monotonic() - started, 1e-9):,.0f}")
    except KeyboardInterrupt:
        interrupted = True
    except DeliveryFailed as exc:
        log.error("stopped sending: %s", exc)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        interrupted = interrupted or stop.is_set()
        if interrupted:
            log.warning("interrupted after %d messages: flushing what was sent", n)
        summary = sink.close()
    seconds = time.monotonic() - started
    summary.update(
        interrupted=interrupted, first_ts=first_ts, last_ts=last_ts,
        rate_per_s=round(summary["sent"] / max(seconds, 1e-9), 1),
    )
    return summary


def _report(summary: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
    summary = {**summary, **(extra or {})}
    where = summary.get("path") or f"{summary.get('bootstrap')} topic {summary.get('topic')}"
    state = "interrupted" if summary["interrupted"] else "done"
    typer.echo(
        f"{state}: {summary['sent']} messages to {where}, delivered {summary['delivered']}, "
        f"failed {summary['failed']}, {summary['rate_per_s']:,.0f}/s; event time "
        f"{summary['first_ts']} .. {summary['last_ts']}"
    )
    typer.echo(json.dumps(summary, default=str))
    if summary["failed"] or summary.get("unconfirmed"):
        typer.echo("error: some messages were not confirmed by the broker", err=True)
        raise typer.Exit(1)
    if summary["interrupted"]:
        raise typer.Exit(130)


def _parse_start(value: str) -> datetime:
    if value == "now":
        return datetime.now(UTC).replace(microsecond=0)
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        _fail(f"--start must be 'now' or an ISO-8601 time like 2024-03-15T13:30:00Z: {value!r}")
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def flash_sale(
    seed: int = options.seed(),
    run_id: str | None = typer.Option(
        None, "--run-id",
        help="Tag in every id of this run (1-40 of A-Z a-z 0-9 _ .; default: a fresh one).",
    ),
    start: str = typer.Option(
        "now", "--start", help="Event time of the first click: 'now' or ISO-8601 UTC."
    ),
    events: int | None = typer.Option(
        None, "--events", min=1, help="Stop after this many valid events."
    ),
    duration: float | None = typer.Option(
        None, "--duration", min=1, help="Stop after this many seconds of event time."
    ),
    rate: float = options.setting("traffic.rate", "--rate", min=0.01),
    speed: float = options.speed(),
    sale_after: float = typer.Option(
        600.0, "--sale-after", min=0, help="Seconds of event time before the flash sale."
    ),
    sale_strength: float = options.sale_strength(),
    sale_ramp: float = typer.Option(
        180.0, "--sale-ramp", min=0, help="Seconds for the sale to reach full strength."
    ),
    sale_categories: int = typer.Option(
        2, "--sale-categories", min=1, help="Categories with products on sale."
    ),
    sale_products: int = typer.Option(60, "--sale-products", min=1,
                                      help="Products on sale."),
    products: int = options.products(),
    bot_share: float = typer.Option(
        0.0, "--bot-share", min=0, max=1, help="Share of sessions that are bots."
    ),
    malformed_share: float = typer.Option(
        0.0, "--malformed-share", min=0, max=1,
        help="Extra malformed messages per valid event (tests the dead-letter path).",
    ),
    intent_patterns: bool = typer.Option(
        False, "--intent-patterns",
        help="Plant the purchase-intent patterns (producers/intent_patterns.py).",
    ),
    out: Path | None = options.jsonl_out(),
    bootstrap: str | None = options.bootstrap_servers(),
    topic: str = options.topic(),
    wait: float = options.broker_wait(10.0),
    delivery_timeout: float = options.delivery_timeout(),
    quiet: bool = options.quiet(),
    config_file: Path | None = options.config_file(),
) -> None:
    """Synthetic fashion-shop traffic with a flash sale (Zipf popularity, funnels, bots)."""
    from producers.flash_sale import RUN_ID_PATTERN, FlashSaleConfig, generate, new_run_id

    config.setup_logging()
    if run_id is not None and not RUN_ID_PATTERN.fullmatch(run_id):
        _fail(f"--run-id must be 1-40 letters, digits, '_' or '.', got {run_id!r}")
    cfg = FlashSaleConfig(
        seed=seed, start=_parse_start(start), events=events, duration_s=duration, rate=rate,
        sale_offset_s=sale_after, sale_strength=sale_strength, sale_ramp_s=sale_ramp,
        sale_categories=sale_categories, sale_products=sale_products, n_products=products,
        bot_share=bot_share, malformed_share=malformed_share,
        intent_patterns=intent_patterns, run_id=run_id or new_run_id(),
    )
    sale = _plan_sale(cfg)
    sink = _open_sink(out, bootstrap, topic, wait, delivery_timeout)
    summary = pump(generate(cfg, sale), sink, speed=speed, total=events,
                   label="flash-sale", quiet=quiet)
    _report(summary, _sale_summary(cfg, sale))


def replay(
    dataset: Path = typer.Option(
        ..., "--dataset", help="Data set file to replay (ids are the data set's own)."
    ),
    fmt: str = options.dataset_format(),
    speed: float = options.speed(default=0.0),
    rebase_time: bool = typer.Option(
        False, "--rebase-time",
        help="Shift timestamps so the replay looks live (the first or last event is now).",
    ),
    limit: int | None = typer.Option(None, "--limit", min=1,
                                     help="Send only the first N events."),
    out: Path | None = options.jsonl_out(),
    bootstrap: str | None = options.bootstrap_servers(),
    topic: str = options.topic(),
    wait: float = options.broker_wait(10.0),
    delivery_timeout: float = options.delivery_timeout(),
    quiet: bool = options.quiet(),
    config_file: Path | None = options.config_file(),
) -> None:
    """Replay a real click data set (e.g. ../shared/data) in timestamp order."""
    from itertools import islice

    from producers.replay import FORMATS, DatasetError, ReplayStats, read_dataset

    config.setup_logging()
    options.one_of("--format", fmt, FORMATS)
    stats = ReplayStats()
    try:
        events = list(islice(read_dataset(dataset, fmt, stats), limit))
    except (DatasetError, OSError, UnicodeDecodeError) as exc:
        _fail(str(exc))
    log.info("read %s: %s", dataset, stats.as_dict())
    if rebase_time and events:
        events = rebase(events, speed)
    sink = _open_sink(out, bootstrap, topic, wait, delivery_timeout)
    summary = pump(events, sink, speed=speed, total=len(events), label=dataset.name,
                   quiet=quiet)
    _report(summary, {"dataset": stats.as_dict()})


def _plan_sale(cfg: FlashSaleConfig) -> SalePlan:
    """The sale of `cfg`, logged with the run's event ids."""
    from producers.flash_sale import plan

    sale = plan(cfg)
    log.info("run %s: event ids e%d-%s-<n>", cfg.run_id, cfg.seed, cfg.run_id)
    log.info("flash sale at %s on %d products in %s", sale.sale_start.isoformat(),
             len(sale.sale_products), ", ".join(sale.sale_categories))
    return sale


def _sale_summary(cfg: FlashSaleConfig, sale: SalePlan) -> dict[str, Any]:
    """What the flash-sale summary adds to the sink's."""
    return {
        "run_id": cfg.run_id,
        "sale_start": sale.sale_start.isoformat(),
        "sale_categories": list(sale.sale_categories),
        "sale_products": len(sale.sale_products),
        "bot_sessions": len(sale.bot_sessions),
    }


def register(app: typer.Typer) -> None:
    """Add `produce flash-sale` and `replay` to the CLI."""
    produce = options.group(
        app, "produce", "Send synthetic clickstream traffic to Kafka (or a JSONL file)."
    )
    produce.command("flash-sale")(flash_sale)
    app.command("replay")(replay)


def rebase(events: list[dict[str, Any]], speed: float) -> list[dict[str, Any]]:
    """Shift all timestamps by one offset: at speed 1 the first event becomes now, otherwise
    the last one does."""
    from recommender.events import format_ts, parse_ts

    now = datetime.now(UTC)
    anchor = parse_ts(events[0]["ts"] if speed == 1 else events[-1]["ts"])
    shift = now - anchor
    for event in events:
        event["ts"] = format_ts(parse_ts(event["ts"]) + shift)
    return events

