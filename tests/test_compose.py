"""Static checks of the production path's container files (no Docker engine needed)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import compose_spec
import jsonschema
import pytest
import yaml
from compose_spec.compose_spec import PyOptions

from recommender.config import PROJECT_ROOT

COMPOSE = PROJECT_ROOT / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_file_follows_the_compose_specification(compose: dict) -> None:
    text = COMPOSE.read_text()
    PyOptions(apply_merge=True).from_yaml(text).validate()  # rejects unknown keys and bad types
    jsonschema.validate(compose, compose_spec.ComposeSpecification.model_json_schema())


def test_validator_rejects_a_broken_compose_file() -> None:
    with pytest.raises(ValueError):
        PyOptions(apply_merge=True).from_yaml("services:\n  x:\n    imagee: a\n").validate()


def test_services_start_in_order(compose: dict) -> None:
    services = compose["services"]
    expected = {"redpanda", "risingwave", "udf", "deploy", "api", "producer", "grafana",
                "grafana-embedded"}
    assert expected <= set(services)
    for name, svc in services.items():
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown service {dep}"
    assert services["risingwave"]["image"].startswith("risingwavelabs/risingwave:v")
    assert services["risingwave"]["command"] == "single_node"
    ports = {p.split(":")[-1] for p in services["risingwave"]["ports"]}
    assert ports == {"4566", "5691"}
    for name in ("redpanda", "risingwave", "udf", "api"):
        assert "healthcheck" in services[name], name
    deploy_deps = services["deploy"]["depends_on"]
    assert deploy_deps["risingwave"]["condition"] == "service_healthy"
    assert services["api"]["depends_on"]["deploy"]["condition"] == "service_completed_successfully"
    assert services["producer"]["profiles"] == ["producer"]
    assert services["grafana"]["profiles"] == ["grafana"]


def test_published_ports_listen_on_loopback_only(compose: dict) -> None:
    """Every port published to the host is bound to 127.0.0.1: nothing answers on the
    host's other addresses until someone sets credentials and opens it (production.md)."""
    published = 0
    for name, svc in compose["services"].items():
        for port in svc.get("ports", []):
            if isinstance(port, dict):  # long syntax
                host_ip = port.get("host_ip")
            else:
                parts = str(port).split(":")
                host_ip = parts[0] if len(parts) == 3 else None
            assert host_ip == "127.0.0.1", f"{name}: port {port} is open on every address"
            published += 1
    assert published >= 5  # Redpanda, RisingWave (2), API, Grafana


def test_flashrec_services_run_real_cli_commands(compose: dict) -> None:
    from typer.main import get_command

    from recommender.cli import app

    names = set(get_command(app).commands)
    for name in ("udf", "deploy", "api", "producer"):
        assert compose["services"][name]["command"][0] in names, name


def test_grafana_provisioning_is_valid() -> None:
    root = PROJECT_ROOT / "docker" / "grafana"
    ds = yaml.safe_load((root / "provisioning/datasources/flashrec.yml").read_text())
    assert ds["datasources"][0]["uid"] == "flashrec"
    assert ds["datasources"][0]["url"] == "${FLASHREC_GRAFANA_PG_HOST}"
    dash = json.loads((root / "dashboards/flashrec.json").read_text())
    sql = " ".join(t["rawSql"] for p in dash["panels"] for t in p["targets"])
    assert "trending_by_category" in sql and "co_view_pairs" in sql
    # tests/test_grafana_dashboard.py runs every panel's SQL against the embedded views


GRAFANA_VARIABLES = re.compile(r"\$\{?(FLASHREC_GRAFANA_\w+)")


