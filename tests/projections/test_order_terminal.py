"""An order's terminal status (FILLED, CANCELED, EXPIRED, REJECTED) is kept: a late fill
or a late confirmation after it updates quantities only."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from projections.core import _OI
from projections.framework import Located
from schemas.events import (
    CancelRequested,
    OrderAccepted,
    OrderCanceled,
    OrderSubmitted,
    OrderTriggered,
)
from schemas.events.orders import OrderType, Side
from tests.projections.folding import T0, Tape, fold


def _opened(tape: Tape) -> list[Located]:
    return [
        tape.ev(
            OrderSubmitted(
                order_id="o1", account="ACC001", producer_id="p", strategy_id="s",
                client_order_id="c1", instrument="BTC/USDT", side=Side.BUY,
                order_type=OrderType.LIMIT, quantity=Decimal("2"), limit_price=Decimal("100"),
                venue="paper",
            )
        ),
        tape.ev(OrderAccepted(order_id="o1", account="ACC001", venue="paper", venue_order_id="v1")),
    ]  # fmt: skip


def _cancel(tape: Tape, filled: str = "0.5") -> Located:
    return tape.ev(
        OrderCanceled(
            order_id="o1", account="ACC001", filled_quantity=Decimal(filled),
            leaves_quantity=Decimal("0"), reason="user",
        )
    )  # fmt: skip


def _row(items: list[Located]) -> dict[str, Any]:
    st, bad = fold("orders", items)
    assert not bad
    row = st.dirty["orders"][("o1",)]
    return {c: row[i] for c, i in _OI.items()}


def test_a_late_fill_after_a_cancel_keeps_the_order_canceled() -> None:
    tape = Tape()
    items = [*_opened(tape), tape.fill("BUY", "0.5", "100", leaves="1.5"), _cancel(tape)]
    items.append(tape.fill("BUY", "0.5", "101", leaves="1"))  # raced the cancel
    row = _row(items)
    assert row["status"] == "CANCELED"
    assert Decimal(row["leaves_quantity"]) == 0
    assert row["filled_quantity"] == 1
    assert row["filled_notional"] == Decimal("100.5")
    assert row["event_count"] == 5


def test_a_late_cancel_after_a_fill_keeps_the_order_filled() -> None:
    tape = Tape()
    items = [*_opened(tape), tape.fill("BUY", "2", "100", leaves="0"), _cancel(tape, "2")]
    row = _row(items)
    assert row["status"] == "FILLED" and row["filled_quantity"] == 2


def test_fills_still_move_an_open_order() -> None:
    tape = Tape()
    items = [*_opened(tape), tape.fill("BUY", "0.5", "100", leaves="1.5")]
    assert _row(items)["status"] == "PARTIALLY_FILLED"
    items.append(tape.fill("BUY", "1.5", "100", leaves="0"))
    assert _row(items)["status"] == "FILLED"


def _cancel_requested(tape: Tape) -> Located:
    return tape.ev(CancelRequested(order_id="o1", account="ACC001", reason="CLIENT"))


def test_a_partial_fill_while_a_cancel_is_outstanding_keeps_pending_cancel() -> None:
    tape = Tape()
    items = [*_opened(tape), _cancel_requested(tape), tape.fill("BUY", "0.5", "100", leaves="1.5")]
    st, bad = fold("orders", items)
    assert not bad
    row = _row(items)
    assert row["status"] == "PENDING_CANCEL"
    assert Decimal(row["leaves_quantity"]) == Decimal("1.5")
    assert row["filled_quantity"] == Decimal("0.5")
    assert list(st.inserts["order_events"].values())[-1][4] == "PENDING_CANCEL"
    # a fill that leaves nothing still fills the order; the cancel then confirms nothing
    items.append(tape.fill("BUY", "1.5", "100", leaves="0"))
    assert _row(items)["status"] == "FILLED"
    items.append(_cancel(tape, "2"))
    assert _row(items)["status"] == "FILLED"


def test_a_partial_fill_before_the_cancel_request_then_pending_cancel() -> None:
    tape = Tape()
    items = [*_opened(tape), tape.fill("BUY", "0.5", "100", leaves="1.5"), _cancel_requested(tape)]
    assert _row(items)["status"] == "PENDING_CANCEL"
    items.append(tape.fill("BUY", "0.5", "100", leaves="1"))
    assert _row(items)["status"] == "PENDING_CANCEL"
    items.append(_cancel(tape, "1"))
    assert _row(items)["status"] == "CANCELED"


def test_a_triggered_stop_shows_triggered_until_it_fills() -> None:
    """A stop/take child the engine triggered with nothing filled (`OrderTriggered`) is
    TRIGGERED, a market order now; its fills make it PARTIALLY_FILLED, then FILLED; a
    cancel of it is outstanding (PENDING_CANCEL). Before fold version 5 the orders
    projection did not know the type (quarantined): the row showed ACCEPTED, a stop
    waiting for its trigger, though it had been hit."""
    tape = Tape()
    items = [*_opened(tape)]
    items.append(
        tape.ev(
            OrderTriggered(
                order_id="o1", account="ACC001", trigger_price=Decimal("90"),
                price=Decimal("89"), triggered_at=T0,
            )
        )
    )  # fmt: skip
    assert _row(items)["status"] == "TRIGGERED"
    assert Decimal(_row(items)["leaves_quantity"]) == 2
    cancel = tape.ev(CancelRequested(order_id="o1", account="ACC001", reason="CLIENT"))
    assert _row([*items, cancel])["status"] == "PENDING_CANCEL"
    items.append(tape.fill("SELL", "0.5", "95", leaves="1.5"))
    assert _row(items)["status"] == "PARTIALLY_FILLED"
    items.append(tape.fill("SELL", "1.5", "94", leaves="0"))
    assert _row(items)["status"] == "FILLED"
