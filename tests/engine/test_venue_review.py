"""Order-handling semantics a broker's client relies on (review by helper-81).

Each test reproduces a defect and failed before its fix.
"""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import RiskLimits, Side, TimeInForce
from tests.engine.pure import Harness, types

D = Decimal


@settings(max_examples=60, deadline=None)
@given(
    displayed=st.integers(min_value=1, max_value=20),
    qty=st.integers(min_value=1, max_value=20),
    side=st.sampled_from([Side.BUY, Side.SELL]),
    limit=st.booleans(),
)
def test_fill_or_kill_fills_all_or_nothing(
    displayed: int, qty: int, side: Side, limit: bool
) -> None:
    """FOK is all or nothing, a MARKET FOK too: before, a market FOK took the displayed
    size and expired the rest (a partial fill the client had excluded)."""
    h = Harness(RiskLimits(max_position=D("100"), max_order_notional=D("1e7")))
    h.admin_deposit("BTC", D("100"))
    h.quote(D("100"), D("101"), qty=D(displayed))
    price = (D("101") if side is Side.BUY else D("100")) if limit else None
    out = h.order(side, D(qty), price, tif=TimeInForce.FOK)
    fills = [e.payload.quantity for e in out if e.event_type == "Fill"]
    if qty <= displayed:
        assert fills == [D(qty)] and "OrderExpired" not in types(out)
    else:
        assert fills == []
        end = next(e.payload for e in out if e.event_type == "OrderExpired")
        assert end.reason == "FOK_NOT_FILLABLE" and end.filled_quantity == 0