def test_grafana_services_share_provisioning(compose: dict) -> None:
    """`grafana` and `grafana-embedded` mount the same data source and dashboards, and each
    sets every variable the data source file reads."""
    services = compose["services"]
    root = PROJECT_ROOT / "docker" / "grafana" / "provisioning"
    wanted = set()
    for path in root.rglob("*.yml"):
        wanted |= set(GRAFANA_VARIABLES.findall(path.read_text()))
    assert wanted == {"FLASHREC_GRAFANA_PG_HOST", "FLASHREC_GRAFANA_PG_USER",
                      "FLASHREC_GRAFANA_PG_DATABASE", "FLASHREC_GRAFANA_PG_PASSWORD"}
    dashboards = yaml.safe_load((root / "dashboards/flashrec.yml").read_text())
    for name in ("grafana", "grafana-embedded"):
        svc = services[name]
        assert svc["image"].startswith("grafana/grafana-oss:"), name
        mounts = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"]}
        assert mounts["/etc/grafana/provisioning"] == "./docker/grafana/provisioning", name
        assert mounts[dashboards["providers"][0]["options"]["path"]] == \
            "./docker/grafana/dashboards", name
        assert wanted <= set(svc["environment"]), name
    assert services["grafana"]["image"] == services["grafana-embedded"]["image"]


def test_grafana_embedded_reads_flashrec_up_as_the_reader(compose: dict) -> None:
    """`grafana-embedded` reaches `flashrec up`'s PostgreSQL (127.0.0.1 only) by the host's
    network as the read-only role, at the port `flashrec up` uses by default, and listens on
    loopback only itself (it publishes no ports to bind)."""
    from recommender.config import DEFAULT_PG_PORT, ENV_PG_PORT
    from recommender.postgres.local import READER

    svc = compose["services"]["grafana-embedded"]
    env = svc["environment"]
    assert svc["profiles"] == ["grafana-embedded"]
    assert svc["network_mode"] == "host" and "ports" not in svc
    assert env["GF_SERVER_HTTP_ADDR"] == "127.0.0.1"
    assert env["FLASHREC_GRAFANA_PG_HOST"] == f"127.0.0.1:${{{ENV_PG_PORT}:-{DEFAULT_PG_PORT}}}"
    assert env["FLASHREC_GRAFANA_PG_USER"] == READER
    assert env["FLASHREC_GRAFANA_PG_DATABASE"] == "postgres"
    assert "depends_on" not in svc  # starts alone, beside a running `flashrec up`


def test_grafana_reads_the_risingwave_the_services_use(compose: dict) -> None:
    env = compose["services"]["grafana"]["environment"]
    dsn = urlsplit(compose["x-flashrec"]["environment"]["FLASHREC_PG_DSN"])
    assert env["FLASHREC_GRAFANA_PG_HOST"] == f"{dsn.hostname}:{dsn.port}"
    assert env["FLASHREC_GRAFANA_PG_USER"] == dsn.username
    assert env["FLASHREC_GRAFANA_PG_DATABASE"] == dsn.path.lstrip("/")


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    dockerfile = str(PROJECT_ROOT / "Dockerfile")
    out = subprocess.run([hadolint, dockerfile], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_risingwave_reads_the_relays_valid_topic(compose: dict) -> None:
    """Producers write `clickstream`; the relay validates it into `clickstream_valid`, which
    `deploy` points RisingWave's clickstream table at; deploy waits for a real query."""
    from typer.main import get_command

    from recommender.cli import app

    services = compose["services"]
    relay = services["relay"]["command"]
    assert relay[0] in get_command(app).commands
    assert {"--topic=clickstream", "--valid-topic=clickstream_valid",
            "--dlq-topic=clickstream_dlq"} <= set(relay)  # fmt: skip
    deploy = services["deploy"]["command"]
    assert "--topic=clickstream_valid" in deploy
    assert any(arg.startswith("--wait=") and float(arg.split("=")[1]) > 0 for arg in deploy)
    created = services["topics"]["command"][0]
    for topic in ("clickstream ", "clickstream_valid ", "clickstream_dlq "):
        assert f"topic create {topic}" in created
