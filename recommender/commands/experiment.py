"""`flashrec experiment flash-sale` and `flashrec experiment dataset`: live versus nightly
recommendations, replayed offline (docs/flash-sale.md)."""

from __future__ import annotations

import json
import logging
import shlex
import sys
from datetime import date
from pathlib import Path
from typing import Any

import typer

from recommender import config
from recommender.commands import options

log = logging.getLogger("flashrec.experiment")


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _params(refresh_s: float, nightly_window_h: float, weights: str | None = None) -> Any:
    """The replay's parameters: VMIS-kNN's from its settings (config.vmis_params()), the
    blend's weights from --blend-weights over the defaults."""
    from recommender.experiment.blended import BlendParams
    from recommender.experiment.nightly_vs_live import Params

    vmis = config.vmis_params()
    blend = BlendParams(weights=options.parse_blend_weights(weights))
    return Params(m=vmis.m, k=vmis.k, max_items=vmis.max_items_in_session,
                  idf_weighting=vmis.idf_weighting, refresh_s=refresh_s,
                  nightly_window_h=nightly_window_h, blend=blend)  # fmt: skip


def _run(load, params, out: Path, replicates: int, quiet: bool, as_json: bool,
         tune: bool = False) -> None:  # fmt: skip
    from recommender.experiment import runner
    from recommender.experiment.sqlviews import clock
    from recommender.progress import Progress

    command = "flashrec " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    shown = not (quiet or as_json)
    stage: dict[str, Any] = {}
    if shown:  # its lines also when the rest of the log is quieter (the default: warnings)
        logging.getLogger("flashrec.progress").setLevel(logging.INFO)
        stage["bar"] = Progress("experiment: generating events", unit="events")

    def loaded(data) -> None:
        stage["cut"] = data.cut_ms
        if shown:
            stage["bar"].close()
            minutes = max(1, (data.end_ms - data.cut_ms) // 60_000)
            stage["bar"] = Progress("experiment: replaying the day", total=minutes,
                                    unit="minutes of event time")  # fmt: skip

    def progress(ts_ms: int) -> None:
        if shown and "cut" in stage:
            bar = stage["bar"]
            bar.what = f"experiment: replaying the day, at {clock(ts_ms):%Y-%m-%d %H:%M}"
            bar.set(min(bar.total, max(0, (ts_ms - stage["cut"]) // 60_000)))

    try:
        summary = runner.run(load, params, out, command, replicates, progress, loaded, tune)
    except (ValueError, RuntimeError, OSError) as exc:
        _fail(str(exc))
    finally:
        if shown:
            stage["bar"].close()
    if as_json:
        typer.echo(json.dumps({"stats": summary["stats"], "run": summary["run"]}, indent=2))
        return
    s = summary["stats"]

    def v(key: str, pct: bool = False) -> str:
        entry = s[key]
        if entry["value"] is None:
            return "n/a"
        x = entry["value"] * (100 if pct else 1)
        ci = entry["ci"]
        body = f"{x:.1f} %" if pct else f"{x:.4f}"
        if ci:
            lo, hi = (c * (100 if pct else 1) for c in ci)
            body += f" [{lo:.1f}, {hi:.1f}]" if pct else f" [{lo:.4f}, {hi:.4f}]"
        return body

    typer.echo(f"{summary['replay']}: {summary['run']['evaluations']:,} evaluations in "
               f"{summary['seconds']:.0f} s")
    from recommender.experiment.nightly_vs_live import RECOMMENDERS

    for name in RECOMMENDERS:
        typer.echo(f"  {name:16} HitRate@20 normal {v(f'{name}|hit_rate|normal')}  "
                   f"sale {v(f'{name}|hit_rate|sale')}")
    typer.echo(f"  VMIS nightly drop in the sale window (HitRate@20): "
               f"{v('vmis|hit_rate|nightly_drop', True)}; recovered by live: "
               f"{v('vmis|hit_rate|recovered_share', True)}")
    if tune:
        best = summary["blend_tuning"][0]
        typer.echo(f"  best blend weights on this (validation) replay: {best['weights']} "
                   f"(MRR@20 {best['mrr']:.4f}, HitRate@20 {best['hit_rate']:.4f})")
    typer.echo(f"report: {out / 'report.md'}  summary: {out / 'summary.json'}")


# options of both experiments
OUT = options.setting("experiment.out", "--out")
REFRESH_S = options.setting("experiment.refresh_s", "--refresh-s", min=0.001)
NIGHTLY_WINDOW_H = typer.Option(
    24.0, "--nightly-window-h", min=0.1,
    help="Look-back in hours of the nightly co_view_pairs batch job.",
)
REPLICATES = typer.Option(
    1000, "--bootstrap", min=10, help="Bootstrap replicates for the 95% intervals."
)
BLEND_WEIGHTS = options.blend_weights()
TUNE = typer.Option(
    False, "--tune-blend", help="Also score the blend's weight grid (validation replays); "
    "all scores in summary.json.",
)
QUIET = options.quiet()
AS_JSON = typer.Option(False, "--json", help="Print the statistics as JSON.")
CONFIG_FILE = options.config_file()


def flash_sale(
    seed: int = options.seed(),
    out: Path = OUT,
    rate: float = options.setting("experiment.rate", "--rate", min=0.05),
    history_days: int = typer.Option(
        1, "--history-days", min=1, max=6,
        help="Days of traffic before the replayed day (what the nightly job sees).",
    ),
    hours: float = typer.Option(
        24.0, "--hours", min=0.5, max=24.0,
        help="Replayed hours of the day from midnight (smaller = faster).",
    ),
    products: int = options.products(),
    sale_hour: float = typer.Option(
        14.0, "--sale-hour", min=0.0, max=23.9,
        help="Sale start, hours after midnight of the replayed day (UTC).",
    ),
    sale_strength: float = options.sale_strength(),
    sale_focus: float = typer.Option(
        0.8, "--sale-focus", min=0.0, max=1.0,
        help="Share of a sale session's views that are sale products.",
    ),
    no_sale: bool = typer.Option(
        False, "--no-sale", help="The same day without a flash sale (control run)."
    ),
    day: str = typer.Option("2024-03-15", "--day", help="Replayed day (UTC), YYYY-MM-DD."),
    refresh_s: float = REFRESH_S,
    nightly_window_h: float = NIGHTLY_WINDOW_H,
    blend_weights: str | None = BLEND_WEIGHTS,
    tune_blend: bool = TUNE,
    replicates: int = REPLICATES,
    quiet: bool = QUIET,
    as_json: bool = AS_JSON,
    config_file: Path | None = CONFIG_FILE,
) -> None:
    """Replay a seeded flash-sale day and compare nightly and live recommenders."""
    config.setup_logging("WARNING" if not quiet else "ERROR")
    from recommender.experiment.scenario import Scenario, flash_sale_replay

    try:
        when = date.fromisoformat(day)
    except ValueError:
        _fail(f"--day must be YYYY-MM-DD, got {day!r}")
    if not no_sale and sale_hour >= hours:
        _fail(f"--sale-hour {sale_hour:g} is not inside the replayed --hours {hours:g}")
    scenario = Scenario(
        seed=seed, day=when, history_days=history_days, hours=hours, rate=rate,
        sale=not no_sale, sale_hour=sale_hour, sale_strength=sale_strength,
        sale_focus=sale_focus, n_products=products,
    )  # fmt: skip
    _run(lambda: flash_sale_replay(scenario), _params(refresh_s, nightly_window_h,
         blend_weights), out, replicates, quiet, as_json, tune_blend)


def dataset(
    train: Path = typer.Option(..., "--train", help="History (what the nightly job sees)."),
    test: Path = typer.Option(..., "--test", help="The replayed period that follows it."),
    fmt: str = options.dataset_format("yoochoose"),
    out: Path = OUT,
    refresh_s: float = REFRESH_S,
    nightly_window_h: float = NIGHTLY_WINDOW_H,
    blend_weights: str | None = BLEND_WEIGHTS,
    tune_blend: bool = TUNE,
    replicates: int = REPLICATES,
    quiet: bool = QUIET,
    as_json: bool = AS_JSON,
    config_file: Path | None = CONFIG_FILE,
) -> None:
    """Replay a real data set's test period after its history: nightly versus live.

    The nightly models are built from --train; the two halves of the test period take the
    place of normal hours and the sale window."""
    config.setup_logging("WARNING" if not quiet else "ERROR")
    from producers.replay import DatasetError
    from recommender.experiment.scenario import dataset_replay

    def load():
        try:
            return dataset_replay(train, test, fmt)
        except DatasetError as exc:
            raise ValueError(str(exc)) from None

    _run(load, _params(refresh_s, nightly_window_h, blend_weights), out, replicates, quiet,
         as_json, tune_blend)


def register(app: typer.Typer) -> None:
    """Add the `experiment` group to the CLI."""
    group = options.group(
        app, "experiment",
        "Offline experiments: live versus nightly recommendations (docs/flash-sale.md).",
    )  # fmt: skip
    group.command("flash-sale")(flash_sale)
    group.command("dataset")(dataset)
