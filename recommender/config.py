"""Settings of every command, grouped by concern, and where each one's value comes from.

A setting has one name in the settings file (`[group]` then `name = value`, TOML) and one
environment variable. Its value is the first found of: the command-line flag, the environment
variable (or a deprecated name of it, with a warning), the settings file (`--config FILE` or
FLASHREC_CONFIG), the default. `resolve` decides all but the flag; the commands hand its answer
to click as the default, which a flag overrides (recommender/commands/options.py).
"""

from __future__ import annotations

import logging
import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recommender.events import SESSION_GAP
from udfs.params import VmisParams

if TYPE_CHECKING:
    from recommender.blend import BlendWeights

log = logging.getLogger("flashrec.config")

PROJECT_ROOT = Path(__file__).resolve().parent.parent

ENV_CONFIG = "FLASHREC_CONFIG"

# kafka: where the clickstream is
ENV_BOOTSTRAP = "FLASHREC_BOOTSTRAP_SERVERS"
ENV_TOPIC = "FLASHREC_TOPIC"
ENV_DLQ_TOPIC = "FLASHREC_DLQ_TOPIC"
ENV_VALID_TOPIC = "FLASHREC_VALID_TOPIC"
ENV_PARTITIONS = "FLASHREC_PARTITIONS"
DEFAULT_BROKER_PORT = 9092
DEFAULT_BOOTSTRAP = f"127.0.0.1:{DEFAULT_BROKER_PORT}"
DEFAULT_TOPIC = "clickstream"
DEFAULT_DLQ_TOPIC = "clickstream_dlq"
# The validated clickstream `flashrec relay` writes and RisingWave reads (production path)
DEFAULT_VALID_TOPIC = "clickstream_valid"
# Partitions of the topics flashrec creates: one engine reads them all (docs/producers.md).
DEFAULT_PARTITIONS = 1

# broker: the local broker of `flashrec up` and `flashrec broker`
ENV_BROKER_PORT = "FLASHREC_BROKER_PORT"
ENV_BROKER_STORAGE = "FLASHREC_BROKER_STORAGE"
ENV_BROKER_WAIT = "FLASHREC_BROKER_WAIT"
# the embedded broker keeps its log on disk (DATA_DIR/broker), trimmed to what readers need
DEFAULT_BROKER_STORAGE = "disk"

# postgres: where the views are published
ENV_PG_DSN = "FLASHREC_PG_DSN"
ENV_PG_PORT = "FLASHREC_PG_PORT"
ENV_PG_SHARED_BUFFERS = "FLASHREC_PG_SHARED_BUFFERS"
DEFAULT_PG_PORT = 5433
DEFAULT_PG_SHARED_BUFFERS = "1GB"  # the local PostgreSQL's buffer cache

# engine: the embedded streaming engine of `flashrec up`
ENV_CLOCK = "FLASHREC_CLOCK"
ENV_REFRESH_INTERVAL = "FLASHREC_REFRESH_INTERVAL"
ENV_ENGINE_GROUP = "FLASHREC_ENGINE_GROUP"
ENV_BACKGROUND_INTERVAL = "FLASHREC_BACKGROUND_INTERVAL"
ENV_BACKGROUND_SHARE = "FLASHREC_BACKGROUND_SHARE"
ENV_BACKGROUND_PROCESS = "FLASHREC_BACKGROUND_PROCESS"
ENV_UNLOGGED_VIEWS = "FLASHREC_UNLOGGED_VIEWS"
ENV_DUCKDB_THREADS = "FLASHREC_DUCKDB_THREADS"
ENV_REINDEX_INTERVAL = "FLASHREC_REINDEX_INTERVAL"
# The most of the time the customer views' refreshes take (docs/production.md, Tuning).
DEFAULT_BACKGROUND_SHARE = 0.2

