"""`flashrec intent`: train the purchase-intent model and score live sessions with it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from recommender import config
from recommender.commands import options

if TYPE_CHECKING:
    from recommender.intent.dataset import Event, Split
    from recommender.intent.train import RunResult

log = logging.getLogger("flashrec.intent")

ALGORITHMS = ("logistic_regression", "random_forest", "gradient_boosting")

intent_app = typer.Typer(
    help="Purchase intent: train a model on past sessions, score live sessions into the "
    "session_intent table.",
    no_args_is_help=True,
)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _model_dir(value: Path | None) -> Path:
    return value if value is not None else config.data_dir() / "intent_models"


ModelDirOption = options.intent_model_dir("--model-dir")
ConfigOption = options.config_file()


@intent_app.command("train")
def train(
    data: str = options.setting(
        "intent.data", "--data", default=...,
        help="Events: a JSON-lines file, the RetailRocket events CSV, or 'generated[:...]' "
        "(docs/intent.md).",
    ),
    model_dir: Path | None = ModelDirOption,
    step_minutes: float = typer.Option(
        10.0, "--step-minutes", min=0.0,
        help="Minutes of event time between feature snapshots (0: after every event).",
    ),
    horizon_hours: float = typer.Option(
        0.0, "--horizon-hours", min=0.0,
        help="Label: 0 = the session ends in a purchase; N = the customer buys within N hours.",
    ),
    test_share: float = typer.Option(
        0.25, "--test-share", min=0.05, max=0.8,
        help="Share of the time span (the latest part) held out as the test split.",
    ),
    grid: str = typer.Option(
        "full", "--grid", help="Hyper-parameter grids: 'full' or 'small' (quick runs)."
    ),
    folds: int = typer.Option(4, "--folds", min=2, max=10, help="Time-ordered CV folds."),
    algorithms: str = typer.Option(
        ",".join(ALGORITHMS), "--algorithms",
        help="Comma-separated algorithms to search (each with its own grid).",
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed of the models."),
    log_level: str = options.log_level(),
    config_file: Path | None = ConfigOption,
) -> None:
    """Build features from the views' SQL, search three algorithms, report, maybe promote."""
    from recommender.intent.dataset import DataError, load_events
    from recommender.intent.train import train as run_training
    from recommender.intent.training_report import write_report

    config.setup_logging(log_level)
    options.one_of("--grid", grid, ("full", "small"))
    folder = _model_dir(model_dir)
    chosen = _algorithms(algorithms)
    try:
        events = load_events(data)
    except DataError as exc:
        _fail(str(exc))
    if len(events) < 10:
        _fail(f"{data}: only {len(events)} valid events, too few to train on")
    log.info("%d events from %s", len(events), data)
    settings = {"data": data, "step_minutes": step_minutes, "horizon_hours": horizon_hours,
                "test_share": test_share, "grid": grid, "folds": folds, "seed": seed,
                "algorithms": chosen}
    split = _split(events, test_share, step_minutes, horizon_hours)
    try:
        result = run_training(split, folder, grid=grid, folds=folds, seed=seed,
                              settings=settings, only=chosen)
    except ValueError as exc:
        _fail(str(exc))
    _print_results(result, write_report(result, split, settings))


def _algorithms(value: str) -> list[str]:
    """The algorithms named in --algorithms (comma-separated)."""
    chosen = [a.strip() for a in value.split(",") if a.strip()]
    if not chosen or set(chosen) - set(ALGORITHMS):
        _fail(f"--algorithms takes names from {', '.join(ALGORITHMS)}, not {value!r}")
    return chosen


