"""One configuration model: settings with one environment name each, a settings file, one
precedence (flag > environment > file > default), VMIS-kNN parameters and the session gap
defined once."""

from __future__ import annotations

import json
import logging
import re
from datetime import timedelta
from pathlib import Path

import pytest
import typer
import typer.main
from typer.testing import CliRunner

from recommender import config
from recommender.cli import app
from recommender.commands import options
from recommender.events import SESSION_GAP
from udfs.params import VmisParams

DATA = Path(__file__).parent / "data"
TRAIN, TEST = DATA / "sessions_train.tsv", DATA / "sessions_test.tsv"


@pytest.fixture(autouse=True)
def clean_settings(monkeypatch: pytest.MonkeyPatch):
    """No FLASHREC_* variable and no settings file from outside the test."""
    for setting in config.SETTINGS.values():
        for name in (setting.env, *setting.deprecated):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv(config.ENV_CONFIG, raising=False)
    monkeypatch.setattr(config, "_warned", set())
    config.use_settings_file(None)
    yield
    config.use_settings_file(None)


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "flashrec.toml"
    path.write_text(text)
    return path


# --- precedence -------------------------------------------------------------------------------
def _probe_app() -> typer.Typer:
    """A command with two settings' options, printing what it got."""
    probe = typer.Typer()

    @probe.command()
    def show(
        m: int = options.vmis_m(),
        topic: str = options.topic(),
        config_file: Path | None = options.config_file(),
    ) -> None:
        typer.echo(json.dumps({"m": m, "topic": topic}))

    @probe.command()
    def other() -> None:
        """Makes `show` a subcommand."""

    return probe


