"""The event contract: validate_event agrees with `jsonschema` on clickstream.schema.json, adds
only the checks a schema cannot express (real date, time range, size), and rejects every kind of
malformed message with a reason."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import jsonschema
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recommender.events import (
    EARLIEST_TS,
    MAX_EVENT_BYTES,
    MAX_FUTURE,
    Rejected,
    format_ts,
    parse_ts,
    schema,
    validate_event,
)

NOW = datetime(2024, 6, 1, tzinfo=UTC)
VALIDATOR = jsonschema.Draft202012Validator(schema())
REQUIRED = schema()["required"]
STRICT_TS = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z")


def good() -> dict:
    return {
        "event_id": "e-1", "session_id": "s-1", "user_id": "u-1", "product_id": "P000001",
        "product_name": "Relaxed Wool Overcoat - Camel", "category": "outerwear",
        "action": "view", "ts": "2024-03-15T14:01:12.000Z", "device": "mobile", "price": 129.99,
    }


def beyond_schema_ok(raw: bytes, event: object) -> bool:
    """The checks validate_event makes that the JSON Schema cannot: size, real date, range."""
    if len(raw) > MAX_EVENT_BYTES:
        return False
    if not isinstance(event, dict) or not isinstance(event.get("ts"), str):
        return True  # the schema decides
    ts = event["ts"]
    if not STRICT_TS.fullmatch(ts):
        return not re.search(schema()["properties"]["ts"]["pattern"], ts)  # schema decides
    try:
        when = parse_ts(ts)
    except ValueError:
        return False
    return EARLIEST_TS <= when <= NOW + MAX_FUTURE


def agree(raw: bytes) -> None:
    result = validate_event(raw, now=NOW)
    event = orjson.loads(raw)
    expected = VALIDATOR.is_valid(event) and beyond_schema_ok(raw, event)
    assert isinstance(result, dict) == expected, (raw[:300], result)
    if isinstance(result, Rejected):
        assert result.reason


# --- property: agreement with jsonschema on the same file -----------------------------------

text = st.text(st.characters(exclude_categories=("Cs",)), max_size=140)
junk = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.floats(allow_nan=False),
    text, st.just(""), st.lists(st.integers(-1000, 1000), max_size=2),
    st.dictionaries(text, st.integers(-9, 9), max_size=1),
)
stamps = st.one_of(
    st.datetimes(datetime(1990, 1, 1), datetime(2035, 1, 1)).map(format_ts),
    st.datetimes(datetime(1990, 1, 1), datetime(2035, 1, 1)).map(
        lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")),
    st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,7})?Z\Z"),
    st.sampled_from(["2024-03-15 14:01:12", "2024-03-15T14:01:12+00:00", "2024-03-15T14:01Z",
                     "2024-03-15T14:01:12.000Z\n", "2024-02-30T10:00:00.000Z"]),
    junk,
)
field_values = {
    "action": st.one_of(st.sampled_from(["view", "add_to_cart", "purchase", "VIEW", "click"]),
                        junk),
    "device": st.one_of(st.sampled_from(["mobile", "desktop", "tablet", None, "tv"]), junk),
    "price": st.one_of(st.floats(-10, 2e7, allow_nan=False), st.integers(-5, 10**8), junk),
    "ts": stamps,
    "product_name": st.one_of(text, st.text(max_size=600), junk),
}


@st.composite
def events(draw) -> dict:
    event = good()
    for _ in range(draw(st.integers(0, 3))):  # mutate a few fields, sometimes none
        name = draw(st.sampled_from(sorted(good())))
        if draw(st.integers(0, 5)) == 0:
            event.pop(name, None)
        else:
            strategy = field_values.get(name, st.one_of(text, st.text(min_size=120,
                                                                       max_size=140), junk))
            event[name] = draw(strategy)
    if draw(st.booleans()):
        event[draw(text)] = draw(junk)  # additional properties are allowed
    return event


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events())
def test_validate_event_agrees_with_jsonschema(event: dict) -> None:
    agree(orjson.dumps(event))


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.lists(st.integers(), max_size=3), st.integers(), st.text(max_size=20),
                 st.none(), st.booleans()))
def test_non_objects_are_rejected(value) -> None:
    raw = json.dumps(value).encode()
    assert isinstance(validate_event(raw, now=NOW), Rejected)
    assert not VALIDATOR.is_valid(value)


def test_a_good_event_and_optional_fields() -> None:
    assert validate_event(orjson.dumps(good()), now=NOW) == good()
    minimal = {k: v for k, v in good().items() if k in REQUIRED}
    assert isinstance(validate_event(orjson.dumps(minimal), now=NOW), dict)
    assert isinstance(validate_event(orjson.dumps({**good(), "device": None, "price": None}),
                                     now=NOW), dict)
    assert isinstance(validate_event(json.dumps(good()), now=NOW), dict)  # str input works


def test_timestamp_format_round_trip() -> None:
    when = datetime(2024, 3, 15, 14, 1, 12, 345_678, tzinfo=UTC)
    assert format_ts(when) == "2024-03-15T14:01:12.345Z"
    assert parse_ts(format_ts(when)) == when.replace(microsecond=345_000)
    assert format_ts(when.astimezone(UTC).replace(tzinfo=None)) == format_ts(when)


# --- table: every malformed kind is rejected, with the reason --------------------------------


def mutated(**changes) -> bytes:
    event = good()
    for key, value in changes.items():
        if value is ...:
            del event[key]
        else:
            event[key] = value
    return orjson.dumps(event)


MALFORMED = [
    ("not JSON", b'{"event_id": "e", "action": view', "not valid JSON"),
    ("truncated", orjson.dumps(good())[:-10], "not valid JSON"),
    ("invalid UTF-8", b'{"event_id": "\xff\xfe"}', "not valid JSON"),
    ("empty message", b"", "not valid JSON"),
    ("NaN literal", orjson.dumps(good())[:-1] + b', "x": NaN}', "not valid JSON"),
    ("array", b"[1, 2]", "expected a JSON object"),
    ("string", b'"view"', "expected a JSON object"),
    ("null", b"null", "expected a JSON object"),
    *[(f"missing {f}", mutated(**{f: ...}), f"missing field(s): {f}") for f in REQUIRED],
    *[(f"{f} null", mutated(**{f: None}), f"field '{f}' is null") for f in REQUIRED],
    *[(f"{f} number", mutated(**{f: 7}), f"field '{f}' must be string") for f in REQUIRED],
    *[(f"{f} empty", mutated(**{f: ""}), f"field '{f}' is empty")
      for f in ("event_id", "session_id", "user_id", "product_id", "category")],
    ("session_id too long", mutated(session_id="s" * 129), "longer than 128"),
    ("product_name too long", mutated(product_name="n" * 513), "longer than 512"),
    ("unknown action", mutated(action="wishlist"), "unknown value 'wishlist'"),
    ("action wrong case", mutated(action="View"), "unknown value 'View'"),
    ("unknown device", mutated(device="smart-fridge"), "field 'device' has unknown value"),
    ("device number", mutated(device=1), "field 'device' must be string or null"),
    ("negative price", mutated(price=-1.5), "field 'price' is below 0"),
    ("price too high", mutated(price=10_000_001), "field 'price' is above"),
    ("price as string", mutated(price="12.50"), "field 'price' must be number or null"),
    ("price boolean", mutated(price=True), "field 'price' must be number or null"),
    ("ts with space", mutated(ts="2024-03-15 14:01:12.000Z"), "not ISO-8601 UTC"),
    ("ts with offset", mutated(ts="2024-03-15T14:01:12+01:00"), "not ISO-8601 UTC"),
    ("ts epoch", mutated(ts=1710511272), "field 'ts' must be string"),
    ("ts 7 fraction digits", mutated(ts="2024-03-15T14:01:12.0000000Z"), "not ISO-8601 UTC"),
    ("ts impossible date", mutated(ts="2024-02-30T10:00:00.000Z"), "not a real date"),
    ("ts hour 25", mutated(ts="2024-03-15T25:00:00.000Z"), "not a real date"),
    ("ts trailing newline", mutated(ts="2024-03-15T14:01:12.000Z\n"), "not a real date"),
    ("ts too old", mutated(ts="1999-12-31T23:59:59.999Z"), "before 2000-01-01"),
    ("ts far future", mutated(ts=format_ts(NOW + timedelta(days=2))), "in the future"),
    ("oversized", mutated(extra="x" * MAX_EVENT_BYTES), f"more than {MAX_EVENT_BYTES}"),
]


@pytest.mark.parametrize("raw, reason", [(r, m) for _, r, m in MALFORMED],
                         ids=[name for name, _, _ in MALFORMED])
def test_malformed_kind_is_rejected_with_reason(raw: bytes, reason: str) -> None:
    result = validate_event(raw, now=NOW)
    assert isinstance(result, Rejected)
    assert reason in result.reason, result.reason


@pytest.mark.parametrize("raw", [r for _, r, _ in MALFORMED], ids=[n for n, _, _ in MALFORMED])
def test_jsonschema_agrees_on_the_table(raw: bytes) -> None:
    """Where the raw bytes parse, jsonschema agrees (except the documented extra checks)."""
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return
    if beyond_schema_ok(raw, event):
        assert not VALIDATOR.is_valid(event)
    agree(raw)


def test_future_bound_is_one_day_after_now() -> None:
    assert isinstance(validate_event(mutated(ts=format_ts(NOW + timedelta(hours=23))), now=NOW),
                      dict)
    assert isinstance(validate_event(mutated(ts=format_ts(NOW + timedelta(hours=25))), now=NOW),
                      Rejected)
