"""The clickstream event contract: one JSON Schema file, one validator.

`clickstream.schema.json` is the definition. `validate_event` checks a raw Kafka value against
the constraints read from that file (a hand-written check, faster than a generic JSON Schema
validator; tests prove it agrees with `jsonschema` on the same file) plus the checks a schema
cannot express: a real calendar timestamp inside the accepted time range.

`validate_batch` gives the same answers for many messages at once, faster: a msgspec type built
from the same schema file checks each parsed event in C, and whatever it refuses goes through
`validate_event`, so reasons stay word for word the same.

`COLUMNS` and `column_types` are the schema's fields as the columns of a table of events (the
engine's store, PostgreSQL's raw clickstream, sql/010's RisingWave table), with SQL types
from each field's type or format.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache, lru_cache
from importlib import resources
from typing import Annotated, Any, Literal

import msgspec
import orjson

ACTIONS = ("view", "add_to_cart", "purchase")
DEVICES = ("mobile", "desktop", "tablet")
MAX_EVENT_BYTES = 16_384
EARLIEST_TS = datetime(2000, 1, 1, tzinfo=UTC)
# The schema's pattern for text without NUL (PostgreSQL text cannot hold one).
NO_NUL = "^[^\\u0000]*$"
MAX_FUTURE = timedelta(days=1)
# A session ends after this much inactivity: the serving session store, data sets without
# session ids (cut per visitor) and the intent scorer's open sessions all use it.
SESSION_GAP = timedelta(minutes=30)


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The JSON Schema of a clickstream event."""
    text = resources.files("recommender").joinpath("clickstream.schema.json").read_text()
    return json.loads(text)


# the event's fields in the schema's order: the columns of every table of events
COLUMNS: tuple[str, ...] = tuple(schema()["properties"])
# SQL type of an event field by what it holds (the schema's format, else its type) and by
# database: the engine's DuckDB store keeps times as naive UTC, PostgreSQL's raw table and
# sql/'s RisingWave table keep them with their time zone
SQL_TYPES: dict[str, dict[str, str]] = {
    "string": {"duckdb": "VARCHAR", "postgres": "text", "risingwave": "VARCHAR"},
    "date-time": {"duckdb": "TIMESTAMP", "postgres": "timestamptz", "risingwave": "TIMESTAMPTZ"},
    "number": {"duckdb": "DOUBLE", "postgres": "double precision",
               "risingwave": "DOUBLE PRECISION"},
}  # fmt: skip


def _kind(rule: dict[str, Any]) -> str:
    """What a schema property holds: its format, else its one type besides null."""
    if "format" in rule:
        return str(rule["format"])
    types = rule["type"] if isinstance(rule["type"], list) else [rule["type"]]
    (kind,) = [t for t in types if t != "null"]
    return str(kind)


@cache
def column_types(database: str = "duckdb") -> tuple[tuple[str, str], ...]:
    """(field, its SQL type in `database`: duckdb, postgres or risingwave) of every event
    field, in the schema's order."""
    return tuple((name, SQL_TYPES[_kind(rule)][database])
                 for name, rule in schema()["properties"].items())  # fmt: skip


@dataclass(frozen=True)
class Rejected:
    """Why a raw message is not a valid event (goes to the dead-letter topic)."""

    reason: str


@lru_cache(maxsize=1)
def _rules() -> tuple[tuple[str, ...], dict[str, dict[str, Any]], re.Pattern[str]]:
    s = schema()
    return tuple(s["required"]), s["properties"], re.compile(s["properties"]["ts"]["pattern"])


def parse_ts(value: str) -> datetime:
    """ISO-8601 UTC 'YYYY-MM-DDTHH:MM:SS[.ffffff]Z' to an aware datetime."""
    return datetime.fromisoformat(value[:-1] + "+00:00")