def _show(args: list[str], env: dict[str, str] | None = None) -> dict:
    result = CliRunner().invoke(_probe_app(), ["show", *args], env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_flag_beats_environment_beats_file_beats_default(tmp_path: Path) -> None:
    path = _toml(tmp_path, '[vmis]\nm = 300\n[kafka]\ntopic = "from_file"\n')
    assert _show([]) == {"m": 500, "topic": "clickstream"}
    assert _show(["--config", str(path)]) == {"m": 300, "topic": "from_file"}
    assert _show([], env={"FLASHREC_CONFIG": str(path)}) == {"m": 300, "topic": "from_file"}
    assert _show(["--config", str(path)], env={"FLASHREC_VMIS_M": "200"}) == {
        "m": 200, "topic": "from_file"}
    assert _show(["--config", str(path), "--m", "100"], env={"FLASHREC_VMIS_M": "200"}) == {
        "m": 100, "topic": "from_file"}


def test_resolve_outside_the_cli_has_the_same_order(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    assert config.resolve("vmis.m") == (500, "default")
    config.use_settings_file(_toml(tmp_path, "[vmis]\nm = 300\n"))
    assert config.resolve("vmis.m") == (300, "file")
    monkeypatch.setenv("FLASHREC_VMIS_M", "200")
    assert config.resolve("vmis.m") == ("200", "FLASHREC_VMIS_M")
    assert config.value("vmis.m") == 200
    assert config.vmis_params() == VmisParams(m=200)


def test_settings_file_from_the_environment(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASHREC_CONFIG", str(_toml(tmp_path, "[vmis]\nk = 50\n")))
    config._file.clear()  # as in a fresh process
    assert config.vmis_params().k == 50


def test_settings_file_mistakes_are_usage_errors(tmp_path: Path) -> None:
    for text, words in [("[vmis]\nmm = 3\n", "unknown setting vmis.mm (known: vmis.m, vmis.k"),
                        ("[vmis]\nm = \"many\"\n", "vmis.m: 'many' is not a valid int"),
                        ("m = 3\n", "m must be a [m] table"),
                        ("[vmis\n", "settings file")]:
        result = CliRunner().invoke(_probe_app(), ["show", "--config", str(_toml(tmp_path, text))])
        assert result.exit_code == 2, text
        assert words in " ".join(result.output.replace("│", " ").split()), result.output
    result = CliRunner().invoke(_probe_app(), ["show", "--config", str(tmp_path / "absent")])
    assert result.exit_code == 2 and "cannot read settings file" in result.output


def test_environment_values_are_parsed_as_their_type(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASHREC_INTENT", "0")
    monkeypatch.setenv("FLASHREC_UNLOGGED_VIEWS", "yes")
    monkeypatch.setenv("FLASHREC_VMIS_IDF_WEIGHTING", "0.5")
    monkeypatch.setenv("FLASHREC_DATA_DIR", "/tmp/x")
    assert config.value("intent.enabled") is False
    assert config.value("engine.unlogged_views") is True
    assert config.value("vmis.idf_weighting") == 0.5
    assert config.data_dir() == Path("/tmp/x")
    monkeypatch.setenv("FLASHREC_VMIS_K", "lots")
    with pytest.raises(ValueError, match="FLASHREC_VMIS_K: 'lots' is not a valid int"):
        config.value("vmis.k")


def test_every_setting_has_one_environment_name() -> None:
    names = [n for s in config.SETTINGS.values() for n in (s.env, *s.deprecated)]
    assert len(names) == len(set(names))
    assert all(n.startswith("FLASHREC_") for n in names)


# --- deprecated names -------------------------------------------------------------------------
def test_old_seed_names_still_work_with_a_warning(monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("FLASHREC_EXPERIMENT_SEED", "7")
    with caplog.at_level(logging.WARNING, logger="flashrec.config"):
        assert config.value("traffic.seed") == 7
    assert "FLASHREC_EXPERIMENT_SEED is deprecated: set FLASHREC_SEED instead" in caplog.text
    monkeypatch.setenv("FLASHREC_SEED", "9")  # the current name wins
    assert config.value("traffic.seed") == 9


def test_produce_reads_the_deprecated_seed_name(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    result = CliRunner().invoke(app, [
        "produce", "flash-sale", "--out", str(out), "--events", "5", "--speed", "0", "--quiet",
        "--run-id", "t", "--start", "2024-03-15T13:00:00Z"], env={"FLASHREC_PRODUCE_SEED": "7"})
    assert result.exit_code == 0, result.output
    ids = [json.loads(line)["event_id"] for line in out.read_text().splitlines()]
    assert ids and all(i.startswith("e7-t-") for i in ids if i)


# --- VMIS-kNN parameters ----------------------------------------------------------------------
def test_vmis_environment_reaches_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    from recommender.serving import runtime

    seen = {}

    def fake_build_state(**kwargs):
        seen.update(kwargs)
        raise ValueError("stop here")

    monkeypatch.setattr(runtime, "build_state", fake_build_state)
    result = CliRunner().invoke(app, ["serve", "--history", str(TRAIN)],
                                env={"FLASHREC_VMIS_M": "123", "FLASHREC_VMIS_HOW_MANY": "7"})
    assert result.exit_code == 2 and "stop here" in result.output
    assert seen["params"] == VmisParams(m=123, how_many=7)
    assert seen["session_ttl_s"] == SESSION_GAP.total_seconds()


def test_vmis_environment_reaches_the_runtime_of_up(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from recommender.serving.runtime import build_state, make_index

    monkeypatch.setenv("FLASHREC_VMIS_M", "123")
    index, sync = make_index(history=TRAIN)
    assert index.params.m == 123 and sync is None
    state = build_state(data_dir=tmp_path, history=TRAIN)  # what start_api (flashrec up) calls
    try:
        assert state.index.params == VmisParams(m=123)
    finally:
        state.store.close()


def test_vmis_environment_reaches_evaluate() -> None:
    result = CliRunner().invoke(app, ["evaluate", "--train", str(TRAIN), "--test", str(TEST),
                                      "--json", "--quiet"], env={"FLASHREC_VMIS_M": "123"})
    assert result.exit_code == 0, result.output
    params = json.loads(result.output.strip().splitlines()[-1])["params"]
    assert params["m"] == 123 and params["k"] == VmisParams().k


def test_vmis_environment_reaches_the_experiment(monkeypatch: pytest.MonkeyPatch) -> None:
    from recommender.commands.experiment import _params

    monkeypatch.setenv("FLASHREC_VMIS_K", "77")
    monkeypatch.setenv("FLASHREC_VMIS_MAX_ITEMS", "3")
    params = _params(30.0, 24.0)
    assert (params.k, params.max_items, params.m) == (77, 3, VmisParams().m)


def test_vmis_defaults_are_defined_once() -> None:
    from recommender.evaluation import EvalParams
    from recommender.experiment.nightly_vs_live import Params as ReplayParams
    from recommender.serving.live_index import Params as LiveParams
    from udfs import vmisknn

    v = VmisParams()
    assert LiveParams() == v
    e = EvalParams()
    assert (e.m, e.k, e.how_many, e.max_items_in_session, e.idf_weighting) == (
        v.m, v.k, v.how_many, v.max_items_in_session, v.idf_weighting)
    r = ReplayParams()
    assert (r.m, r.k, r.max_items, r.idf_weighting) == (
        v.m, v.k, v.max_items_in_session, v.idf_weighting)
    assert (vmisknn.DEFAULT_M, vmisknn.DEFAULT_K, vmisknn.DEFAULT_HOW_MANY) == (v.m, v.k,
                                                                              v.how_many)
    assert EvalParams.of(VmisParams(m=9), cutoff=5) == EvalParams(m=9, cutoff=5)


# --- the session gap --------------------------------------------------------------------------
def test_one_session_gap() -> None:
    from producers.replay import SESSION_GAP_MS
    from recommender.intent import features
    from recommender.serving.session_store import DEFAULT_TTL_S

    assert SESSION_GAP == timedelta(minutes=30)
    assert DEFAULT_TTL_S == SESSION_GAP.total_seconds()
    assert SESSION_GAP_MS == SESSION_GAP.total_seconds() * 1000
    assert features.SESSION_GAP is SESSION_GAP
    assert config.SETTINGS["api.session_ttl"].default == SESSION_GAP.total_seconds()


def test_session_features_keeps_every_open_session() -> None:
    """sql/030 has no inactivity cut (sessions are the producers' session_id); the intent
    scorer counts a session open while its last event is within SESSION_GAP, so the view's
    look-back must be at least that long."""
    from recommender import sqlfiles

    view = next(o for o in sqlfiles.views() if o.file.startswith("030_"))
    assert view.name == "session_features"
    looks = sqlfiles.horizons(view.tree)
    assert looks and min(looks) >= SESSION_GAP


# --- help -------------------------------------------------------------------------------------
def _all_options() -> list[tuple[str, object]]:
    out = []

    def walk(cmd, path: str) -> None:
        for p in getattr(cmd, "params", []):
            out.append((f"{path} {p.opts[0] if getattr(p, 'opts', None) else p.name}", p))
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, f"{path} {name}")

    walk(typer.main.get_command(app), "flashrec")
    return out


MEASURED = re.compile(r"measured|events/s|\d ?ms\b|x faster|times faster|benchmarks\.md|#\d"
                      r"|\bissue\b", re.IGNORECASE)


def test_option_help_is_one_line_without_measurements() -> None:
    for where, param in _all_options():
        text = getattr(param, "help", None) or ""
        if where.startswith("flashrec sql "):
            continue
        assert len(text) <= 100, (where, text)
        assert not MEASURED.search(text), (where, text)


def test_up_help_puts_tuning_flags_apart() -> None:
    result = CliRunner().invoke(app, ["up", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    everyday, tuning = result.output.split("─ Tuning ─")
    for flag in ("--data-dir", "--api-port", "--bootstrap-servers", "--pg-dsn", "--config"):
        assert flag in everyday
    for flag in ("--background-share", "--pg-shared-buffers", "--duckdb-threads",
                 "--unlogged-views", "--partitions", "--refresh-interval"):
        assert flag in tuning and flag not in everyday
    assert len(result.output.split()) < 700


def test_every_command_takes_a_settings_file() -> None:
    commands = {where.rsplit(" ", 1)[0] for where, _ in _all_options()}
    with_config = {where.rsplit(" ", 1)[0] for where, p in _all_options()
                   if where.endswith(" --config")}
    skipped = {c for c in commands if c == "flashrec" or c.startswith("flashrec sql")}
    assert commands - skipped == with_config


def test_session_routes_return_the_index_how_many_by_default(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from recommender.serving.app import ServingState, create_app
    from recommender.serving.live_index import LiveIndex
    from recommender.serving.session_store import SessionStore
    from recommender.serving.views import Views

    index = LiveIndex(VmisParams(how_many=2))
    index.build([("h1", ["a", "b", "c", "d", "e"], 1.0), ("h2", ["a", "c", "d", "e"], 2.0)])
    state = ServingState(index, SessionStore(tmp_path / "sessions"), Views(None, cache_s=0))
    with TestClient(create_app(state), raise_server_exceptions=False) as c:
        clicked = c.post("/v1/sessions/s/clicks", json={"item_id": "a"}).json()
        assert len(clicked["recommendations"]) == 2
        stored = c.get("/v1/sessions/s/recommendations").json()
        assert len(stored["recommendations"]) == 2
        more = c.get("/v1/sessions/s/recommendations", params={"how_many": 3}).json()
        assert len(more["recommendations"]) == 3
