"""Payloads many tests build with fields they do not look at: written once, each test
naming only what it changes."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from schemas.events import OrderIntent, OrderType, Side


def order_intent(**changes: Any) -> OrderIntent:
    """A limit buy of 1 BTC/USDC at 29,000: producer p1, strategy s, account A1, client
    order id c1; `changes` (field -> value) over those."""
    fields: dict[str, Any] = {
        "producer_id": "p1",
        "strategy_id": "s",
        "account": "A1",
        "client_order_id": "c1",
        "instrument": "BTC/USDC",
        "side": Side.BUY,
        "order_type": OrderType.LIMIT,
        "quantity": Decimal("1"),
        "limit_price": Decimal("29000"),
    }
    return OrderIntent(**(fields | changes))
