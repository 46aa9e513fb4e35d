"""`schemas.fastjson` writes a decision's bytes as pydantic-core does, or declines.

The engine's output digest (tests/engine/test_output_digest.py) pins the bytes of the
decisions of one stream; here any decision: every code point's escape, decisions with
any strings, decimals, times, ids and optional fields, and what makes the fast path
decline (a value of another type, fields out of order, a lone surrogate).
"""

from __future__ import annotations

import json.encoder
import uuid
import warnings
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pydantic_core
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.trusted import build
from schemas import encode
from schemas.envelope import envelope_class
from schemas.events.risk import DecisionOutcome, RiskDecision, RuleResult
from schemas.fastjson import ENABLED, risk_decision_json
from schemas.ids import uuid_text
from schemas.types import format_decimal

ENVELOPE = envelope_class(RiskDecision)


def _pydantic(event: Any) -> bytes:
    return bytes(type(event).__pydantic_serializer__.to_json(event))


def test_the_fast_path_knows_the_schema() -> None:
    """False when a field of the envelope, `RiskDecision` or `RuleResult` was added,
    moved, renamed or retyped: then `fastjson` must be brought up to it."""
    assert ENABLED


def test_every_code_point_is_escaped_as_pydantic_core_escapes_it() -> None:
    escape = json.encoder.c_encode_basestring  # type: ignore[attr-defined]
    points = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    for start in range(0, len(points), 4096):
        text = "".join(map(chr, points[start : start + 4096]))
        assert escape(text).encode() == pydantic_core.to_json(text)


_TEXT = st.text(
    st.characters(codec="utf-8") | st.sampled_from('"\\\x00\x1f\x7f\n\t\u2028é€𝄞'), max_size=12
)
_DECIMAL = st.decimals(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [Decimal("-0"), Decimal("-0.000"), Decimal("0E+3"), Decimal("1E+5"), Decimal("1E-7"),
     Decimal("-1.5E-12"), Decimal("123.4500"), Decimal("1000000000.000000000000")]
)  # fmt: skip
_TIME = st.datetimes(
    min_value=datetime(1, 1, 1, 12), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)
_ID = st.uuids()
_RULE = st.builds(
    RuleResult,
    rule_id=_TEXT,
    rule_version=st.integers(1, 2**70),
    passed=st.booleans(),
    reason_code=st.none() | _TEXT,
    detail=_TEXT,
)


@st.composite
def _decisions(draw: st.DrawFn) -> Any:
    shared = draw(st.lists(_RULE, max_size=4))  # the rules reuse a pass's object
    results = draw(st.lists(st.sampled_from(shared) if shared else _RULE, max_size=14))
    intent_id = draw(_ID)
    cause = draw(st.sampled_from([None, intent_id, draw(_ID)]))
    optional = draw(st.booleans())
    payload = {
        "account": draw(_TEXT),
        "producer_id": draw(_TEXT),
        "strategy_id": draw(_TEXT),
        "client_order_id": draw(_TEXT),
        "intent_event_id": intent_id,
        "intent_kind": draw(st.sampled_from(["ORDER", "CANCEL"]) | _TEXT),
        "outcome": draw(st.sampled_from(DecisionOutcome)),
        "reason_codes": tuple(draw(st.lists(_TEXT, max_size=3))),
        "rule_results": tuple(results),
        "risk_config_version": draw(st.integers(0, 2**70)),
        "order_id": draw(st.none() | _TEXT),
        "equity": draw(st.none() | _DECIMAL) if optional else draw(_DECIMAL),
        "peak_equity": draw(st.none() | _DECIMAL),
        "peak_nav": draw(st.none() | _DECIMAL),
        "intent_digest": draw(st.none() | _TEXT),
        "received_at": draw(st.none() | _TIME),
    }
    fields = {
        "event_id": draw(_ID),
        "event_type": draw(st.just("RiskDecision") | _TEXT),
        "schema_version": draw(st.integers(1, 2**40)),
        "occurred_at": draw(_TIME),
        "producer": draw(_TEXT),
        "correlation_id": draw(st.sampled_from([intent_id, uuid.UUID(int=intent_id.int)]) | _ID),
        "causation_id": cause,
        "key": draw(_TEXT),
    }
    # As the engine builds it (`engine.trusted`: no validation, so any text).
    return build(ENVELOPE, payload=build(RiskDecision, **payload), **fields)


@settings(max_examples=400, deadline=None)
@given(_decisions())
def test_a_decision_is_written_as_pydantic_writes_it(event: Any) -> None:
    expected = _pydantic(event)
    assert risk_decision_json(event) == expected
    assert risk_decision_json(event) == expected  # again: its rule results remembered
    assert encode(event)[1] == expected


