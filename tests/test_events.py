"""The event contract: validate_event agrees with `jsonschema` on clickstream.schema.json, adds
only the checks a schema cannot express (real date, time range, size), and rejects every kind of
malformed message with a reason."""

from __future__ import annotations

import json
import random
import re
from datetime import UTC, datetime, timedelta

import jsonschema
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from producers.flash_sale import FlashSaleConfig, generate
from recommender import events as events_module
from recommender.events import (
    EARLIEST_TS,
    MAX_EVENT_BYTES,
    MAX_FUTURE,
    Rejected,
    _field_type,
    format_ts,
    parse_ts,
    schema,
    validate_batch,
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


# --- validate_batch: the fast path gives exactly validate_event's answers --------------------


def one_by_one(values: list, now: datetime | None = NOW) -> list:
    """What the engine did per message before validate_batch."""
    return [Rejected("empty message (no value)") if not v else validate_event(v, now)
            for v in values]


def assert_same(values: list, now: datetime = NOW) -> list:
    got = validate_batch(values, now)
    want = one_by_one(values, now)
    assert len(got) == len(want)
    for value, g, w in zip(values, got, want, strict=True):
        assert g == w, (value[:200] if value else value, g, w)
        assert type(g) is type(w)
    return got


def test_batch_matches_on_the_malformed_table() -> None:
    values = [r for _, r, _ in MALFORMED] + [None, b"", orjson.dumps(good()), json.dumps(good())]
    got = assert_same(values)
    assert got[-4] == got[-3] == Rejected("empty message (no value)")
    assert got[-2] == good() and got[-1] == good()


def test_batch_matches_on_flash_sale_traffic() -> None:
    cfg = FlashSaleConfig(seed=5, events=3000, malformed_share=0.05, bot_share=0.05)
    values = [v if isinstance(v, bytes) else orjson.dumps(v) for v in generate(cfg)]
    got = assert_same(values)
    assert sum(isinstance(g, dict) for g in got) == 3000
    assert sum(isinstance(g, Rejected) for g in got) > 50
    # a clock a day before the middle event: the later half is now "in the future"
    middle = [v for v in got if isinstance(v, dict)][1500]["ts"]
    got = assert_same(values, now=parse_ts(middle) - MAX_FUTURE)
    assert 0 < sum(isinstance(g, dict) for g in got) < 3000


def test_valid_events_take_the_fast_path(monkeypatch) -> None:
    """The agreement tests mean something only if valid events skip validate_event."""
    calls: list = []
    monkeypatch.setattr(events_module, "validate_event", lambda *a: calls.append(a))
    values = [orjson.dumps(e) for e in generate(FlashSaleConfig(seed=6, events=500))]
    got = validate_batch(values, NOW)
    assert calls == [] and all(isinstance(g, dict) for g in got)


def test_batch_uses_one_wall_clock_when_now_is_none() -> None:
    soon = mutated(ts=format_ts(datetime.now(UTC) + timedelta(hours=23)))
    late = mutated(ts=format_ts(datetime.now(UTC) + timedelta(hours=25)))
    got = validate_batch([soon, late])
    assert isinstance(got[0], dict) and isinstance(got[1], Rejected)


def test_fast_path_types_come_from_the_schema() -> None:
    """No limit is restated: the msgspec type is built from the schema file, and a schema
    keyword the fast path does not know stops it instead of being skipped."""
    fast = events_module._event_type()
    props = schema()["properties"]
    assert set(fast.__struct_fields__) == set(props)
    defaults = dict(zip(fast.__struct_fields__[-len(fast.__struct_defaults__):],
                        fast.__struct_defaults__, strict=True))
    assert set(props) - set(defaults) == set(REQUIRED)
    for rule in ({"type": "string", "format": "email"}, {"type": "integer"},
                 {"type": "array"}, {"type": ["string", "object"]}):
        with pytest.raises(ValueError):
            _field_type(rule)


STRING_FIELDS = [n for n, r in schema()["properties"].items() if "string" in r["type"]]
ODD_VALUES = [None, True, False, 0, -1, 1.5, 2**63, "", [], {}, [1, "a"], {"a": 1}, "null",
              "x" * 20_000]


def random_value(rng: random.Random, name: str, rule: dict) -> object:
    """A value for field `name`: near its limits, of another type, or odd."""
    kind = rng.randrange(8)
    if kind == 0:
        return rng.choice(ODD_VALUES)
    if kind == 1 and "maxLength" in rule:  # lengths at the limit, counted in characters
        n = rule["maxLength"] + rng.choice([-1, 0, 0, 1])
        return "".join(rng.choice("aé€😀") for _ in range(n))
    if kind == 2 and name == "ts":
        return rng.choice([
            "2024-03-15 14:01:12.000Z", "2024-03-15T14:01:12+00:00", "2024-03-15T14:01:12z",
            "2024-03-15T14:01:12.000Z\n", "2024-03-15T14:01:12.0000000Z", "2024-02-29T10:00:00Z",
            "2023-02-29T10:00:00Z", "2024-13-01T00:00:00Z", "2024-03-15T24:00:00Z",
            "2024-03-15T14:01:60Z", "1999-12-31T23:59:59.999999Z", "2000-01-01T00:00:00Z",
            format_ts(NOW + MAX_FUTURE), format_ts(NOW + MAX_FUTURE + timedelta(milliseconds=1)),
            "0000-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z", "２０２４-03-15T14:01:12Z",
            "2024-03-15T14:01:12.Z", "2024-03-15T14:01:12.123456Z"])
    if kind == 3 and "enum" in rule:
        return rng.choice([*rule["enum"], "VIEW", "click", " view", "view\u0000", "mobile",
                           "view", "purchase"])
    if kind == 4 and "number" in rule["type"]:
        return rng.choice([0, -0.0, -1e-9, 1e7, 1e7 + 0.01, 10_000_000, 10_000_001, 2**53,
                           2**64, 1e308, 129.99, 5, True, "12.5"])
    if kind == 5 and name in STRING_FIELDS:
        return rng.choice(["", "a", " ", "\u0000", "a\nb", "\ud7ff", "x" * 129, "x" * 513])
    return good()[name] if name in good() else "v"


def dumps(rng: random.Random, event: dict) -> bytes:
    """JSON with or without \\u escapes for non-ASCII (json: ints beyond 64 bits too)."""
    return json.dumps(event, ensure_ascii=rng.random() < 0.3).encode()


def raw_mutation(rng: random.Random, raw: bytes) -> bytes:
    """Byte-level damage: invalid UTF-8, duplicate keys, truncation, size, non-objects."""
    kind = rng.randrange(8)
    if kind == 0:
        at = rng.randrange(len(raw))
        return raw[:at] + rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00"]) + raw[at:]
    if kind == 1:  # duplicate key: the last one wins in orjson
        name = rng.choice(sorted(schema()["properties"]))
        dup = dumps(rng, {name: random_value(rng, name, schema()["properties"][name])})[1:-1]
        return (raw[:-1] + b"," + dup + b"}") if rng.random() < 0.5 else (b"{" + dup + b","
                                                                          + raw[1:])
    if kind == 2:
        return raw[: rng.randrange(len(raw))]
    if kind == 3:  # right around the size limit
        pad = MAX_EVENT_BYTES - len(raw) - len(b',"pad":""') + rng.choice([-1, 0, 1, 2])
        return raw[:-1] + b',"pad":"' + b"p" * max(pad, 0) + b'"}'
    if kind == 4:
        return rng.choice([b"[" + raw + b"]", b"null", b"1", b'"x"', b" ", raw + b" x",
                           b" " + raw + b"\n", raw.replace(b":", b" : "), b"{}",
                           raw[:-1] + b',"x":NaN}', raw[:-1] + b',"x":1e400}',
                           raw[:-1] + b',"x":99999999999999999999999}'])
    return raw


def random_events(seed: int, n: int) -> list[bytes]:
    rng = random.Random(seed)
    props = schema()["properties"]
    out = []
    for _ in range(n):
        event = good()
        if rng.random() < 0.3:
            event = {k: v for k, v in event.items() if k in REQUIRED or rng.random() < 0.5}
        for _ in range(rng.choice([0, 1, 1, 2, 3])):
            name = rng.choice(sorted(props))
            if rng.random() < 0.15:
                event.pop(name, None)  # drop a field
            else:
                event[name] = random_value(rng, name, props[name])
        for _ in range(rng.choice([0, 0, 1, 3])):  # additional properties stay in the dict
            event[rng.choice(["extra", "x", "", "é", "price2", "ts ", "Action"])] = rng.choice(
                ODD_VALUES[:-1])
        raw = dumps(rng, event)
        out.append(raw_mutation(rng, raw) if rng.random() < 0.25 else raw)
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_batch_matches_on_random_mutations(seed: int) -> None:
    values = random_events(seed, 2000)
    got = assert_same(values)
    accepted = sum(isinstance(g, dict) for g in got)
    assert 300 < accepted < 1700, accepted  # both outcomes well represented
    assert_same(values, now=datetime(2024, 3, 15, 14, tzinfo=UTC))  # another clock
