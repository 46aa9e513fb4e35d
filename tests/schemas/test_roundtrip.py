"""Every event model survives serialize → deserialize unchanged, Decimals exactly."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas import decode, encode, new_event
from schemas.envelope import EventPayload
from schemas.events import Fill, Liquidity, OrderIntent, Side
from schemas.registry import REGISTRY
from schemas.types import format_decimal
from tests.schemas.strategies import model_strategy

MODELS = sorted(REGISTRY.values(), key=lambda c: c.EVENT_TYPE)


def _payload_strategy(cls: type[EventPayload]) -> st.SearchStrategy[EventPayload]:
    return model_strategy(cls)


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.EVENT_TYPE)
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_every_model_round_trips(cls: type[EventPayload], data: st.DataObject) -> None:
    payload = data.draw(_payload_strategy(cls))
    event = new_event(payload, producer="test")
    key, value, headers = encode(event)
    back = decode(value, headers, topic="t", partition=0, offset=0)
    assert back == event
    assert back.payload == payload
    assert key == event.key.encode()
    # the bytes are stable: encoding the decoded event gives the same bytes
    assert encode(back)[1] == value


decimals = st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
    lambda d: d.is_finite() and d > 0 and abs(d.adjusted()) < 40
)


@given(qty=decimals, price=decimals)
@settings(max_examples=200, deadline=None)
def test_decimal_precision_survives_the_wire(qty: Decimal, price: Decimal) -> None:
    intent = OrderIntent(
        producer_id="p",
        strategy_id="s",
        account="A1",
        client_order_id="c",
        instrument="BTC/USDT",
        side=Side.BUY,
        order_type="LIMIT",
        quantity=qty,
        limit_price=price,
    )
    _k, value, headers = encode(new_event(intent, producer="p"))
    back = decode(value, headers).payload
    assert back.quantity == qty and back.limit_price == price
    assert json.loads(value)["payload"]["quantity"] == format_decimal(qty)


def test_one_atto_unit_is_exact() -> None:
    tiny = Decimal("0.000000000000000001")
    fill = Fill(
        fill_id="f1",
        order_id="o1",
        account="A1",
        instrument="ETH/USDC",
        side=Side.SELL,
        quantity=tiny,
        price=Decimal("3000.10"),
        fee=Decimal("0"),
        fee_asset="USDC",
        liquidity=Liquidity.MAKER,
        venue="paper",
        venue_trade_id="t1",
        uti="U1",
        traded_at="2026-01-01T00:00:00.000001Z",
        leaves_quantity=Decimal("0"),
    )
    _k, value, headers = encode(new_event(fill, producer="engine"))
    assert b'"quantity":"0.000000000000000001"' in value
    assert decode(value, headers).payload.quantity == tiny


def test_floats_are_refused_for_money() -> None:
    with pytest.raises(ValidationError, match="never a float"):
        OrderIntent(
            producer_id="p",
            strategy_id="s",
            account="A1",
            client_order_id="c",
            instrument="BTC/USDT",
            side=Side.BUY,
            order_type="MARKET",
            quantity=0.1,
        )
