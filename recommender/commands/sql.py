"""`flashrec sql`: check the RisingWave SQL of sql/ and show what the embedded engine runs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from recommender import config, rwparser
from recommender.commands import options
from recommender.rwparser import Verdict

if TYPE_CHECKING:
    from recommender.sqlfiles import SqlObject

STATUS_STYLE = {"ok": "green", "unchecked": "yellow", "error": "red"}


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _rw_verdicts(
    objects: list[SqlObject], parser: Path
) -> tuple[list[Verdict | None], list[tuple[str, Verdict]], str]:
    """RisingWave's parser on each object as `flashrec deploy` renders it and on the index
    follower's cursor statements: (verdict per object, (statement, verdict) per cursor
    statement, summary line). No verdicts, and the reason, when the parser is absent."""
    from recommender import risingwave
    from recommender.serving.index_sync import cursor_statements

    if not rwparser.available(parser):
        return [None] * len(objects), [], f"RisingWave parser: {rwparser.missing(parser)}"
    try:
        per_object: list[Verdict | None] = []
        per_object += rwparser.parse_all(
            (risingwave.render(o, config.DEFAULT_BOOTSTRAP, config.DEFAULT_TOPIC, None)
             for o in objects), parser,
        )  # fmt: skip
        cursors = cursor_statements(rwparser.SUBSCRIPTION)
        per_cursor = list(zip(cursors, rwparser.parse_all(cursors, parser), strict=True))
    except rwparser.ParserError as exc:
        _fail(str(exc))
    verdicts = [v for v in per_object if v is not None] + [v for _, v in per_cursor]
    bad = sum(not v.ok for v in verdicts)
    summary = f"RisingWave parser ({parser}): {len(verdicts) - bad} ok, {bad} error"
    return per_object, per_cursor, summary


def _verdict_cell(verdict: Verdict | None) -> str:
    if verdict is None:
        return "[yellow]skipped[/]"
    return "[green]ok[/]" if verdict.ok else "[red]error[/]"


def _maintainer_rows(objects: list[SqlObject]) -> tuple[list[tuple[str, ...]], int]:
    """(view, its .toml, declared maintainer, cell, detail) per view, and how many views'
    SQL does not have the shape of their declared maintainer."""
    from recommender import sqlfiles
    from recommender.engine import maintainers

    views = sqlfiles.views(objects)
    problems = maintainers.problems(views)
    rows, bad = [], 0
    for view in views:
        meta = view.meta
        declared = meta.maintainer if meta is not None else None
        if declared is None:
            rows.append((view.name, meta.file if meta else "", "-", "", "recomputed by its SQL"))
            continue
        problem = problems.get(view.name)
        bad += problem is not None
        cell = "[red]mismatch[/]" if problem else "[green]matches[/]"
        rows.append((view.name, meta.file if meta else "", declared, cell, problem or ""))
    return rows, bad


SQL_DIR_OPTION = typer.Option(
    None, "--sql-dir", envvar=config.ENV_SQL_DIR,
    help="Folder of the .sql files (default: the project's sql/).",
)  # fmt: skip

PARSER_OPTION = typer.Option(
    None, "--parser", envvar=rwparser.ENV_PARSER,
    help="RisingWave v3.0.3's SQL parser as a command (default: "
    "../shared/tools/risingwave-sqlparser/rw-sqlparser beside the project).",
)  # fmt: skip


def check(sql_dir: Path | None = SQL_DIR_OPTION, parser: Path | None = PARSER_OPTION) -> None:
    """Parse every statement with sqlglot (RisingWave dialect) and with RisingWave's own
    parser, and list each object; the index follower's cursor statements follow.

    status (sqlglot): ok: parsed; unchecked: only seen as a generic command; error: does
    not parse. risingwave: RisingWave v3.0.3's parser accepts it (ok) or not (error), or
    skipped when the parser is not found. Then each view's incremental maintainer (named
    in the .toml beside its file) and whether the view's SQL has the shape it
    reproduces. Exit code 1 when a statement has an error or a view's SQL does not match
    its maintainer; 2 when a .toml is not valid.
    """
    from rich.console import Console
    from rich.table import Table

    from recommender import sqlfiles

    folder = sql_dir or config.SQL_DIR
    if not Path(folder).is_dir():
        _fail(f"no SQL folder at {folder}")
    try:
        objects = sqlfiles.load(folder)
    except ValueError as exc:  # a catalog entry (.toml) that is not valid
        _fail(str(exc))
    per_object, per_cursor, rw_summary = _rw_verdicts(objects, rwparser.parser_path(parser))
    table = Table(title=f"sql/ objects ({folder})")
    for column in ("file", "kind", "name", "status", "risingwave", "detail"):
        table.add_column(column)
    for o, verdict in zip(objects, per_object, strict=True):
        style = STATUS_STYLE.get(o.status, "")
        detail = verdict.summary if verdict is not None and not verdict.ok else o.detail
        table.add_row(o.file, o.kind, o.name, f"[{style}]{o.status}[/]",
                      _verdict_cell(verdict), detail)  # fmt: skip
    for sql, verdict in per_cursor:  # name: the statement, its cursor's name shortened
        shown = re.sub(r"\bflashrec_\w+_\d+\b", "<cursor>", sql)
        detail = "" if verdict.ok else verdict.summary
        table.add_row("index_sync.py", "cursor", shown, "", _verdict_cell(verdict), detail)
    console = Console(width=160)
    console.print(table)
    rows, mismatches = _maintainer_rows(objects)
    kept = Table(title="incremental maintainers (catalog: the .toml beside each view)")
    for column in ("view", "catalog", "maintainer", "shape", "detail"):
        kept.add_column(column)
    for row in rows:
        kept.add_row(*row)
    console.print(kept)
    counts = {s: sum(o.status == s for o in objects) for s in STATUS_STYLE}
    typer.echo(", ".join(f"{n} {s}" for s, n in counts.items()))
    typer.echo(rw_summary)
    declared = sum(r[2] != "-" for r in rows)
    typer.echo(f"maintainers: {declared - mismatches} match, {mismatches} mismatch")
    rw_errors = [v for v in per_object if v is not None and not v.ok]
    rw_errors += [v for _, v in per_cursor if not v.ok]
    if counts["error"] or rw_errors or mismatches:
        raise typer.Exit(1)


def show(
    view: str = typer.Argument(..., help="Name of a materialized view of sql/."),
    sql_dir: Path | None = SQL_DIR_OPTION,
) -> None:
    """Print the DuckDB SQL the embedded engine runs for VIEW (NOW() = the engine clock)."""
    from recommender import sqlfiles

    views = {v.name: v for v in sqlfiles.views(sqlfiles.load(sql_dir))}
    if view not in views:
        _fail(f"no view {view!r}; views: {', '.join(views)}")
    query = sqlfiles.view_query(views[view])
    typer.echo(f"-- {views[view].file}; look-back {sqlfiles.horizon(query)}")
    typer.echo(sqlfiles.to_duckdb(query).replace(sqlfiles.NOW_MARKER, "$now"))


def register(app: typer.Typer) -> None:
    """Add the `sql` command group to the CLI."""
    group = options.group(app, "sql", "The RisingWave SQL of sql/ (views, source, subscriptions).")
    group.command("check")(check)
    group.command("show")(show)
