"""RisingWave v3.0.3's own parser (../shared/tools/risingwave-sqlparser/rw-sqlparser) on every
statement flashrec sends to RisingWave; `flashrec sql check` reports its verdicts; `flashrec
deploy --dry-run` prints what a real run sends."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recommender import config, risingwave, rwparser, sqlfiles
from recommender.cli import app

PARSER = rwparser.parser_path()
needs_parser = pytest.mark.skipif(
    not rwparser.available(PARSER),
    reason=f"RisingWave's SQL parser: {rwparser.missing(PARSER)} (it comes with ../shared "
    "beside the project; FLASHREC_RW_PARSER names another path)",
)
UDF_LINK = "http://udf:8815"


@needs_parser
def test_every_statement_flashrec_sends_parses_with_risingwaves_parser() -> None:
    sent = rwparser.sent_statements(config.SQL_DIR, udf_link=UDF_LINK)
    verdicts = rwparser.parse_all([sql for _, sql in sent], PARSER)
    pairs = zip(sent, verdicts, strict=True)
    rejected = [(what, sql, v.detail) for (what, sql), v in pairs if not v.ok]
    assert not rejected
    # every object of sql/ is created, the UDFs with the real link
    objects = sqlfiles.load(config.SQL_DIR)
    created = [v.detail for v in verdicts if v.detail.startswith("CREATE ")]
    assert len(created) == len(objects)
    functions = [c for c in created if c.startswith("CREATE FUNCTION")]
    assert len(functions) == 2 and all(f"USING LINK '{UDF_LINK}'" in f for f in functions)
    # the follower's cursor starts as meant: a snapshot, an rw_timestamp, now
    declares = [v.detail for v in verdicts if v.detail.startswith("DECLARE ")]
    assert [d.rsplit(" ", 1)[-1].split("(")[0] for d in declares] == [
        "Full",
        "TimestampMsNum",
        "ProcessTime",
    ]
    assert any(v.detail.startswith("FETCH 1000 FROM") for v in verdicts)
    assert any(v.detail.startswith("CLOSE ") for v in verdicts)


@needs_parser
def test_the_parser_rejects_what_risingwave_rejects() -> None:
    verdict = rwparser.parse("CREATE MATERIALIZED VIEW w AS SELECT FROM (", PARSER)
    assert not verdict.ok and verdict.summary.startswith("sql parser error")
    # one run per statement: a bad statement does not hide the verdict on a good one
    good, bad = rwparser.parse_all(["SELECT 1", "SELECT ("], PARSER)
    assert good.ok and not bad.ok


@needs_parser
def test_sql_check_reports_the_parsers_verdict_per_statement(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["sql", "check"])
    assert result.exit_code == 0, result.output
    objects = sqlfiles.load(config.SQL_DIR)
    n = len(objects) + 5  # sql/ objects, then the follower's DECLARE x3, FETCH, CLOSE
    assert f"RisingWave parser ({PARSER}): {n} ok, 0 error" in result.output
    (tmp_path / "010_ok.sql").write_text("CREATE MATERIALIZED VIEW v AS SELECT 1 AS x;")
    # sqlglot reads it as a generic command; RisingWave's parser rejects it
    (tmp_path / "020_bad.sql").write_text("CREATE SUBSCRIPTION s FROM v WITH retention = 1h;")
    bad = CliRunner().invoke(app, ["sql", "check", "--sql-dir", str(tmp_path)])
    assert bad.exit_code == 1, bad.output
    assert "1 ok, 1 unchecked, 0 error" in bad.output
    assert f"RisingWave parser ({PARSER}): 6 ok, 1 error" in bad.output
    assert "sql parser error" in bad.output


def test_sql_check_without_the_parser_says_it_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = "/nowhere/rw-sqlparser"
    result = CliRunner().invoke(app, ["sql", "check", "--parser", missing])
    assert result.exit_code == 0, result.output
    assert f"RisingWave parser: parser not found at {missing}, skipped" in result.output
    monkeypatch.setenv(rwparser.ENV_PARSER, missing)
    assert rwparser.parser_path() == Path(missing)
    by_env = CliRunner().invoke(app, ["sql", "check"])
    assert f"parser not found at {missing}, skipped" in by_env.output


def test_default_parser_path_is_beside_the_project(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(rwparser.ENV_PARSER, raising=False)
    expected = config.PROJECT_ROOT.parent / "shared/tools/risingwave-sqlparser/rw-sqlparser"
    assert rwparser.parser_path() == expected


def test_dry_run_prints_exactly_what_a_real_run_sends() -> None:
    """Without --udf-link a real run skips the UDFs: the dry run says so instead of printing
    them with the file's placeholder link."""
    steps = risingwave.plan_folder(config.SQL_DIR, "rp:9092", "clicks", None)
    sent = [s.sql for s in steps if s.outcome != "skipped"]
    result = CliRunner().invoke(app, ["deploy", "--dry-run", "--bootstrap-servers", "rp:9092",
                                      "--topic", "clicks"])  # fmt: skip
    assert result.exit_code == 0, result.output
    printed = [
        block.split("\n", 1)[1].rstrip().removesuffix(";")
        for block in result.output.split("\n\n")
        if block.strip() and not block.split("\n", 1)[1].startswith("-- skipped")
    ]
    assert printed == [sql.rstrip().removesuffix(";") for sql in sent]
    assert "CREATE FUNCTION" not in result.output
    skipped = re.findall(r"-- 090_vmis_udf\.sql: function (\w+)\n-- skipped: no --udf-link",
                         result.output)  # fmt: skip
    assert skipped == ["vmis_recommend", "vmis_recommend_scored"]
    linked = CliRunner().invoke(app, ["deploy", "--dry-run", "--udf-link", "http://u:1"])
    assert linked.output.count("USING LINK 'http://u:1'") == 2
