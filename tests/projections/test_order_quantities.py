"""An order's quantities add up whatever its lifecycle: `filled_quantity` is the sum of
its fills; while it works, `leaves_quantity` is what is still open (quantity - filled);
once it is done (FILLED, CANCELED, EXPIRED, REJECTED) nothing is open for execution and
leaves is 0 (FIX LeavesQty). CANCELED and EXPIRED kept the remainder the cancel or
expiry named, so a dead order showed open quantity (and REJECTED showed 0), and a fill
that raced the cancel made filled + leaves exceed the order."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from projections.core import _OI, _TERMINAL
from projections.framework import Located
from schemas.events import (
    CancelRequested,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderRejected,
    OrderSubmitted,
)
from schemas.events.orders import OrderType, Side
from tests.projections.folding import Tape, fold

STEP = st.one_of(
    st.tuples(st.just("fill"), st.integers(1, 10)),
    st.tuples(st.sampled_from(["accept", "cancel_request", "cancel", "expire", "reject"])),
)


def _row(items: list[Located]) -> dict[str, Any]:
    s, bad = fold("orders", items)
    assert not bad
    row = s.dirty["orders"][("o1",)]
    return {c: row[i] for c, i in _OI.items()}


@settings(max_examples=300, deadline=None)
@given(quantity=st.integers(1, 30), steps=st.lists(STEP, max_size=12))
def test_order_quantities_add_up(quantity: int, steps: list[tuple[Any, ...]]) -> None:
    t = Tape()
    items = [
        t.ev(
            OrderSubmitted(
                order_id="o1", account="ACC001", producer_id="p", strategy_id="s",
                client_order_id="c1", instrument="BTC/USDT", side=Side.BUY,
                order_type=OrderType.LIMIT, quantity=Decimal(quantity),
                limit_price=Decimal(100), venue="paper",
            )
        )
    ]  # fmt: skip
    qty = Decimal(quantity)
    filled = Decimal(0)  # what the venue filled, as its events say
    ended = False
    for step in steps:
        kind = step[0]
        leaves = qty - filled
        if kind == "fill":
            part = min(Decimal(step[1]), leaves)
            if part <= 0:
                continue
            filled += part  # a fill that raced the end still happened
            items.append(t.fill("BUY", str(part), "100", leaves=str(qty - filled)))
        elif kind == "accept":
            items.append(
                t.ev(OrderAccepted(order_id="o1", account="ACC001", venue="p", venue_order_id="v"))
            )
        elif kind == "cancel_request":
            items.append(t.ev(CancelRequested(order_id="o1", account="ACC001", reason="CLIENT")))
        elif kind == "reject":
            items.append(
                t.ev(OrderRejected(order_id="o1", account="ACC001", venue="p", reason="x"))
            )
            ended = True
        else:
            cls = OrderCanceled if kind == "cancel" else OrderExpired
            items.append(
                t.ev(
                    cls(
                        order_id="o1", account="ACC001", filled_quantity=filled,
                        leaves_quantity=leaves, reason="CLIENT",
                    )
                )
            )  # fmt: skip
            ended = True
        row = _row(items)
        assert Decimal(row["filled_quantity"]) == filled
        done = row["status"] in _TERMINAL
        assert done == (ended or filled == qty), row["status"]
        if done:
            assert Decimal(row["leaves_quantity"]) == 0, row["status"]
        else:
            assert Decimal(row["leaves_quantity"]) == qty - filled
        assert Decimal(row["filled_quantity"]) + Decimal(row["leaves_quantity"]) <= qty