# api and udf: the recommendation API and the UDF server
ENV_API_PORT = "FLASHREC_API_PORT"
ENV_SESSION_TTL = "FLASHREC_SESSION_TTL"
ENV_BLEND_WEIGHTS = "FLASHREC_BLEND_WEIGHTS"
ENV_RECOMMEND_BLEND = "FLASHREC_RECOMMEND_BLEND"
ENV_UDF_PORT = "FLASHREC_UDF_PORT"
ENV_UDF_LINK = "FLASHREC_UDF_LINK"
DEFAULT_API_PORT = 8080
DEFAULT_UDF_PORT = 8815

# risingwave: `flashrec deploy`
ENV_RW_DSN = "FLASHREC_RW_DSN"
ENV_DEPLOY_WAIT = "FLASHREC_DEPLOY_WAIT"
DEFAULT_RW_DSN = "postgresql://root@localhost:4566/dev"

# vmis: VMIS-kNN (defaults in udfs.params.VmisParams)
ENV_VMIS_M = "FLASHREC_VMIS_M"
ENV_VMIS_K = "FLASHREC_VMIS_K"
ENV_VMIS_MAX_ITEMS = "FLASHREC_VMIS_MAX_ITEMS"
ENV_VMIS_HOW_MANY = "FLASHREC_VMIS_HOW_MANY"
ENV_VMIS_IDF_WEIGHTING = "FLASHREC_VMIS_IDF_WEIGHTING"

# evaluate: `flashrec evaluate`
ENV_EVAL_TRAIN = "FLASHREC_EVAL_TRAIN"
ENV_EVAL_TEST = "FLASHREC_EVAL_TEST"
ENV_EVAL_CUTOFF = "FLASHREC_EVAL_CUTOFF"

# traffic: the generated and replayed clickstream
ENV_SEED = "FLASHREC_SEED"
ENV_PRODUCE_SEED = "FLASHREC_PRODUCE_SEED"  # deprecated name of FLASHREC_SEED
ENV_PRODUCE_RATE = "FLASHREC_PRODUCE_RATE"
ENV_PRODUCE_SPEED = "FLASHREC_PRODUCE_SPEED"

# experiment: `flashrec experiment`
ENV_EXPERIMENT_SEED = "FLASHREC_EXPERIMENT_SEED"  # deprecated name of FLASHREC_SEED
ENV_EXPERIMENT_OUT = "FLASHREC_EXPERIMENT_OUT"
ENV_EXPERIMENT_RATE = "FLASHREC_EXPERIMENT_RATE"
ENV_EXPERIMENT_REFRESH = "FLASHREC_EXPERIMENT_REFRESH"

# intent: `flashrec intent` and the live scorer of `flashrec up`
ENV_INTENT_DATA = "FLASHREC_INTENT_DATA"
ENV_INTENT_MODEL_DIR = "FLASHREC_INTENT_MODEL_DIR"
ENV_INTENT = "FLASHREC_INTENT"  # `flashrec up --intent/--no-intent`

# paths and logging
ENV_DATA_DIR = "FLASHREC_DATA_DIR"
ENV_SQL_DIR = "FLASHREC_SQL_DIR"
ENV_LOG_LEVEL = "FLASHREC_LOG_LEVEL"
DEFAULT_DATA_DIR = Path(".flashrec")
SQL_DIR = Path(os.environ.get(ENV_SQL_DIR) or PROJECT_ROOT / "sql")

_VMIS = VmisParams()
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


@dataclass(frozen=True)
class Setting:
    """One setting: its name in the settings file, its environment variable, its default."""

    key: str  # "group.name"
    env: str
    default: Any
    help: str  # one line, also the flag's --help
    kind: type = str  # int, float, bool, str or Path
    deprecated: tuple[str, ...] = ()  # older environment names, still read (with a warning)


def _group(group: str, *rows: tuple) -> dict[str, Setting]:
    out = {}
    for name, env_name, default, text, kind, *deprecated in rows:
        key = f"{group}.{name}"
        out[key] = Setting(key, env_name, default, text, kind, tuple(deprecated))
    return out


