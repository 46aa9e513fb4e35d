"""The lean decoder accepts only what the pydantic models accept, with the same values.

`projections.lean` validates records in Rust into plain dicts; anything it does not
accept takes `schemas.decode`. These tests check the two claims that make that safe:
lean-accepted implies model-accepted with identical JSON values, and the combined
verdict (`decode_record`) is exactly the models' verdict. Inputs: every sample event in
tests/schemas/samples, generated events of every type, and hypothesis mutations.
"""

from __future__ import annotations

import copy
import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic_core import SchemaValidator, ValidationError, core_schema

from projections import lean
from projections.framework import Quarantined
from projections.store import RawRecord, decode_one
from projections.synthetic import generate
from schemas import REGISTRY, MalformedEventError, decode, encode, new_event
from schemas.types import (
    IN_RANGE_TEXT,
    MAX_DECIMAL_TEXT,
    _parse_decimal,
    _parse_utc,
    format_decimal,
)
from tests.schemas.strategies import model_strategy

SAMPLES = sorted((Path(__file__).parents[1] / "schemas" / "samples").glob("*.json"))
BODIES: list[dict[str, Any]] = [json.loads(p.read_text()) for p in SAMPLES]


def _headers(body: Any, et: Any = None, ver: Any = None) -> list[tuple[str, bytes]]:
    et = et if et is not None else (body.get("event_type") if isinstance(body, dict) else "X")
    ver = ver if ver is not None else (body.get("schema_version") if isinstance(body, dict) else 1)
    return [("event_type", str(et).encode()), ("schema_version", str(ver).encode())]


def _verdicts(value: bytes, headers: list[tuple[str, bytes]]) -> None:
    """The two claims, for one record."""
    try:
        model: dict[str, Any] | None = decode(value, headers).model_dump(mode="json")
    except MalformedEventError:
        model = None
    fast = lean.lean_decode(value, headers)
    if fast is not None:
        assert model is not None, "lean accepted what the models reject"
        assert fast == model
    try:
        combined: dict[str, Any] | None = lean.decode_record(value, headers)
    except MalformedEventError:
        combined = None
    assert combined == model


def test_samples_cover_the_registry_and_agree() -> None:
    assert {(b["event_type"], b["schema_version"]) for b in BODIES} == set(REGISTRY)
    for body in BODIES:
        _verdicts(json.dumps(body).encode(), _headers(body))


def test_hot_event_types_take_the_lean_path() -> None:
    """Not a vacuous fallback: the synthetic stream's types (bar one with a model
    validator) decode lean, and equal the models' dump."""
    eligible = set(lean.eligible_types())
    assert {
        ("Fill", 1), ("OrderSubmitted", 1), ("RiskDecision", 1), ("MarketTrade", 1),
        ("QuoteUpdated", 1),  # its crossed-book validator mirrored as a payload check
    } <= eligible  # fmt: skip
    for ev in generate(3, 600):
        _key, value, headers = encode(ev)
        fast = lean.lean_decode(value, headers)
        if (ev.event_type, ev.schema_version) in eligible:
            assert fast == ev.model_dump(mode="json")
        else:
            assert fast is None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_generated_events_of_every_type_agree(data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(sorted(REGISTRY)))
    payload = data.draw(model_strategy(REGISTRY[key]))
    ev = new_event(payload, producer="hypothesis")
    _k, value, headers = encode(ev)
    _verdicts(value, list(headers))  # type: ignore[arg-type]
    if key in lean.eligible_types():
        assert lean.lean_decode(value, headers) is not None


TRICKY: list[Any] = [
    None, True, False, 0, 1, -1, 1.5, 1e308, "", " ", "0", "-0", "-0.0", "0.000", "1.50",
    "01", "1e5", "1E+2", " 1", "1 ", "+1", ".5", "5.", "1_000", "NaN", "Infinity", "-1",
    "0.0000000001", "123456789012345678901234567890.123456789",
    "2026-01-05T09:00:00.000000Z", "2026-02-29T00:00:00.000000Z",
    "2024-02-29T00:00:00.000000Z", "1900-02-29T00:00:00.000000Z",
    "2000-02-29T00:00:00.000000Z", "0000-01-01T00:00:00.000000Z",
    "2026-01-05T09:00:00.000000+00:00", "2026-01-05T09:00:00Z", "2026-13-01T00:00:00.000000Z",
    "2026-01-05T24:00:00.000000Z", "2026-01-05 09:00:00.000000Z",
    "0190a0a0-0000-7000-8000-000000000001", "0190A0A0-0000-7000-8000-000000000001",
    "0190a0a000007000800000000000001", "BUY", "buy", "MAKER", "APPROVED", "ACC001",
    "BTC/USDT", "btc/usdt", "A" * 70, "é", "\u0000", "a\tb\\c\n", [], {}, [1], {"a": 1},
    {"a": float("inf")}, ["x"],
]  # fmt: skip


