"""A venue overfill is stored and flagged, not hidden: an order whose fills add up to
more than its quantity is OVERFILLED (terminal, leaves 0, reason `OVERFILL_REASON`)
with `filled_quantity` the sum of its fills, so the order still reconciles with the
fills, positions and balances (and the engine), which all count the fill. Before, the
order showed FILLED, or PARTIALLY_FILLED with quantity still open, beside a filled
quantity past the order's, and nothing said so."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from projections.core import _OI, OVERFILL_REASON
from projections.framework import Located
from schemas.events import CancelRequested, OrderCanceled, OrderSubmitted
from schemas.events.orders import OrderType, Side
from tests.projections.folding import Tape, fold


def _submit(t: Tape, quantity: int) -> Located:
    return t.ev(
        OrderSubmitted(
            order_id="o1", account="ACC001", producer_id="p", strategy_id="s",
            client_order_id="c1", instrument="BTC/USDT", side=Side.BUY,
            order_type=OrderType.LIMIT, quantity=Decimal(quantity),
            limit_price=Decimal(100), venue="paper",
        )
    )  # fmt: skip


def _row(items: list[Located]) -> dict[str, Any]:
    s, bad = fold("orders", items)
    assert not bad
    row = s.dirty["orders"][("o1",)]
    return {c: row[i] for c, i in _OI.items()}


def test_a_fill_past_the_quantity_makes_the_order_overfilled() -> None:
    t = Tape()
    items = [_submit(t, 5), t.fill("BUY", "3", "100", leaves="2")]
    items.append(t.fill("BUY", "4", "100", leaves="0"))  # the venue filled 7 of 5
    row = _row(items)
    assert row["status"] == "OVERFILLED" and row["reason"] == OVERFILL_REASON
    assert Decimal(row["filled_quantity"]) == 7 and Decimal(row["leaves_quantity"]) == 0
    positions, _bad = fold("positions", items)
    assert Decimal(next(iter(positions.dirty["positions"].values()))[2]) == 7


def test_a_late_fill_past_a_filled_or_canceled_order_flags_it() -> None:
    t = Tape()
    items = [_submit(t, 2), t.fill("BUY", "2", "100")]
    assert _row(items)["status"] == "FILLED"
    assert _row([*items, t.fill("BUY", "1", "100")])["status"] == "OVERFILLED"
    t = Tape()
    items = [_submit(t, 2), t.ev(CancelRequested(order_id="o1", account="ACC001", reason="C"))]
    items.append(
        t.ev(
            OrderCanceled(
                order_id="o1", account="ACC001", filled_quantity=Decimal(0),
                leaves_quantity=Decimal(2), reason="CLIENT",
            )
        )
    )  # fmt: skip
    items.append(t.fill("BUY", "2", "100"))  # a fill that raced the cancel: not past it
    assert _row(items)["status"] == "CANCELED"
    row = _row([*items, t.fill("BUY", "1", "100")])
    assert row["status"] == "OVERFILLED" and Decimal(row["filled_quantity"]) == 3


@settings(max_examples=300, deadline=None)
@given(quantity=st.integers(1, 20), fills=st.lists(st.integers(1, 10), min_size=1, max_size=8))
def test_filled_never_exceeds_the_order_unless_flagged(quantity: int, fills: list[int]) -> None:
    t = Tape()
    items = [_submit(t, quantity)]
    total = 0
    for f in fills:
        total += f
        items.append(t.fill("BUY", str(f), "100", leaves=str(max(quantity - total, 0))))
        row = _row(items)
        assert Decimal(row["filled_quantity"]) == total  # the sum of the fills, always
        assert (row["status"] == "OVERFILLED") == (total > quantity), (row["status"], total)
        if row["status"] != "OVERFILLED":
            assert Decimal(row["filled_quantity"]) <= Decimal(row["quantity"])
        else:
            assert Decimal(row["leaves_quantity"]) == 0
