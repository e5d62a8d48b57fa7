"""Settings shared by every command: defaults, overridable by environment variables.

Each CLI flag that has an environment variable names it in its --help (typer `envvar=`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

ENV_BOOTSTRAP = "FLASHREC_BOOTSTRAP_SERVERS"
ENV_TOPIC = "FLASHREC_TOPIC"
ENV_DLQ_TOPIC = "FLASHREC_DLQ_TOPIC"
ENV_VALID_TOPIC = "FLASHREC_VALID_TOPIC"
ENV_PG_DSN = "FLASHREC_PG_DSN"
ENV_DATA_DIR = "FLASHREC_DATA_DIR"
ENV_LOG_LEVEL = "FLASHREC_LOG_LEVEL"

DEFAULT_BROKER_PORT = 9092
DEFAULT_BOOTSTRAP = f"127.0.0.1:{DEFAULT_BROKER_PORT}"
DEFAULT_TOPIC = "clickstream"
DEFAULT_DLQ_TOPIC = "clickstream_dlq"
# The validated clickstream `flashrec relay` writes and RisingWave reads (production path)
DEFAULT_VALID_TOPIC = "clickstream_valid"
# Partitions of the topics flashrec creates. One: one engine reads them all, and the embedded
# broker's CPU grows with the record batches it holds, which each partition multiplies for
# keyed traffic (docs/producers.md). Production topics come from docker-compose.yml.
DEFAULT_PARTITIONS = 1
DEFAULT_PG_PORT = 5433
# The most of the time the customer views' refreshes take. 0.2: at the full window at 5,000
# events/s their refreshes slowed the main views less than at 0.5, in two pairs of runs; they
# lag more there (30-day look-backs), and at lower rates the interval decides (docs/benchmarks.md)
DEFAULT_BACKGROUND_SHARE = 0.2
DEFAULT_PG_SHARED_BUFFERS = "1GB"  # the local PostgreSQL's buffer cache (docs/benchmarks.md)
DEFAULT_API_PORT = 8080
DEFAULT_DATA_DIR = Path(".flashrec")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENV_SQL_DIR = "FLASHREC_SQL_DIR"
SQL_DIR = Path(os.environ.get(ENV_SQL_DIR) or PROJECT_ROOT / "sql")


def env(name: str, default: str) -> str:
    """The environment variable `name`, or `default` when unset or empty."""
    value = os.environ.get(name, "")
    return value if value else default


def bootstrap_servers() -> str:
    return env(ENV_BOOTSTRAP, DEFAULT_BOOTSTRAP)


def data_dir() -> Path:
    return Path(env(ENV_DATA_DIR, str(DEFAULT_DATA_DIR)))


def setup_logging(level: str | None = None, process: str = "") -> None:
    """Log lines with time, level, `process` (a child's name, when given) and component to
    stderr."""
    logging.basicConfig(
        level=(level or env(ENV_LOG_LEVEL, "INFO")).upper(),
        format=f"%(asctime)s %(levelname)-7s {process + ' ' if process else ''}%(name)s: "
        "%(message)s",
    )

# VMIS-kNN parameters and `flashrec evaluate` inputs (Serenade's defaults live in udfs.vmisknn)
ENV_VMIS_M = "FLASHREC_VMIS_M"
ENV_VMIS_K = "FLASHREC_VMIS_K"
ENV_VMIS_MAX_ITEMS = "FLASHREC_VMIS_MAX_ITEMS"
ENV_VMIS_HOW_MANY = "FLASHREC_VMIS_HOW_MANY"
ENV_VMIS_IDF_WEIGHTING = "FLASHREC_VMIS_IDF_WEIGHTING"
ENV_EVAL_TRAIN = "FLASHREC_EVAL_TRAIN"
ENV_EVAL_TEST = "FLASHREC_EVAL_TEST"
ENV_EVAL_CUTOFF = "FLASHREC_EVAL_CUTOFF"

# `flashrec broker` and the producers (`flashrec produce flash-sale`, `flashrec replay`)
ENV_BROKER_PORT = "FLASHREC_BROKER_PORT"
ENV_PARTITIONS = "FLASHREC_PARTITIONS"
ENV_BROKER_STORAGE = "FLASHREC_BROKER_STORAGE"
# the embedded broker keeps its log on disk (DATA_DIR/broker), trimmed to what readers need
DEFAULT_BROKER_STORAGE = "disk"
ENV_BROKER_WAIT = "FLASHREC_BROKER_WAIT"
ENV_PRODUCE_SEED = "FLASHREC_PRODUCE_SEED"
ENV_PRODUCE_RATE = "FLASHREC_PRODUCE_RATE"
ENV_PRODUCE_SPEED = "FLASHREC_PRODUCE_SPEED"

# `flashrec up` and the embedded engine (issue 4)
ENV_PG_PORT = "FLASHREC_PG_PORT"
ENV_PG_SHARED_BUFFERS = "FLASHREC_PG_SHARED_BUFFERS"
ENV_CLOCK = "FLASHREC_CLOCK"
ENV_REFRESH_INTERVAL = "FLASHREC_REFRESH_INTERVAL"
ENV_ENGINE_GROUP = "FLASHREC_ENGINE_GROUP"
ENV_BACKGROUND_INTERVAL = "FLASHREC_BACKGROUND_INTERVAL"
ENV_BACKGROUND_PROCESS = "FLASHREC_BACKGROUND_PROCESS"
ENV_UNLOGGED_VIEWS = "FLASHREC_UNLOGGED_VIEWS"
ENV_BACKGROUND_SHARE = "FLASHREC_BACKGROUND_SHARE"
ENV_DUCKDB_THREADS = "FLASHREC_DUCKDB_THREADS"

# `flashrec intent` (issue 7)
ENV_INTENT_DATA = "FLASHREC_INTENT_DATA"
ENV_INTENT_MODEL_DIR = "FLASHREC_INTENT_MODEL_DIR"
ENV_INTENT = "FLASHREC_INTENT"  # `flashrec up --intent/--no-intent`

# `flashrec experiment` (issue 8)
ENV_EXPERIMENT_SEED = "FLASHREC_EXPERIMENT_SEED"
ENV_EXPERIMENT_OUT = "FLASHREC_EXPERIMENT_OUT"
ENV_EXPERIMENT_RATE = "FLASHREC_EXPERIMENT_RATE"
ENV_EXPERIMENT_REFRESH = "FLASHREC_EXPERIMENT_REFRESH"