def _paths(body: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    if isinstance(body, dict):
        for k, v in body.items():
            out.append((*prefix, k))
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(body, list):
        for i, v in enumerate(body):
            out.append((*prefix, i))
            out.extend(_paths(v, (*prefix, i)))
    return out


@st.composite
def mutated(draw: st.DrawFn) -> tuple[bytes, list[tuple[str, bytes]]]:
    body = copy.deepcopy(draw(st.sampled_from(BODIES)))
    et, ver = body["event_type"], body["schema_version"]
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(body)
        path = draw(st.sampled_from(paths))
        parent = body
        for step in path[:-1]:
            parent = parent[step]
        how = draw(st.sampled_from(["set", "set", "set", "delete", "extra", "text"]))
        last = path[-1]
        if how == "set":
            parent[last] = copy.deepcopy(draw(st.sampled_from(TRICKY)))
        elif how == "text":
            parent[last] = draw(
                st.text(max_size=12) | st.from_regex(r"-?[0-9]{1,3}(\.[0-9]{0,3})?", fullmatch=True)
            )
        elif how == "delete" and isinstance(parent, dict):
            del parent[last]
        elif how == "extra" and isinstance(parent, dict):
            parent[draw(st.text(max_size=6))] = copy.deepcopy(draw(st.sampled_from(TRICKY)))
    if draw(st.booleans()):
        et = draw(st.sampled_from([et, "Fill", "RiskDecision", "Nope"]))
        ver = draw(st.sampled_from([ver, 1, 2, "x", True]))
    value = json.dumps(body, allow_nan=True).encode()
    return value, _headers(body, et, ver)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(record=mutated())
def test_mutated_records_get_the_models_verdict(
    record: tuple[bytes, list[tuple[str, bytes]]],
) -> None:
    _verdicts(*record)


def _accepts(pattern: str, text: str) -> bool:
    v = SchemaValidator(core_schema.str_schema(pattern=pattern))
    try:
        v.validate_python(text)
    except ValidationError:
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(
    text=st.from_regex(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z", fullmatch=True)
    | st.datetimes(min_value=datetime(1, 1, 1)).map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    | st.sampled_from(["2000-02-29T00:00:00.000000Z", "2100-02-29T00:00:00.000000Z", "0004-02-29T00:00:00.000000Z", "0000-02-29T00:00:00.000000Z"])
)  # fmt: skip
def test_timestamp_form_is_exactly_the_valid_dates(text: str) -> None:
    try:
        _parse_utc(text)
        valid = True
    except ValueError:
        valid = False
    assert _accepts(lean.TIMESTAMP_RE, text) == valid


@settings(max_examples=300, deadline=None)
@given(
    text=st.from_regex(r"-?[0-9]{1,4}(\.[0-9]{0,4})?", fullmatch=True)
    | st.decimals(allow_nan=False, allow_infinity=False).map(str)
)
def test_decimal_forms_are_canonical_and_in_range(text: str) -> None:
    for pattern, ok in (
        (lean.DECIMAL_RE, lambda d: True),
        (lean.POSITIVE_RE, lambda d: d > 0),
        (lean.NON_NEGATIVE_RE, lambda d: d >= 0),
    ):
        if _accepts(pattern, text):
            d = _parse_decimal(text)
            assert ok(d) and format_decimal(d) == text
    if _accepts(lean.NON_NEGATIVE_RE, text) and _parse_decimal(text) > 0:
        assert _accepts(lean.POSITIVE_RE, text)


@pytest.mark.parametrize("text", ["a\u0000b", "\ud800"])
def test_text_postgres_cannot_store_is_quarantined(text: str) -> None:
    ev = generate(1, 1)[0]
    _k, value, headers = encode(ev)
    body = json.loads(value)
    body["producer"] = text
    raw = json.dumps(body).encode()  # ASCII escapes: \u0000, \ud800
    out = decode_one(RawRecord("t", 0, 7, raw, headers))
    assert isinstance(out, Quarantined), out
    if "\u0000" in text:  # the models accept NUL; the lean path does not let it through
        assert "PostgreSQL cannot store" in out.error
    else:  # a lone surrogate: the models themselves refuse it
        assert "failed validation" in out.error


def test_decimal_strings_need_no_float() -> None:
    """Money stays exact end to end: the lean value is the wire string itself."""
    assert _accepts(lean.DECIMAL_RE, "0.000000000000000001")
    assert Decimal("0.000000000000000001") == _parse_decimal("0.000000000000000001")


@pytest.mark.parametrize("version", [True, 1.0, "1", 0, 2])
def test_schema_version_must_be_the_json_integer_the_headers_name(version: Any) -> None:
    """Regression (found by the mutation test): `true == 1` in Python, so a literal
    schema, and the model's own JSON validation, accepted `"schema_version": true`."""
    for body in BODIES:
        if type(version) is int and version == body["schema_version"]:
            continue  # not a mutation of this sample (AccountOpened.v2's own version)
        mutated_body = {**body, "schema_version": version}
        value = json.dumps(mutated_body).encode()
        headers = _headers(body)
        _verdicts(value, headers)
        with pytest.raises(MalformedEventError):
            lean.decode_record(value, headers)


@settings(max_examples=80, deadline=None)
@given(bid=st.decimals("0.01", "200", places=2), ask=st.decimals("0.01", "200", places=2))
def test_quote_crossed_book_check_gives_the_models_verdict(bid: Decimal, ask: Decimal) -> None:
    """QuoteUpdated's crossed-book validator, mirrored as a lean payload check: a
    crossed or locked book is never accepted lean (the models refuse it)."""
    body = next(copy.deepcopy(b) for b in BODIES if b["event_type"] == "QuoteUpdated")
    body["payload"]["bid_price"] = format_decimal(bid)
    body["payload"]["ask_price"] = format_decimal(ask)
    value = json.dumps(body).encode()
    headers = _headers(body)
    _verdicts(value, headers)
    assert (lean.lean_decode(value, headers) is not None) == (bid < ask)


def _header_type_reference(headers: Any) -> tuple[str, int] | None:
    """What `lean.header_type` computed before its per-pair cache: the last value of
    each header, decoded, and a decimal version."""
    if not headers:
        return None
    et = ver = None
    for k, v in headers:
        if k == "event_type":
            et = v.decode(errors="replace") if isinstance(v, bytes) else v
        elif k == "schema_version":
            ver = v.decode(errors="replace") if isinstance(v, bytes) else v
    if not isinstance(et, str) or not isinstance(ver, str) or not ver.isdecimal():
        return None
    return et, int(ver)


_HEADER_VALUES = st.one_of(
    st.none(),
    st.sampled_from([b"Fill", b"RiskDecision", b"1", b"2", b"01", b"x", b"\xff", "Fill", "1"]),
    st.binary(max_size=6),
    st.text(max_size=4),
)


@settings(max_examples=300, deadline=None)
@given(
    headers=st.one_of(
        st.none(),
        st.lists(
            st.tuples(st.sampled_from(["event_type", "schema_version", "traceparent"]),
                      _HEADER_VALUES),
            max_size=5,
        ),
    )
)  # fmt: skip
def test_header_type_cache_gives_the_uncached_answer(headers: Any) -> None:
    assert lean.header_type(headers) == _header_type_reference(headers)
    assert lean.header_type(headers) == _header_type_reference(headers)  # now from the cache
    assert len(lean._NAMED) <= lean._NAMED_MAX


@pytest.mark.parametrize("digits", [IN_RANGE_TEXT, IN_RANGE_TEXT + 1, MAX_DECIMAL_TEXT + 1])
def test_decimal_text_the_models_refuse_is_not_lean(digits: int) -> None:
    """The models refuse a decimal string out of range (`1` and 201 zeros is 1E+201) or
    over `MAX_DECIMAL_TEXT` characters; the lean form must refuse it too (it accepts a
    subset of what they accept), and still take the longest always-valid one."""
    for body in BODIES:
        if body["event_type"] == "Fill":
            break
    else:
        raise AssertionError("no Fill sample")
    body = copy.deepcopy(body)
    body["payload"]["price"] = "1" + "0" * (digits - 1)
    value, headers = json.dumps(body).encode(), _headers(body)
    _verdicts(value, headers)
    assert (lean.lean_decode(value, headers) is None) == (digits > IN_RANGE_TEXT)
