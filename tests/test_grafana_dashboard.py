"""The provisioned Grafana dashboards against the embedded runtime: every panel, target and
variable names a data source that docker/grafana/provisioning provisions, and every query
(the Grafana macros and template variables it uses expanded as Grafana does) runs on a real
local PostgreSQL holding the views the engine published, as the read-only role that the
`grafana-embedded` compose service logs in as."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from engine_support import Msg, raw

from producers.flash_sale import FlashSaleConfig, generate
from recommender.config import PROJECT_ROOT
from recommender.engine import Engine, EngineConfig
from recommender.postgres.local import READER, LocalPostgres

GRAFANA = PROJECT_ROOT / "docker" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
BUILT_IN = {"-- Grafana --", "grafana"}  # Grafana's own annotation source

TIME_TYPES = {"timestamp", "timestamptz", "date"}
NUMBER_TYPES = {"int2", "int4", "int8", "float4", "float8", "numeric"}


# --- the dashboards and the provisioned data sources ---------------------------------------


def provisioned() -> dict[str, str]:
    """uid -> type of every data source in the provisioning files."""
    found: dict[str, str] = {}
    for path in sorted((GRAFANA / "provisioning" / "datasources").glob("*.y*ml")):
        for ds in yaml.safe_load(path.read_text()).get("datasources", []):
            assert ds["uid"] not in found, f"{path.name}: uid {ds['uid']} provisioned twice"
            found[ds["uid"]] = ds["type"]
    return found


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside (collapsed) rows too."""
    for panel in items:
        yield panel
        yield from panels(panel.get("panels", []))


def variables(dash: dict[str, Any]) -> list[dict[str, Any]]:
    return dash.get("templating", {}).get("list", [])


def datasource_refs(dash: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(where, reference) of every data source the dashboard names or leaves to the default."""
    for panel in panels(dash["panels"]):
        targets = panel.get("targets", [])
        if targets or "datasource" in panel:
            yield f"panel {panel.get('title')!r}", panel.get("datasource")
        for target in targets:
            yield f"panel {panel.get('title')!r} target {target.get('refId')}", \
                target.get("datasource")  # fmt: skip
    for var in variables(dash):
        if var.get("type") == "query":
            yield f"variable {var['name']}", var.get("datasource")
    for note in dash.get("annotations", {}).get("list", []):
        ref = note.get("datasource")
        if not (isinstance(ref, dict) and ref.get("uid") in BUILT_IN):
            yield f"annotation {note.get('name')!r}", ref


# --- Grafana's expansion of a raw SQL query --------------------------------------------------


@dataclass(frozen=True)
class TimeRange:
    start: datetime  # aware
    end: datetime


def relative_time(text: str, now: datetime) -> datetime:
    """A dashboard time such as `now` or `now-1h` (s, m, h, d) at `now`."""
    match = re.fullmatch(r"now(?:-(\d+)([smhd]))?", text)
    assert match, f"time {text!r}: only now and now-N(s|m|h|d) are expanded here"
    if match.group(1) is None:
        return now
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
    return now - timedelta(**{unit: int(match.group(1))})


def dashboard_range(dash: dict[str, Any], now: datetime) -> TimeRange:
    return TimeRange(relative_time(dash["time"]["from"], now), relative_time(dash["time"]["to"],
                                                                            now))


def rfc3339(value: datetime) -> str:
    """Grafana's form of a time in SQL (Go's RFC3339Nano in UTC)."""
    text = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".")
    return text + "Z"


def macro(name: str, args: list[str], when: TimeRange) -> str:
    """The PostgreSQL data source's expansion of `$__name(args)`."""
    start, end = rfc3339(when.start), rfc3339(when.end)
    if name == "timeFilter":
        return f"{args[0]} BETWEEN '{start}' AND '{end}'"
    if name == "timeFrom":
        return f"'{start}'"
    if name == "timeTo":
        return f"'{end}'"
    if name == "time":
        return f'{args[0]} AS "time"'
    if name == "timeEpoch":
        return f'extract(epoch from {args[0]}) as "time"'
    if name == "unixEpochFilter":
        return f"{args[0]} >= {int(when.start.timestamp())} AND " \
               f"{args[0]} <= {int(when.end.timestamp())}"  # fmt: skip
    raise AssertionError(f"macro $__{name} is not expanded here: add it to macro()")


def quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def format_values(var: dict[str, Any], values: list[str], fmt: str | None) -> str:
    """A template variable's values as Grafana puts them into a SQL query."""
    if fmt == "sqlstring" or (fmt is None and (var.get("multi") or var.get("includeAll"))):
        return ",".join(quote(v) for v in values)
    if fmt in (None, "raw", "csv"):
        return ",".join(values)
    if fmt == "singlequote":
        return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)
    if fmt == "doublequote":
        return ",".join('"' + v.replace('"', '\\"') + '"' for v in values)
    raise AssertionError(f"format :{fmt} of ${var['name']} is not expanded here")


VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\[\[(\w+)(?::(\w+))?\]\]|\$(\w+)")
MACRO = re.compile(r"\$__(\w+)\(([^()]*)\)")


def expand(sql: str, chosen: dict[str, list[str]], defined: dict[str, dict[str, Any]],
           when: TimeRange) -> str:  # fmt: skip
    """`sql` with the template variables (values `chosen`), then the macros, replaced; fails
    on a variable or macro left over."""

    def variable(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3) or match.group(5)
        if name.startswith("__"):
            return match.group(0)  # a macro or global variable
        assert name in defined, f"${name} is no variable of the dashboard"
        return format_values(defined[name], chosen[name], match.group(2) or match.group(4))

    sql = VARIABLE.sub(variable, sql)
    sql = MACRO.sub(lambda m: macro(m.group(1), [a.strip() for a in m.group(2).split(",")],
                                    when), sql)  # fmt: skip
    left = re.findall(r"\$\w+|\[\[\w+", sql)
    assert not left, f"not expanded: {left} in {sql}"
    return sql


# --- the embedded views ----------------------------------------------------------------------


@dataclass
class Views:
    pg: LocalPostgres
    now: datetime  # the engine's clock, aware

    def reader(self) -> psycopg.Connection:
        """A connection as Grafana's, with the password as the docs take it from the
        reader's file (its fifth field)."""
        password = self.pg.reader_password_file.read_text().strip().split(":")[4]
        return psycopg.connect(host=self.pg.host, port=self.pg.port, user=READER,
                               password=password, dbname="postgres", autocommit=True,
                               connect_timeout=10)  # fmt: skip


@pytest.fixture(scope="module")
def views(postgres: LocalPostgres, tmp_path_factory: pytest.TempPathFactory) -> Views:
    """The engine's views of a flash sale, published into the module's PostgreSQL (its
    `postgres` database, the one `flashrec up` publishes into)."""
    items = [x for x in generate(FlashSaleConfig(seed=7, events=6000, rate=20.0,
                                                 bot_share=0.05)) if isinstance(x, dict)]
    state = tmp_path_factory.mktemp("grafana") / "state.duckdb"
    engine = Engine(EngineConfig.of(pg_dsn=postgres.dsn, state_path=state, clock="event"))
    try:
        engine.ingest([Msg(raw(x), i) for i, x in enumerate(items)])
        engine.refresh()
        clock = engine.clock()
    finally:
        engine.stop()
    assert clock is not None
    return Views(postgres, clock.replace(tzinfo=UTC))


def variable_values(conn: psycopg.Connection, var: dict[str, Any], when: TimeRange) -> list[str]:
    """The options of a variable: its query's first column, or its listed values."""
    kind = var.get("type")
    if kind == "query":
        query = var["query"] if isinstance(var["query"], str) else var["query"]["rawSql"]
        rows = conn.execute(expand(query, {}, {}, when)).fetchall()
        return [str(r[0]) for r in rows]
    if kind == "custom":
        return [v.strip() for v in var["query"].split(",")]
    if kind in ("constant", "textbox"):
        return [var["query"]]
    raise AssertionError(f"variable {var['name']} of type {kind} is not expanded here")


def selections(conn: psycopg.Connection, dash: dict[str, Any], when: TimeRange
               ) -> list[dict[str, list[str]]]:  # fmt: skip
    """The variables' values to run the panels with: every option (All, the default of
    the dashboards), then the first option of each."""
    options = {}
    for var in variables(dash):
        options[var["name"]] = variable_values(conn, var, when)
        assert options[var["name"]], f"variable {var['name']} has no options"
    return [options, {name: values[:1] for name, values in options.items()}]


def column_types(conn: psycopg.Connection, cur: psycopg.Cursor) -> dict[str, str]:
    out = {}
    for col in cur.description or []:
        info = conn.adapters.types.get(col.type_code)
        out[col.name] = info.name if info else str(col.type_code)
    return out


def run_target(conn: psycopg.Connection, dash: dict[str, Any], target: dict[str, Any],
               chosen: dict[str, list[str]], when: TimeRange) -> list[tuple[Any, ...]]:
    """Run one target's SQL as Grafana would; check what its format needs; its rows."""
    defined = {var["name"]: var for var in variables(dash)}
    sql = expand(target["rawSql"], chosen, defined, when)
    cur = conn.execute(sql)
    rows = cur.fetchall()
    types = column_types(conn, cur)
    if target.get("format") == "time_series":
        assert types.get("time") in TIME_TYPES | NUMBER_TYPES, f"no time column: {types}"
        for name, kind in types.items():
            if name not in ("time", "metric"):
                assert kind in NUMBER_TYPES, f"value column {name} is {kind}"
    return rows