def format_ts(value: datetime) -> str:
    """An aware or naive-UTC datetime as the contract's ISO-8601 form with milliseconds."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _check_field(name: str, value: Any, rule: dict[str, Any]) -> str | None:
    types = rule["type"] if isinstance(rule["type"], list) else [rule["type"]]
    if value is None:
        return None if "null" in types else f"field '{name}' is null"
    if "string" in types and isinstance(value, str):
        if len(value) < rule.get("minLength", 0):
            return f"field '{name}' is empty"
        if len(value) > rule.get("maxLength", 1 << 30):
            return f"field '{name}' is longer than {rule['maxLength']} characters"
        if rule.get("pattern") == NO_NUL and "\x00" in value:
            return f"field '{name}' contains a NUL character (\\u0000)"
        if "enum" in rule and value not in rule["enum"]:
            allowed = ", ".join(v for v in rule["enum"] if v is not None)
            return f"field '{name}' has unknown value {value[:40]!r} (expected one of {allowed})"
        return None
    if "number" in types and isinstance(value, int | float) and not isinstance(value, bool):
        if value != value or value < rule.get("minimum", float("-inf")):
            return f"field '{name}' is below {rule.get('minimum')} or not a number"
        if value > rule.get("maximum", float("inf")):
            return f"field '{name}' is above {rule['maximum']}"
        return None
    expected = " or ".join(types)
    return f"field '{name}' must be {expected}, got {type(value).__name__}"


def validate_event(raw: bytes | str, now: datetime | None = None) -> dict[str, Any] | Rejected:
    """The event as a dict if `raw` satisfies the contract, else a `Rejected` with the reason.

    `now` (default: wall clock) bounds how far in the future `ts` may lie (MAX_FUTURE).
    """
    if len(raw) > MAX_EVENT_BYTES:
        return Rejected(f"message is {len(raw)} bytes, more than {MAX_EVENT_BYTES}")
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Rejected(f"not valid JSON: {exc}")
    if not isinstance(event, dict):
        return Rejected(f"expected a JSON object, got {type(event).__name__}")
    required, props, ts_pattern = _rules()
    missing = [f for f in required if f not in event]
    if missing:
        return Rejected(f"missing field(s): {', '.join(missing)}")
    for name, rule in props.items():
        if name in event:
            problem = _check_field(name, event[name], rule)
            if problem:
                return Rejected(problem)
    ts = event["ts"]
    if not ts_pattern.match(ts):
        return Rejected(f"field 'ts' is not ISO-8601 UTC like 2024-03-15T14:01:12.000Z: {ts!r}")
    try:
        when = parse_ts(ts)
    except ValueError:
        return Rejected(f"field 'ts' is not a real date and time: {ts!r}")
    if when < EARLIEST_TS:
        return Rejected(f"field 'ts' is before {EARLIEST_TS.date()}: {ts}")
    if when > (now or datetime.now(UTC)) + MAX_FUTURE:
        return Rejected(f"field 'ts' is more than {MAX_FUTURE} in the future: {ts}")
    return event


# --- batch validation: a msgspec fast path, validate_event for anything it refuses ------------

_RULE_KEYS = {"type", "minLength", "maxLength", "enum", "pattern", "minimum", "maximum",
              "description"}
# formats that only name what a string holds, where its pattern checks the values
_PATTERN_FORMATS = {"date-time"}


def _field_type(rule: dict[str, Any]) -> Any:
    """A msgspec type at least as strict as `_check_field` on `rule`."""
    unknown = set(rule) - _RULE_KEYS
    if rule.get("format") in _PATTERN_FORMATS and "pattern" in rule:
        unknown.discard("format")
    if unknown:  # a new kind of constraint: teach _check_field and this function first
        raise ValueError(f"no fast-path rule for schema keyword(s) {sorted(unknown)}")
    types = rule["type"] if isinstance(rule["type"], list) else [rule["type"]]
    low, high = rule.get("minLength", 0), rule.get("maxLength", 1 << 30)
    choices: list[Any] = []
    if "string" in types and "enum" in rule:
        words = tuple(v for v in rule["enum"] if isinstance(v, str) and low <= len(v) <= high)
        if words:
            choices.append(Literal[words])  # type: ignore[valid-type]
    elif "string" in types:
        choices.append(Annotated[str, msgspec.Meta(min_length=low, max_length=high)])
    if "number" in types:  # float takes ints too; bools, NaN and inf are refused
        bounds = {k: rule[j] for k, j in (("ge", "minimum"), ("le", "maximum")) if j in rule}
        choices.append(Annotated[float, msgspec.Meta(**bounds)] if bounds else float)
    if "null" in types:
        choices.append(None)
    if not choices or set(types) - {"string", "number", "null"}:
        raise ValueError(f"no fast-path type for schema rule {rule}")
    result = choices[0]
    for choice in choices[1:]:
        result = result | choice
    return result


@lru_cache(maxsize=1)
def _event_type() -> type[msgspec.Struct]:
    """A Struct of the schema's properties: required ones without default, unknown keys ignored
    (additional properties stay in the parsed dict, which is what gets returned)."""
    required, props, _ = _rules()
    if set(required) - set(props):
        raise ValueError("a required field has no properties rule")
    fields = [(name, _field_type(rule)) if name in required
              else (name, _field_type(rule), None) for name, rule in props.items()]
    fields.sort(key=len)  # msgspec wants the fields without default first
    return msgspec.defstruct("FastEvent", fields, gc=False)


def validate_batch(
    values: Sequence[bytes | None], now: datetime | None = None
) -> list[dict[str, Any] | Rejected]:
    """`validate_event(value, now)` for each value (one `now` for the batch, default: the wall
    clock once), and `Rejected("empty message (no value)")` for None or empty values."""
    now = now or datetime.now(UTC)
    latest = now + MAX_FUTURE
    event_type = _event_type()
    ts_match = _rules()[2].match
    loads, convert = orjson.loads, msgspec.convert
    out: list[dict[str, Any] | Rejected] = []
    append = out.append
    for value in values:
        if not value:
            append(Rejected("empty message (no value)"))
            continue
        # The fast path only accepts; every doubt goes to validate_event for its exact reason.
        # It does not check NO_NUL: a NUL can only come escaped, so such values go the slow way.
        nul = "\\u0000" if isinstance(value, str) else b"\\u0000"
        if len(value) <= MAX_EVENT_BYTES and nul not in value:
            try:
                event = loads(value)
                convert(event, event_type)
                ts = event["ts"]
                if ts_match(ts) and EARLIEST_TS <= parse_ts(ts) <= latest:
                    append(event)
                    continue
            except (orjson.JSONDecodeError, msgspec.ValidationError, ValueError):
                pass
        append(validate_event(value, now))
    return out
