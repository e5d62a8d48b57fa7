"""Options shared by the commands, each declared once on its setting of recommender.config:
one flag, one environment variable, one settings-file name, one line of help.

Every command takes `--config FILE` (FLASHREC_CONFIG), read before its other options:
`_apply_settings` makes the value `config.resolve` finds for each option's setting (environment,
deprecated environment name, settings file) that option's default, which a flag overrides.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import typer

from recommender import config

TUNING = "Tuning"  # help panel of the flags that tune rather than choose what runs
_KEEP: Any = object()  # the setting's own default


def group(app: typer.Typer, name: str, help: str) -> typer.Typer:
    """A command group `name` of `app` (its help shown when called without a command)."""
    sub = typer.Typer(help=help, no_args_is_help=True)
    app.add_typer(sub, name=name)
    return sub


def one_of(flag: str, value: str, choices: Collection[str]) -> None:
    """Exit with status 2 and an error naming `flag` unless `value` is one of `choices`."""
    if value not in choices:
        typer.echo(f"error: {flag} must be one of {', '.join(choices)}, not {value!r}", err=True)
        raise typer.Exit(2)


def _apply_settings(ctx: typer.Context, path: Path | None) -> Path | None:
    """Use the settings file at `path`; then give each option of this command whose setting
    has a value outside its default (`config.resolve`) that value as its default."""
    if ctx.resilient_parsing:
        return path
    defaults: dict[str, Any] = {}
    try:
        config.use_settings_file(path)
        for param in ctx.command.params:
            setting = config.BY_ENV.get(param.envvar) if isinstance(param.envvar, str) else None
            if setting is None or param.name is None:
                continue
            raw, source = config.resolve(setting.key)
            if source != "default":
                defaults[param.name] = raw
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return path


def config_file() -> Any:
    """--config FILE: the settings file of this run."""
    return typer.Option(
        None, "--config", envvar=config.ENV_CONFIG, is_eager=True, callback=_apply_settings,
        metavar="FILE", help="TOML file of settings (docs/production.md, Settings).",
    )  # fmt: skip


def setting(key: str, *flags: str, default: Any = _KEEP, help: str | None = None,
            panel: str | None = None, **kwargs: Any) -> Any:  # fmt: skip
    """An option of setting `key` (its environment variable, default and help unless given)."""
    s = config.SETTINGS[key]
    return typer.Option(
        s.default if default is _KEEP else default, *flags, envvar=s.env,
        help=help or s.help, rich_help_panel=panel, **kwargs,
    )  # fmt: skip


def _port_range(lowest: int) -> Callable[[int], int]:
    """Refuse a port outside `lowest`..65535 with the message min=/max= give; unlike them, it
    adds no range to the type column of --help, which would squeeze the help beside it."""

    def check(value: int) -> int:
        if value < lowest:
            raise typer.BadParameter(f"Input should be greater than or equal to {lowest}")
        if value > 65535:
            raise typer.BadParameter("Input should be less than or equal to 65535")
        return value

    return check


def port(key: str, *flags: str, lowest: int = 1, **kwargs: Any) -> Any:
    """A TCP port option of setting `key`, from `lowest` to 65535, shown as PORT."""
    return setting(key, *flags, metavar="PORT", callback=_port_range(lowest), **kwargs)


# --- kafka and the local broker -------------------------------------------------------------
def bootstrap_servers(default: str | None = None, help: str | None = None) -> Any:
    return setting("kafka.bootstrap_servers", "--bootstrap-servers", default=default, help=help)


def topic(help: str | None = None) -> Any:
    return setting("kafka.topic", "--topic", help=help)


def dlq_topic() -> Any:
    return setting("kafka.dlq_topic", "--dlq-topic")


def valid_topic(*flags: str) -> Any:
    return setting("kafka.valid_topic", *(flags or ("--valid-topic",)))


def partitions(panel: str | None = None) -> Any:
    return setting("kafka.partitions", "--partitions", min=1, panel=panel)


def broker_port(*flags: str) -> Any:
    return port("broker.port", *(flags or ("--broker-port",)))


def broker_storage(*flags: str, panel: str | None = None, help: str | None = None) -> Any:
    return setting("broker.storage", *(flags or ("--broker-storage",)), panel=panel, help=help)


def broker_wait(default: float) -> Any:
    return setting("broker.wait", "--wait", default=default, min=0.5)


# --- PostgreSQL, paths, logging -------------------------------------------------------------
def pg_dsn(help: str | None = None, required: bool = False) -> Any:
    return setting("postgres.dsn", "--pg-dsn", default=... if required else None, help=help)


def pg_port() -> Any:
    return port("postgres.port", "--pg-port")


def data_dir(help: str | None = None) -> Any:
    return setting("paths.data_dir", "--data-dir", help=help)


def log_level(default: str | None = None) -> Any:
    return setting("logging.level", "--log-level", default=default)


def clock(help: str | None = None) -> Any:
    return setting("engine.clock", "--clock", help=help)


def intent_model_dir(*flags: str) -> Any:
    return setting("intent.model_dir", *(flags or ("--intent-model-dir",)))


# --- the API and the UDF server -------------------------------------------------------------
def host() -> Any:
    return typer.Option("127.0.0.1", "--host", help="Address to listen on.")


def api_port(*flags: str, default: int | None = None, help: str | None = None) -> Any:
    return port("api.port", *(flags or ("--port",)), lowest=0, help=help,
                default=_KEEP if default is None else default)  # fmt: skip


def blend_weights() -> Any:
    return setting("api.blend_weights", "--blend-weights", metavar="NAME=VALUE,...")


def parse_blend_weights(text: str | None) -> Any:
    """--blend-weights over blend.DEFAULT (a BlendWeights); exit 2 with the reason when it
    does not parse."""
    from recommender.blend import BlendWeights

    try:
        return BlendWeights.parse(text or "")
    except ValueError as exc:
        typer.echo(f"error: {exc} (--blend-weights or {config.ENV_BLEND_WEIGHTS})", err=True)
        raise typer.Exit(2) from None


def recommend_blend() -> Any:
    return setting("api.recommend_blend", "--recommend-blend/--no-recommend-blend")


# --- VMIS-kNN -------------------------------------------------------------------------------
def vmis_m() -> Any:
    return setting("vmis.m", "--m", min=1)


def vmis_k() -> Any:
    return setting("vmis.k", "--k", min=1)


def vmis_how_many() -> Any:
    return setting("vmis.how_many", "--how-many", min=1)


def vmis_max_items() -> Any:
    return setting("vmis.max_items_in_session", "--max-session-items", min=0)


def vmis_idf_weighting() -> Any:
    return setting("vmis.idf_weighting", "--idf-weighting", min=0.0)


# --- generated traffic and reports ----------------------------------------------------------
def seed() -> Any:
    return setting("traffic.seed", "--seed")


def quiet() -> Any:
    return typer.Option(False, "--quiet", help="No progress bar.")


def speed(default: float | None = None) -> Any:
    return setting("traffic.speed", "--speed", min=0, default=_KEEP if default is None else default)


def sale_strength() -> Any:
    return typer.Option(0.6, "--sale-strength", min=0.0, max=1.0,
                        help="Share of new sessions that are sale sessions once the sale is on.")


def products() -> Any:
    return typer.Option(5000, "--products", min=100, help="Catalog size.")


def dataset_format(default: Any = ...) -> Any:
    return typer.Option(default, "--format", help="yoochoose | retailrocket | rees46 | diginetica.")


def jsonl_out() -> Any:
    return typer.Option(None, "--out", help="Write JSONL to this file instead of to Kafka.")


def delivery_timeout() -> Any:
    return typer.Option(30.0, "--delivery-timeout", min=1,
                        help="Seconds a message may wait for the broker's confirmation.")