SETTINGS: dict[str, Setting] = {
    **_group(
        "kafka",
        ("bootstrap_servers", ENV_BOOTSTRAP, None,
         "Kafka/Redpanda bootstrap servers (host:port[,host:port]).", str),
        ("topic", ENV_TOPIC, DEFAULT_TOPIC, "Clickstream topic.", str),
        ("dlq_topic", ENV_DLQ_TOPIC, DEFAULT_DLQ_TOPIC,
         "Dead-letter topic for refused messages.", str),
        ("valid_topic", ENV_VALID_TOPIC, DEFAULT_VALID_TOPIC,
         "Topic of the validated events RisingWave reads.", str),
        ("partitions", ENV_PARTITIONS, DEFAULT_PARTITIONS,
         "Partitions of the topics flashrec creates.", int),
    ),
    **_group(
        "broker",
        ("port", ENV_BROKER_PORT, DEFAULT_BROKER_PORT, "Port of the local broker on 127.0.0.1.",
         int),
        ("storage", ENV_BROKER_STORAGE, DEFAULT_BROKER_STORAGE,
         "Where the local broker keeps events: disk or memory.", str),
        ("wait", ENV_BROKER_WAIT, 20.0, "Seconds to wait for the broker to answer.", float),
    ),
    **_group(
        "postgres",
        ("dsn", ENV_PG_DSN, None, "PostgreSQL DSN of the views.", str),
        ("port", ENV_PG_PORT, DEFAULT_PG_PORT, "Port of the local PostgreSQL on 127.0.0.1.", int),
        ("shared_buffers", ENV_PG_SHARED_BUFFERS, DEFAULT_PG_SHARED_BUFFERS,
         "Buffer cache of the local PostgreSQL (e.g. 512MB, 2GB).", str),
    ),
    **_group(
        "engine",
        ("clock", ENV_CLOCK, "wall",
         "NOW() of the views: wall (current time) or event (newest event time).", str),
        ("refresh_interval", ENV_REFRESH_INTERVAL, 0.5, "Seconds between view refreshes.", float),
        ("group_id", ENV_ENGINE_GROUP, "flashrec-engine", "Kafka consumer group of the engine.",
         str),
        ("background_interval", ENV_BACKGROUND_INTERVAL, 30.0,
         "Seconds between refreshes of the customer views (0: with every refresh).", float),
        ("background_share", ENV_BACKGROUND_SHARE, DEFAULT_BACKGROUND_SHARE,
         "Most of the time spent refreshing the customer views (1: only the interval).", float),
        ("background_process", ENV_BACKGROUND_PROCESS, False,
         "Refresh the customer views in a child process instead of a thread.", bool),
        ("unlogged_views", ENV_UNLOGGED_VIEWS, False,
         "Keep the views without a change feed in UNLOGGED tables (no WAL).", bool),
        ("duckdb_threads", ENV_DUCKDB_THREADS, 1,
         "Threads of the engine's DuckDB (0: one per core).", int),
        ("reindex_interval", ENV_REINDEX_INTERVAL, 600.0,
         "Seconds between checks that rebuild view table indexes grown to twice their lean "
         "size (0: never).", float),
    ),
    **_group(
        "api",
        ("port", ENV_API_PORT, DEFAULT_API_PORT, "HTTP port of the recommendation API.", int),
        ("session_ttl", ENV_SESSION_TTL, SESSION_GAP.total_seconds(),
         "Seconds of inactivity after which a session starts afresh.", float),
        ("blend_weights", ENV_BLEND_WEIGHTS, "",
         "Blend weights, name=value,... (docs/api.md): vmis, coview, trending, popular, "
         "repeat, ...", str),
        ("recommend_blend", ENV_RECOMMEND_BLEND, False,
         "GET /v1/recommend answers the blend instead of pure VMIS-kNN.", bool),
    ),
    **_group(
        "udf",
        ("port", ENV_UDF_PORT, DEFAULT_UDF_PORT, "Arrow Flight port of the UDF server.", int),
        ("link", ENV_UDF_LINK, None,
         "Address of `flashrec udf-server` as RisingWave reaches it (http://udf:8815).", str),
    ),
    **_group(
        "risingwave",
        ("dsn", ENV_RW_DSN, DEFAULT_RW_DSN, "RisingWave SQL endpoint (PostgreSQL wire).", str),
        ("wait", ENV_DEPLOY_WAIT, 120.0,
         "Seconds to keep retrying until RisingWave is ready (0: try once).", float),
    ),
    **_group(
        "vmis",
        ("m", ENV_VMIS_M, _VMIS.m, "Most recent sessions per item considered.", int),
        ("k", ENV_VMIS_K, _VMIS.k, "Neighbour sessions used per recommendation.", int),
        ("how_many", ENV_VMIS_HOW_MANY, _VMIS.how_many, "Items recommended.", int),
        ("max_items_in_session", ENV_VMIS_MAX_ITEMS, _VMIS.max_items_in_session,
         "Newest clicks of a session used (0: all).", int),
        ("idf_weighting", ENV_VMIS_IDF_WEIGHTING, _VMIS.idf_weighting,
         "Factor on the items' idf (0: no idf).", float),
    ),
    **_group(
        "evaluate",
        ("train", ENV_EVAL_TRAIN, None, "Training clicks: TSV SessionId, ItemId, Time.", Path),
        ("test", ENV_EVAL_TEST, None, "Test clicks, same format.", Path),
        ("cutoff", ENV_EVAL_CUTOFF, 20, "Cut-off c of MRR@c, HitRate@c, Precision@c.", int),
    ),
    **_group(
        "traffic",
        ("seed", ENV_SEED, 42, "Seed of the generated traffic (same seed, same events).", int,
         ENV_PRODUCE_SEED, ENV_EXPERIMENT_SEED),
        ("rate", ENV_PRODUCE_RATE, 200.0, "Events per second of event time.", float),
        ("speed", ENV_PRODUCE_SPEED, 1.0,
         "Pacing: 1 = real time, 60 = a minute per second, 0 = as fast as possible.", float),
    ),
    **_group(
        "experiment",
        ("out", ENV_EXPERIMENT_OUT, DEFAULT_DATA_DIR / "experiment",
         "Folder of report.md, summary.json and the plots.", Path),
        ("rate", ENV_EXPERIMENT_RATE, 4.0, "Shop size: events per second of event time.", float),
        ("refresh_s", ENV_EXPERIMENT_REFRESH, 30.0,
         "Seconds of event time between recomputes of the live views.", float),
    ),
    **_group(
        "intent",
        ("enabled", ENV_INTENT, True, "Score live sessions' purchase intent.", bool),
        ("data", ENV_INTENT_DATA, None, "Events to train on.", str),
        ("model_dir", ENV_INTENT_MODEL_DIR, None,
         "Folder of the intent models (default: DATA_DIR/intent_models).", Path),
    ),
    **_group(
        "paths",
        ("data_dir", ENV_DATA_DIR, DEFAULT_DATA_DIR, "Folder of flashrec's state.", Path),
        ("sql_dir", ENV_SQL_DIR, None, "Folder of the .sql files (default: sql/).", Path),
    ),
    **_group(
        "logging",
        ("level", ENV_LOG_LEVEL, "INFO", "Logging level (DEBUG, INFO, WARNING...).", str),
    ),
}  # fmt: skip