def _split(events: list[Event], test_share: float, step_minutes: float, horizon_hours: float
           ) -> Split:  # fmt: skip
    """The time-ordered train/test split of `events`, with a progress bar per part."""
    import time
    from datetime import timedelta

    from recommender.intent.dataset import time_split
    from recommender.progress import Progress

    bar: dict[str, Progress] = {}  # the part being built and its progress

    def progress(part: str, done: int, total: int) -> None:
        if part not in bar:
            for old in bar.values():
                old.close()
            bar.clear()
            bar[part] = Progress(f"intent train: features ({part})", total=total,
                                 unit="snapshots")  # fmt: skip
        bar[part].set(done)

    started = time.perf_counter()
    step = timedelta(minutes=step_minutes) if step_minutes > 0 else None
    try:
        split = time_split(events, test_share, step, timedelta(hours=horizon_hours),
                           progress=progress)  # fmt: skip
    finally:
        for old in bar.values():
            old.close()
    log.info("features in %.1f s: train %d rows (%d purchase), test %d rows (%d purchase), "
             "cutoff %s", time.perf_counter() - started, len(split.train),
             int(split.train.y.sum()), len(split.test), int(split.test.y.sum()), split.cutoff)
    return split


def _print_results(result: RunResult, report: Path) -> None:
    """One line per algorithm, the baseline, whether the model was promoted, the report."""
    for r in result.results:
        typer.echo(f"{r.name:20s} CV PR-AUC {r.cv_pr_auc:.4f}  test PR-AUC "
                   f"{r.test['pr_auc']:.4f}  recall@P{0.5} {r.test['recall_at_precision']:.4f}"
                   f"  ({r.seconds:.1f} s)")
    typer.echo(f"baseline (random) PR-AUC {result.best.test['baseline_pr_auc']:.4f}")
    typer.echo(f"{result.version}: {'promoted' if result.promoted else 'not promoted'} "
               f"({result.reason})")
    typer.echo(f"report: {report}")


@intent_app.command("score")
def score(
    pg_dsn: str = options.pg_dsn(
        required=True, help="PostgreSQL (or RisingWave) of the views; session_intent goes there."
    ),
    model_dir: Path | None = ModelDirOption,
    clock: str = options.clock(),
    once: bool = typer.Option(
        False, "--once", help="Score the open sessions once and exit (else follow changes)."
    ),
    poll_seconds: float = typer.Option(
        1.0, "--poll-seconds", min=0.05, help="Longest wait for a change of session_features."
    ),
    log_level: str = options.log_level(),
    config_file: Path | None = ConfigOption,
) -> None:
    """Score live sessions as their features change, into the session_intent table."""
    import psycopg

    from recommender.intent.score import IntentScorer

    config.setup_logging(log_level)
    options.one_of("--clock", clock, ("wall", "event"))
    try:
        scorer = IntentScorer(pg_dsn, _model_dir(model_dir), clock=clock)
    except FileNotFoundError as exc:
        _fail(str(exc))
    except psycopg.Error as exc:
        _fail(f"cannot use PostgreSQL at {pg_dsn}: {exc}")
    try:
        if once:
            n = scorer.score_once()
            typer.echo(f"scored {n} session(s) with model {scorer.handle.version}")
            return
        from recommender.changefeed import PgSubscription

        feed = PgSubscription(pg_dsn, "session_features")
        log.info("following session_features changes with model %s", scorer.handle.version)
        try:
            scorer.follow(feed, poll_seconds)
        except KeyboardInterrupt:
            log.info("stopped after %d scored rows", scorer.scored)
        finally:
            feed.close()
    except psycopg.Error as exc:
        _fail(f"PostgreSQL error: {exc}")
    finally:
        scorer.close()


@intent_app.command("show")
def show(
    session_id: str = typer.Argument(..., help="The session id."),
    pg_dsn: str = options.pg_dsn(required=True, help="PostgreSQL holding session_intent."),
    config_file: Path | None = ConfigOption,
) -> None:
    """Print a session's purchase probability (its session_intent row) as JSON."""
    import json

    import psycopg

    from recommender.intent.score import session_probability

    try:
        row = session_probability(session_id, dsn=pg_dsn)
    except psycopg.Error as exc:
        _fail(f"cannot read session_intent at {pg_dsn}: {exc}")
    if row is None:
        _fail(f"session {session_id!r} has no score (unknown, a bot, or not scored yet)")
    typer.echo(json.dumps(row))


def register(app: typer.Typer) -> None:
    """Add the `intent` group to the CLI."""
    app.add_typer(intent_app, name="intent")