def _sample(**payload_changes: Any) -> Any:
    intent = uuid.UUID("01a24ff8-46f2-732b-b73a-306ba2dfdf79")
    rules = (
        RuleResult(rule_id="FRESHNESS", rule_version=3, passed=True, detail="lag 0"),
        RuleResult(
            rule_id="BALANCE",
            rule_version=4,
            passed=False,
            reason_code="INSUFFICIENT_BALANCE",
            detail="needs 0.001 BTC, free 0",
        ),
    )
    payload = {
        "account": "B000",
        "producer_id": "bench",
        "strategy_id": "s",
        "client_order_id": "p-0",
        "intent_event_id": intent,
        "intent_kind": "ORDER",
        "outcome": DecisionOutcome.REJECTED,
        "reason_codes": ("INSUFFICIENT_BALANCE",),
        "rule_results": rules,
        "risk_config_version": 1,
        "order_id": None,
        "equity": Decimal("1000000000.000000000000"),
        "peak_equity": Decimal("1000000000.000000000000"),
        "peak_nav": Decimal(1),
        "intent_digest": "596ae2bacb6088300c57138b262bdb9c",
        "received_at": datetime(2000, 1, 1, tzinfo=UTC),
        **payload_changes,
    }
    return build(
        ENVELOPE,
        event_id=uuid.UUID("00dc6acf-ac00-7cf5-92a7-f79b8a089c82"),
        event_type="RiskDecision",
        schema_version=1,
        occurred_at=datetime(2000, 1, 1, tzinfo=UTC),
        producer="engine",
        correlation_id=intent,
        causation_id=intent,
        key="B000",
        payload=build(RiskDecision, **payload),
    )


def test_the_sample_is_written_fast() -> None:
    event = _sample()
    assert risk_decision_json(event) == _pydantic(event)


@pytest.mark.parametrize(
    "changes",
    [
        {"equity": 5},  # an int where a decimal is declared: pydantic warns, writes it
        {"risk_config_version": True},
        {"outcome": "APPROVED"},  # the text, not the enum
        {"reason_codes": ["A"]},
        {"client_order_id": 7},
        {"received_at": "2000-01-01T00:00:00.000000Z"},
        {"intent_event_id": str(uuid.UUID(int=5))},
    ],
)
def test_anything_else_is_left_to_pydantic(changes: dict[str, Any]) -> None:
    event = _sample(**changes)
    assert risk_decision_json(event) is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydantic warns of the unexpected type
        assert _outcome(lambda: encode(event)[1]) == _outcome(lambda: _pydantic(event))


def _outcome(write: Any) -> tuple[str, Any]:
    try:
        return ("written", write())
    except Exception as exc:  # what pydantic refuses is refused the same way
        return ("raised", (type(exc), str(exc)))


def test_a_lone_surrogate_is_refused_by_pydantic_as_before() -> None:
    event = _sample(client_order_id="\ud800")
    assert risk_decision_json(event) is None
    with pytest.raises(pydantic_core.PydanticSerializationError):
        encode(event)


def test_fields_in_another_order_are_left_to_pydantic() -> None:
    event = _sample()
    payload = event.payload
    swapped = dict(reversed(list(payload.__dict__.items())))
    object.__setattr__(payload, "__dict__", swapped)
    assert risk_decision_json(event) is None
    assert encode(event)[1] == _pydantic(event)


def test_other_events_are_left_to_pydantic() -> None:
    assert risk_decision_json(_sample().payload) is None


def _format_decimal_before(value: Decimal) -> str:
    """`format_decimal` before session 23 (the reference)."""
    text = format(value, "f")
    return text[1:] if value == 0 and text.startswith("-") else text


@settings(max_examples=2000, deadline=None)
@given(
    st.decimals(allow_nan=True, allow_infinity=True)
    | st.builds(
        lambda sign, digits, exp: Decimal((sign, tuple(digits), exp)),
        st.integers(0, 1),
        st.lists(st.integers(0, 9), min_size=1, max_size=30),
        st.integers(-40, 40),
    )
)
def test_format_decimal_writes_what_it_wrote_before(value: Decimal) -> None:
    if value.is_snan():
        return  # `value == 0` raises for a signalling NaN, before and after
    assert format_decimal(value) == _format_decimal_before(value)


@given(st.lists(st.uuids(), min_size=1, max_size=6), st.data())
def test_uuid_text_is_str(ids: list[uuid.UUID], data: st.DataObject) -> None:
    for _ in range(12):
        u = data.draw(st.sampled_from(ids))
        assert uuid_text(u) == str(u)
        assert uuid_text(uuid.UUID(int=u.int)) == str(u)  # remembered by value


def test_times_are_written_as_before() -> None:
    start = datetime(2000, 1, 1, tzinfo=UTC)
    for days in (0, 1, 400, 40000):
        event = _sample(received_at=start + timedelta(days=days, microseconds=days))
        assert risk_decision_json(event) == _pydantic(event)
