"""The compiled canonical layouts equal `canonical_payload_bytes`, byte for byte."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import auth, wire
from schemas.events import CancelIntent, OrderIntent, OrderType, Side, TimeInForce
from schemas.registry import REGISTRY
from schemas.serde import canonical_payload_bytes
from tests.schemas.payloads import order_intent

ident = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,20}", fullmatch=True)
free_text = st.text(min_size=1, max_size=64)  # any unicode: quotes, backslashes, controls
amount = st.decimals(
    min_value=Decimal("1e-18"), max_value=Decimal("1e15"), allow_nan=False, allow_infinity=False
)
signature = st.none() | st.text(alphabet="0123456789abcdef", min_size=0, max_size=128)


@st.composite
def order_intents(draw: Any) -> OrderIntent:
    market = draw(st.booleans())
    return OrderIntent(
        producer_id=draw(ident),
        strategy_id=draw(free_text),
        account=draw(ident),
        client_order_id=draw(free_text),
        instrument=draw(st.from_regex(r"[A-Z0-9]{1,8}/[A-Z0-9]{1,8}", fullmatch=True)),
        side=draw(st.sampled_from(Side)),
        order_type=OrderType.MARKET if market else OrderType.LIMIT,
        quantity=draw(amount),
        limit_price=None if market else draw(amount),
        time_in_force=draw(st.sampled_from(TimeInForce)),
        stop_loss=draw(st.none() | amount),
        take_profit=draw(st.none() | amount),
        venue=draw(st.text(min_size=1, max_size=32)),
        signature=draw(signature),
    )


cancel_intents = st.builds(
    CancelIntent,
    producer_id=ident,
    strategy_id=free_text,
    account=ident,
    client_order_id=free_text,
    target_client_order_id=free_text,
    signature=signature,
)


@settings(max_examples=300, deadline=None)
@given(order_intents())
def test_order_intent_signing_bytes_are_canonical(intent: OrderIntent) -> None:
    assert wire.signing_bytes(intent) == auth.signing_bytes(intent)
    assert wire.signing_bytes(intent) == canonical_payload_bytes(intent, exclude={"signature"})


@settings(max_examples=200, deadline=None)
@given(cancel_intents)
def test_cancel_intent_signing_bytes_are_canonical(intent: CancelIntent) -> None:
    assert wire.signing_bytes(intent) == auth.signing_bytes(intent)


@pytest.mark.parametrize("text", ['a"b', "a\\b", "\x00\x1f\x7f", "\n\r\t\b\f", "é€😀", "\u2028"])
def test_json_string_matches_json_dumps_on_awkward_text(text: str) -> None:
    import json

    assert wire.json_string(text) == json.dumps(text, ensure_ascii=False)


def test_intents_compile_and_unknown_field_types_are_refused() -> None:
    """Intents get a compiled layout; a field type the compiler does not know (e.g. a
    free-form dict) is refused at compile time and keeps the canonical path."""
    for intent_cls in (OrderIntent, CancelIntent):
        wire.compile_layout(intent_cls, exclude=frozenset({"signature"}))
    refused = []
    for cls in REGISTRY.values():
        try:
            wire.compile_layout(cls)
        except wire.UnsupportedField:
            refused.append(cls)
    assert refused, "expected at least one payload type with a free-form field"


def test_a_changed_value_changes_the_bytes() -> None:
    """The layout reads the values (a constant layout would pass the equality tests on
    one example, never on these two)."""
    a = order_intent(limit_price=Decimal("2"))
    b = order_intent(limit_price=Decimal("2.5"))
    assert wire.signing_bytes(a) != wire.signing_bytes(b)
    assert b'"limit_price":"2.5"' in wire.signing_bytes(b)
