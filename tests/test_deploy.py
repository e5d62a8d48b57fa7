"""`flashrec deploy`: the plan, substitution, idempotence and --drop, against a fake catalog."""

from __future__ import annotations

import re
import subprocess

import pytest
from typer.testing import CliRunner

from recommender import risingwave, sqlfiles
from recommender.cli import app


class FakeRisingWave:
    """Remembers created objects by kind and name, as RisingWave's catalog would."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.objects: set[tuple[str, str]] = set()
        self.executed: list[str] = []
        self.fail_on = fail_on

    def query(self, sql: str, params: tuple) -> list[tuple]:
        relation = re.search(r"FROM (\S+)", sql).group(1)
        kind = next(k for k, (rel, _) in risingwave.CATALOG.items() if rel == relation)
        return [(1,)] if (kind, params[0]) in self.objects else []

    def execute(self, sql: str) -> None:
        self.executed.append(sql)
        if self.fail_on and self.fail_on in sql:
            raise RuntimeError("syntax error at or near 'x'")
        drop = re.match(r"DROP (.+?) IF EXISTS (\w+)", sql)
        if drop:
            kind = next(k for k, (_, kw) in risingwave.CATALOG.items() if kw == drop.group(1))
            self.objects.discard((kind, drop.group(2)))
            return
        kind, name = sqlfiles._kind_and_name(sql)
        self.objects.add((kind, name))


@pytest.fixture(scope="module")
def objects() -> list[sqlfiles.SqlObject]:
    return sqlfiles.load()


def test_plan_substitutes_broker_topic_and_udf_link(objects) -> None:
    steps = risingwave.plan(objects, "kafka-1:9092,kafka-2:9092", "clicks", "http://udf.prod:8815")
    source = next(s for s in steps if s.obj.name == sqlfiles.CLICKSTREAM)
    assert source.obj.kind == "table"
    assert "properties.bootstrap.server = 'kafka-1:9092,kafka-2:9092'" in source.sql
    assert "topic = 'clicks'" in source.sql
    functions = [s for s in steps if s.obj.kind == "function"]
    assert functions and all("USING LINK 'http://udf.prod:8815'" in s.sql for s in functions)
    assert [s.obj.name for s in steps] == [o.name for o in objects]  # file order kept


def test_apply_is_idempotent(objects) -> None:
    rw = FakeRisingWave()

    def run() -> list[risingwave.Step]:
        steps = risingwave.plan(objects, "b:9092", "t", "http://u:8815")
        return risingwave.apply(steps, rw.query, rw.execute)

    first = run()
    assert {s.outcome for s in first} == {"created"}
    n_executed = len(rw.executed)
    second = run()
    assert {s.outcome for s in second} == {"found"}
    assert len(rw.executed) == n_executed  # nothing ran twice
    kinds = {k for k, _ in rw.objects}
    assert {"table", "materialized view", "subscription", "function"} <= kinds


def test_without_udf_link_functions_are_skipped(objects) -> None:
    rw = FakeRisingWave()
    steps = risingwave.apply(
        risingwave.plan(objects, "b:9092", "t", None, include_functions=False), rw.query, rw.execute
    )
    assert {s.outcome for s in steps if s.obj.kind == "function"} == {"skipped"}
    assert not any(k == "function" for k, _ in rw.objects)


def test_drop_removes_everything_newest_first(objects) -> None:
    rw = FakeRisingWave()
    steps = risingwave.plan(objects, "b:9092", "t", "http://u:8815")
    risingwave.apply(steps, rw.query, rw.execute)
    rw.executed.clear()
    dropped = risingwave.drop(steps, rw.query, rw.execute)
    assert {s.outcome for s in dropped} == {"dropped"}
    assert rw.objects == set()
    names = [re.match(r"DROP .+? IF EXISTS (\w+)", sql).group(1) for sql in rw.executed]
    assert names == [o.name for o in reversed(objects)]


def test_a_failing_statement_names_its_file(objects) -> None:
    rw = FakeRisingWave(fail_on="co_view_pairs")
    failing = r"045_co_view_pairs\.sql: creating co_view_pairs"
    with pytest.raises(risingwave.DeployError, match=failing):
        risingwave.apply(risingwave.plan(objects, "b:9092", "t", None), rw.query, rw.execute)


def test_dry_run_prints_every_object_in_order(objects) -> None:
    result = CliRunner().invoke(
        app, ["deploy", "--dry-run", "--bootstrap-servers", "rp:9092", "--udf-link", "http://u:1"]
    )
    assert result.exit_code == 0, result.output
    positions = [result.output.index(f" {o.name}\n") for o in objects]
    assert positions == sorted(positions)
    assert "'rp:9092'" in result.output and "USING LINK 'http://u:1'" in result.output


def test_unreachable_risingwave_is_a_clear_error() -> None:
    result = CliRunner().invoke(
        app, ["deploy", "--dsn", "postgresql://root@127.0.0.1:1/dev", "--connect-timeout", "2",
              "--wait", "1"]
    )  # fmt: skip
    assert result.exit_code == 2
    assert "cannot reach RisingWave" in result.output and "not ready after" in result.output


class FakeConn:
    def __init__(self, nodes: int) -> None:
        self.nodes, self.closed = nodes, False

    def execute(self, sql: str) -> FakeConn:
        assert sql == risingwave.READY_SQL
        return self

    def fetchone(self) -> tuple[int]:
        return (self.nodes,)

    def close(self) -> None:
        self.closed = True


def test_deploy_waits_with_backoff_until_a_compute_node_runs() -> None:
    answers: list = [OSError("connection refused"), OSError("connection reset"), FakeConn(0),
                     FakeConn(1)]  # fmt: skip
    made: list = []
    slept: list[float] = []

    def connect() -> FakeConn:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        made.append(answer)
        return answer

    conn = risingwave.wait_ready(connect, 60, sleep=slept.append, clock=lambda: sum(slept))
    assert conn is made[-1] and conn.nodes == 1 and not conn.closed
    assert made[0].closed  # the connection without a compute node was closed
    assert slept == [0.5, 1.0, 2.0]


def test_deploy_gives_up_after_its_wait_with_the_last_error() -> None:
    slept: list[float] = []

    def refused() -> FakeConn:
        raise OSError("connection refused")

    with pytest.raises(risingwave.DeployError, match="not ready after .* connection refused"):
        risingwave.wait_ready(refused, 20, sleep=slept.append, clock=lambda: sum(slept))
    assert slept == [0.5, 1.0, 2.0, 4.0, 8.0, 4.5]  # backoff capped, last wait to the deadline


def test_ready_query_parses_with_risingwaves_parser() -> None:
    from recommender import rwparser

    path = rwparser.parser_path()
    if not rwparser.available(path):
        pytest.skip(rwparser.missing(path))
    run = subprocess.run([str(path)], input=risingwave.READY_SQL, capture_output=True, text=True,
                         timeout=30)  # fmt: skip
    assert run.returncode == 0 and run.stdout.startswith("OK:"), run.stdout + run.stderr
