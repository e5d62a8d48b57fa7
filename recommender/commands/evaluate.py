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


def register(app: typer.Typer) -> None:
    """Add `evaluate` to the CLI."""

    @app.command("evaluate")
    def evaluate(
        train: Path = options.setting("evaluate.train", "--train", default=...),
        test: Path = options.setting(
            "evaluate.test", "--test", default=...,
            help="Test clicks, same format; every prefix of every session is one evaluation.",
        ),
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
        --cutoff on --test."""
        config.setup_logging()
        from rich.progress import Progress

        from recommender.evaluation import EvalParams
        from recommender.evaluation import evaluate as run_evaluation
        from recommender.sessions_io import SessionFileError, read_sessions
        from udfs.params import VmisParams
        from udfs.vmisknn import VMISIndex

        try:
            train_data = read_sessions(train)
            test_data = read_sessions(test)
        except SessionFileError as exc:
            _fail(str(exc))
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
        if as_json:
            typer.echo(json.dumps(result.as_json()))
        else:
            _print_table(result, train, test, build_s, len(train_data), index)
