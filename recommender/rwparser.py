"""RisingWave's own SQL parser on the statements flashrec sends to RisingWave.

`rw-sqlparser` is RisingWave v3.0.3's src/sqlparser built as a command (README beside it in
../shared/tools/risingwave-sqlparser/): SQL on stdin, `OK: <statement>` per statement, or
`ERR: <message>` and exit status 1 at the first statement it rejects. It checks syntax only:
names, types and the streaming planner's acceptance need a RisingWave server.

The statements: everything `flashrec deploy` sends (catalog lookups, CREATE with the real
UDF link, DROP) and the subscription cursor statements of the index follower.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from recommender.config import PROJECT_ROOT

ENV_PARSER = "FLASHREC_RW_PARSER"
DEFAULT_PARSER = PROJECT_ROOT.parent / "shared" / "tools" / "risingwave-sqlparser" / "rw-sqlparser"
# the subscription the index follower reads (created by sql/070_vmis_history_sub.sql)
SUBSCRIPTION = "vmis_history_sub"


class ParserError(Exception):
    """The parser could not be run (missing, not executable, crashed, timed out)."""


@dataclass(frozen=True)
class Verdict:
    """The parser's answer on one statement."""

    sql: str
    ok: bool
    detail: str  # RisingWave's canonical form of the statement, or its error message

    @property
    def summary(self) -> str:
        """The first line of the detail (an error's position pointer follows it)."""
        return self.detail.splitlines()[0] if self.detail else ""


def parser_path(path: str | Path | None = None) -> Path:
    """`path`, else $FLASHREC_RW_PARSER, else ../shared/tools/risingwave-sqlparser/rw-sqlparser
    beside the project."""
    return Path(path or os.environ.get(ENV_PARSER) or DEFAULT_PARSER)


def available(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def missing(path: Path) -> str:
    """Why nothing was parsed."""
    return f"parser not found at {path}, skipped"


def parse(sql: str, path: Path, timeout_s: float = 30.0) -> Verdict:
    """The verdict on one statement (one run per statement: the parser stops at the first
    error, so a run on several would leave the rest unjudged)."""
    env = {k: v for k, v in os.environ.items() if k != "DEBUG_AST"}  # DEBUG_AST adds AST dumps
    try:
        done = subprocess.run(
            [str(path)],
            input=sql,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=env,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ParserError(f"cannot run the RisingWave parser {path}: {exc}") from exc
    out = done.stdout.strip()
    if done.returncode == 0 and out.startswith("OK: "):
        return Verdict(sql, True, " ".join(line.removeprefix("OK: ") for line in out.splitlines()))
    if done.returncode == 1 and out.startswith("ERR: "):
        return Verdict(sql, False, out.removeprefix("ERR: "))
    if done.returncode == 0 and not out:
        return Verdict(sql, False, "no statement")
    raise ParserError(
        f"the RisingWave parser {path} answered exit status {done.returncode}: "
        f"{(out or done.stderr.strip())[:500]}"
    )


def parse_all(statements: Iterable[str], path: Path) -> list[Verdict]:
    return [parse(sql, path) for sql in statements]


def sent_statements(
    folder: Path,
    udf_link: str = "http://udf:8815",
    bootstrap: str | None = None,
    topic: str | None = None,
) -> list[tuple[str, str]]:
    """(what, statement) for every statement flashrec sends to RisingWave: `flashrec deploy`'s
    plan of `folder` as deploy makes it (UDFs with `udf_link`), then the follower's cursor
    statements."""
    from recommender import config, risingwave
    from recommender.serving.index_sync import cursor_statements

    steps = risingwave.plan_folder(
        folder, bootstrap or config.DEFAULT_BOOTSTRAP, topic or config.DEFAULT_TOPIC, udf_link
    )
    out = [
        (f"{step.obj.file}: {step.obj.kind} {step.obj.name}", sql)
        for step, sql in risingwave.sent_statements(steps)
    ]
    out += [("index follower: subscription cursor", sql) for sql in cursor_statements(SUBSCRIPTION)]
    return out