def sql_targets(dash: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for panel in panels(dash["panels"]):
        for target in panel.get("targets", []):
            yield panel, target


# --- the tests -------------------------------------------------------------------------------


def test_dashboards_are_provisioned_from_their_folder() -> None:
    assert DASHBOARDS, "no dashboard JSON under docker/grafana/dashboards"
    providers = yaml.safe_load((GRAFANA / "provisioning/dashboards/flashrec.yml").read_text())
    assert [p["options"]["path"] for p in providers["providers"]] == \
        ["/var/lib/grafana/dashboards"]  # where docker-compose.yml mounts that folder
    uids = [load(path)["uid"] for path in DASHBOARDS]
    assert len(set(uids)) == len(uids)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_datasource_is_provisioned(path: Path) -> None:
    """Each panel, target and query variable names a provisioned data source by uid and
    type: the one both Grafana services provision, whatever database it points at."""
    sources = provisioned()
    refs = list(datasource_refs(load(path)))
    assert refs
    for where, ref in refs:
        assert isinstance(ref, dict), f"{where}: names no data source by uid ({ref!r})"
        assert ref.get("uid") in sources, f"{where}: uid {ref.get('uid')!r} not provisioned"
        assert ref.get("type") == sources[ref["uid"]], f"{where}: type {ref.get('type')!r}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_panel_query_runs_on_the_embedded_views(path: Path, views: Views) -> None:
    """Every target's SQL runs as the read-only role over the dashboard's default time
    range (at the engine's clock), with every option of its variables and with one, and
    returns rows."""
    dash = load(path)
    when = dashboard_range(dash, views.now)
    targets = list(sql_targets(dash))
    assert targets
    with views.reader() as conn:
        for chosen in selections(conn, dash, when):
            for panel, target in targets:
                assert target.get("rawQuery", True) and target.get("rawSql"), panel["title"]
                try:
                    rows = run_target(conn, dash, target, chosen, when)
                except psycopg.Error as exc:
                    raise AssertionError(f"panel {panel['title']!r}: {exc}") from exc
                assert rows, f"panel {panel['title']!r} has no rows ({chosen})"


@pytest.mark.parametrize("change", [
    ("engagement_score", "engagement_scores", psycopg.errors.UndefinedColumn),
    ("FROM trending_by_category", "FROM trending_by_categories", psycopg.errors.UndefinedTable),
])  # fmt: skip
def test_a_panel_naming_what_does_not_exist_fails(views: Views, change: tuple) -> None:
    """The check above fails on a column or view the embedded views do not have."""
    old, new, error = change
    dash = copy.deepcopy(load(GRAFANA / "dashboards" / "flashrec.json"))
    changed = 0
    for _, target in sql_targets(dash):
        changed += old in target["rawSql"]
        target["rawSql"] = target["rawSql"].replace(old, new)
    assert changed
    when = dashboard_range(dash, views.now)
    with views.reader() as conn, pytest.raises(error):
        chosen = selections(conn, dash, when)[0]
        for _, target in sql_targets(dash):
            run_target(conn, dash, target, chosen, when)


def test_macros_and_variables_expand_as_grafana_does() -> None:
    when = TimeRange(datetime(2024, 3, 1, 13, 0, tzinfo=UTC),
                     datetime(2024, 3, 1, 14, 0, 0, 500000, tzinfo=UTC))
    defined = {"c": {"name": "c", "multi": True}, "n": {"name": "n"}}
    chosen = {"c": ["a", "o'b"], "n": ["5"]}
    sql = ("SELECT $__timeFrom(), $__timeTo() WHERE $__timeFilter(ts) AND c IN ($c) "
           "AND d IN (${c:sqlstring}) AND e = '${c:csv}' LIMIT $n")
    assert expand(sql, chosen, defined, when) == (
        "SELECT '2024-03-01T13:00:00Z', '2024-03-01T14:00:00.5Z' WHERE ts BETWEEN "
        "'2024-03-01T13:00:00Z' AND '2024-03-01T14:00:00.5Z' AND c IN ('a','o''b') "
        "AND d IN ('a','o''b') AND e = 'a,o'b' LIMIT 5")
    with pytest.raises(AssertionError, match="timeGroup"):
        expand("SELECT $__timeGroup(ts, '5m')", {}, {}, when)
    with pytest.raises(AssertionError, match="no variable"):
        expand("SELECT $missing", {}, {}, when)
    now = datetime(2024, 3, 1, 14, 0, tzinfo=UTC)
    assert dashboard_range({"time": {"from": "now-1h", "to": "now"}}, now) == \
        TimeRange(now - timedelta(hours=1), now)