BY_ENV: dict[str, Setting] = {s.env: s for s in SETTINGS.values()}

_file: dict[str, Any] = {}  # "path" and "values" of the settings file in use
_warned: set[str] = set()


def parse(setting: Setting, raw: Any, where: str = "") -> Any:
    """`raw` (text from the environment, or a TOML value) as the setting's type."""
    where = where or setting.key
    kind = setting.kind
    if kind is bool and isinstance(raw, str) and raw.strip().lower() in TRUE_WORDS + FALSE_WORDS:
        return raw.strip().lower() in TRUE_WORDS
    if isinstance(raw, bool) != (kind is bool):
        raise ValueError(f"{where}: {raw!r} is not a valid {kind.__name__}")
    try:
        if kind is int and isinstance(raw, float):
            raise ValueError
        return kind(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {raw!r} is not a valid {kind.__name__}") from None


def read_settings_file(path: Path) -> dict[str, Any]:
    """The settings of a TOML file as {"group.name": value}; unknown names are an error."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ValueError(f"cannot read settings file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"settings file {path}: {exc}") from None
    out: dict[str, Any] = {}
    for group, table in data.items():
        if not isinstance(table, dict):
            raise ValueError(f"settings file {path}: {group} must be a [{group}] table")
        for name, raw in table.items():
            key = f"{group}.{name}"
            if key not in SETTINGS:
                known = [k for k in SETTINGS if k.startswith(f"{group}.")] or sorted(
                    {k.split(".")[0] for k in SETTINGS})
                raise ValueError(f"settings file {path}: unknown setting {key} (known: "
                                 f"{', '.join(known)})")
            out[key] = parse(SETTINGS[key], raw, f"settings file {path}: {key}")
    return out


def use_settings_file(path: Path | None) -> None:
    """Read settings from this TOML file from now on (None: from no file)."""
    _file["values"] = read_settings_file(Path(path)) if path else {}
    _file["path"] = path


def settings_file() -> dict[str, Any]:
    """The values of the settings file in use: the last `use_settings_file`, else
    FLASHREC_CONFIG."""
    if "values" not in _file:
        use_settings_file(Path(os.environ[ENV_CONFIG]) if os.environ.get(ENV_CONFIG) else None)
    return _file["values"]


def resolve(key: str) -> tuple[Any, str]:
    """The value of setting `key` and where it comes from, first found of: its environment
    variable, a deprecated name of it (logged), the settings file, its default. Environment
    values are text; the others have the setting's type."""
    setting = SETTINGS[key]
    for name in (setting.env, *setting.deprecated):
        raw = os.environ.get(name, "")
        if raw:
            if name != setting.env and name not in _warned:
                _warned.add(name)
                log.warning("%s is deprecated: set %s instead", name, setting.env)
            return raw, name
    values = settings_file()
    if key in values:
        return values[key], "file"
    return setting.default, "default"


def value(key: str) -> Any:
    """The value of setting `key` (`resolve`), as its type."""
    raw, source = resolve(key)
    return raw if source in ("file", "default") else parse(SETTINGS[key], raw, source)


def env(name: str, default: str) -> str:
    """The environment variable `name`, or `default` when unset or empty."""
    found = os.environ.get(name, "")
    return found if found else default


def bootstrap_servers() -> str:
    return value("kafka.bootstrap_servers") or DEFAULT_BOOTSTRAP


def data_dir() -> Path:
    return Path(value("paths.data_dir"))


def setup_logging(level: str | None = None, process: str = "") -> None:
    """Log lines with time, level, `process` (a child's name, when given) and component to
    stderr."""
    logging.basicConfig(
        level=(level or value("logging.level")).upper(),
        format=f"%(asctime)s %(levelname)-7s {process + ' ' if process else ''}%(name)s: "
        "%(message)s",
    )


def blend_weights() -> BlendWeights:
    """The blend's weights from the `api.blend_weights` setting, over blend.DEFAULT (names
    left out keep their default); a bad setting raises ValueError."""
    from recommender.blend import BlendWeights

    return BlendWeights.parse(value("api.blend_weights") or "")


def vmis_params() -> VmisParams:
    """VMIS-kNN's parameters from the `vmis` settings: environment, then the settings file,
    then VmisParams' defaults."""
    return VmisParams(**{f.name: value(f"vmis.{f.name}") for f in fields(VmisParams)})
