"""`flashrec evaluate`: offline next-item metrics of VMIS-kNN (Serenade / session-rec protocol)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import typer

from recommender import config
from recommender.commands import options

log = logging.getLogger("flashrec.evaluate")


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _print_table(result, train: Path, test: Path, build_s: float, n_train: int, n_index) -> None:
    from rich.console import Console
    from rich.table import Table

    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    c = result.cutoff
    table = Table(title=f"VMIS-kNN on {test.name} (trained on {train.name})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row(f"MRR@{c}", fmt(result.mrr))
    table.add_row(f"HitRate@{c}", fmt(result.hit_rate))
    table.add_row(f"Precision@{c}", fmt(result.precision))
    table.add_row("evaluations", str(result.evaluations))
    table.add_row("test sessions", str(result.info["test_sessions"]))
    table.add_row("index", f"{n_index.n_sessions} sessions, {n_index.n_items} items")
    table.add_row("build", f"{n_train} clicks in {build_s:.3f} s")
    table.add_row("evaluation time", f"{result.info['seconds']:.2f} s")
    p = result.params
    table.add_row(
        "params",
        f"m={p['m']} k={p['k']} max_items={p['max_items_in_session']} "
        f"how_many={p['how_many']} idf_weighting={p['idf_weighting']}",
    )
    Console().print(table)


def _load(train: Path | None, test: Path | None, data: Path | None, fmt: str,
          tune_train: Path | None, tune_valid: Path | None) -> tuple:  # fmt: skip
    """(train, test, validation split or None) from the files given; exit 2 on a bad one."""
    from producers.replay import DatasetError
    from recommender.sessions_io import (
        SessionFileError,
        from_dataset,
        read_sessions,
        split_by_time,
    )

    tune_data = None
    try:
        if data is not None:
            train_data, test_data = split_by_time(from_dataset(data, fmt))
            tune_data = split_by_time(train_data)
        elif train is None or test is None:
            _fail("give --train and --test, or --data")
        else:
            train_data, test_data = read_sessions(train), read_sessions(test)
        if tune_train is not None and tune_valid is not None:
            tune_data = (read_sessions(tune_train), read_sessions(tune_valid))
    except (SessionFileError, DatasetError) as exc:
        _fail(str(exc))
    return train_data, test_data, tune_data


def _blend(train, test, tune_data, vmis, cutoff: int, weights_text: str | None) -> dict:
    """The blend and its sources on the test set, weights given or chosen on validation."""
    from recommender import blend_eval
    from recommender.blend import BlendWeights

    min_sessions, chosen_on = 3, "given"
    if weights_text is not None:
        try:
            weights = BlendWeights.parse(weights_text)
        except ValueError as exc:
            _fail(str(exc))
    elif tune_data is not None:
        weights, min_sessions, best = blend_eval.tune(*tune_data, vmis, cutoff)
        chosen_on = f"validation (MRR@{cutoff} {best.mrr:.4f})"
        log.info("blend weights chosen on validation: %s, co-occurrence in >= %d sessions",
                 weights.text(), min_sessions)  # fmt: skip
    else:
        weights, chosen_on = BlendWeights(), "defaults (no validation split given)"
    sources = blend_eval.Sources.build(train, vmis, cutoff, min_sessions)
    stats = blend_eval.summary(blend_eval.run(sources, test, weights))
    return {"weights": weights.text(), "co_occurrence_min_sessions": min_sessions,
            "chosen_on": chosen_on, "models": stats}  # fmt: skip


def _print_blend(blended: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    def fmt(entry: dict) -> str:
        if entry["value"] is None:
            return "n/a"
        ci = entry["ci"]
        return f"{entry['value']:.4f}" + (f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "")

    table = Table(title=f"blend ({blended['weights']}; chosen on {blended['chosen_on']})")
    for name in ("model", "MRR@20 [95% CI]", "HitRate@20 [95% CI]"):
        table.add_column(name, justify="left" if name == "model" else "right")
    for model, stats in blended["models"].items():
        table.add_row(model, fmt(stats["mrr"]), fmt(stats["hit_rate"]))
    Console().print(table)


DATA = typer.Option(
    None, "--data", help="A raw data set (--format) split 80/20 by session start, in place of "
    "--train/--test.",
)
WITH_BLEND = typer.Option(
    False, "--blend", help="Also score the blend and each of its sources, with 95% intervals."
)
BLEND_WEIGHTS = typer.Option(
    None, "--blend-weights", help="The blend's weights, name=value,... (default: chosen on "
    "validation).",
)
TUNE_TRAIN = typer.Option(
    None, "--tune-train", help="Training clicks of the validation split (--blend)."
)
TUNE_VALID = typer.Option(
    None, "--tune-valid", help="Validation clicks the blend's weights are chosen on."
)


def register(app: typer.Typer) -> None:
    """Add `evaluate` to the CLI."""

    @app.command("evaluate")
    def evaluate(
        train: Path | None = options.setting("evaluate.train", "--train", default=None),
        test: Path | None = options.setting(
            "evaluate.test", "--test", default=None,
            help="Test clicks, same format; every prefix of every session is one evaluation.",
        ),
        data: Path | None = DATA,
        fmt: str = options.dataset_format("yoochoose"),
        with_blend: bool = WITH_BLEND,
        blend_weights: str | None = BLEND_WEIGHTS,
        tune_train: Path | None = TUNE_TRAIN,
        tune_valid: Path | None = TUNE_VALID,
        m: int = options.vmis_m(),
        k: int = options.vmis_k(),
        max_items: int = options.vmis_max_items(),
        how_many: int = options.vmis_how_many(),
        cutoff: int = options.setting("evaluate.cutoff", "--cutoff", min=1),
        idf_weighting: float = options.vmis_idf_weighting(),
        as_json: bool = typer.Option(
            False, "--json", help="Print one JSON object instead of a table."
        ),
        quiet: bool = options.quiet(),
        config_file: Path | None = options.config_file(),
    ) -> None:
        """Build the VMIS-kNN index from --train and report MRR, HitRate and Precision at
        --cutoff on --test; with --blend, also the blended recommender beside its sources."""
        config.setup_logging()
        from rich.progress import Progress

        from recommender.evaluation import EvalParams
        from recommender.evaluation import evaluate as run_evaluation
        from udfs.params import VmisParams
        from udfs.vmisknn import VMISIndex

        if data is not None:
            train = test = data
        train_data, test_data, tune_data = _load(train, test, data, fmt, tune_train, tune_valid)
        if len(train_data) == 0:
            _fail(f"{train}: no clicks after the header line")
        vmis = VmisParams(m=m, k=k, how_many=how_many, max_items_in_session=max_items,
                          idf_weighting=idf_weighting)
        params = EvalParams.of(vmis, cutoff)
        started = time.perf_counter()
        index = VMISIndex.build(
            train_data.session_ids, train_data.item_ids, train_data.timestamps, m=m
        )
        build_s = time.perf_counter() - started
        log.info(
            "index built from %s: %d clicks, %d sessions, %d items in %.3f s",
            train, len(train_data), index.n_sessions, index.n_items, build_s,
        )  # fmt: skip
        with Progress(disable=quiet or as_json, transient=True) as bar:
            task = bar.add_task("evaluating", total=None)
            result = run_evaluation(
                index, test_data, params,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )  # fmt: skip
        if result.evaluations == 0:
            log.warning(
                "%s has no session with two or more clicks: nothing to evaluate", test
            )
        else:
            log.info("%d evaluations in %.2f s", result.evaluations, result.info["seconds"])
        blended = None
        if with_blend:
            blended = _blend(train_data, test_data, tune_data, vmis, cutoff, blend_weights)
        if as_json:
            typer.echo(json.dumps({**result.as_json(), **({"blend": blended} if blended else {})}))
        else:
            _print_table(result, train, test, build_s, len(train_data), index)
            if blended:
                _print_blend(blended)
