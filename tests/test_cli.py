"""The console command answers --help for itself and every subcommand."""

from __future__ import annotations

import os
import subprocess
import sys

from typer.testing import CliRunner

from recommender.cli import app


def _commands() -> list[list[str]]:
    import typer.main

    group = typer.main.get_command(app)
    paths: list[list[str]] = []

    def walk(cmd, prefix: list[str]) -> None:
        paths.append(prefix)
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, [*prefix, name])

    walk(group, [])
    return paths


def test_every_command_has_help() -> None:
    runner = CliRunner()
    for path in _commands():
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage" in result.output


def test_console_script_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "recommender.cli", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("flashrec ")


def test_up_refuses_a_bad_buffer_size_before_starting_anything(tmp_path) -> None:
    result = CliRunner().invoke(app, ["up", "--pg-shared-buffers", "lots",
                                      "--data-dir", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 2
    assert "--pg-shared-buffers 'lots'" in result.output and "128MB or 1GB" in result.output
    assert not (tmp_path / "pg").exists()


def test_up_refuses_a_background_share_out_of_range(tmp_path) -> None:
    result = CliRunner().invoke(app, ["up", "--background-share", "0",
                                      "--data-dir", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 2
    assert "--background-share" in result.output
    assert not (tmp_path / "pg").exists()


def test_help_off_a_terminal_shows_whole_option_names() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "TERMINAL_WIDTH")}
    out = subprocess.run([sys.executable, "-m", "recommender.cli", "up", "--help"],
                         capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "--bootstrap-servers " in out.stdout and "--broker-storage " in out.stdout
    assert "…" not in out.stdout  # nothing cut short


def test_up_banner_names_the_producer_command_for_its_broker() -> None:
    from recommender.commands.up import producer_command

    assert producer_command("127.0.0.1:19092", "clickstream") == (
        "flashrec produce flash-sale --bootstrap-servers 127.0.0.1:19092 --rate 200")
    assert producer_command("kafka:9092", "clicks").endswith(
        "--bootstrap-servers kafka:9092 --rate 200 --topic clicks")
