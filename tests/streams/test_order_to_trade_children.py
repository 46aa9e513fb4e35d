"""Order-to-trade and a stop/take child order (`parent_order_id`).

The engine arms a child on the parent's account and instrument, without a decision of
the trader: its submission and its engine-made cancel (the OCO sibling, a re-arm) are
not the account's orders or cancels, but its fill is the account's trade on that
instrument, so it counts among the trades (and, since order-to-trade 5, the detector
judges at it too, by the fill's own account and instrument).
"""

from __future__ import annotations

from decimal import Decimal

from schemas.events import OrderCanceled, OrderSubmitted, OrderType, Side, TimeInForce
from streams.detectors import all_detectors
from streams.surveillance_state import Surveillance
from streams.synthetic import Tape


def child(t: Tape, at: float, parent: str, kind: OrderType, trigger: str) -> None:
    p = t.orders[parent]
    c = OrderSubmitted(
        order_id=f"{parent}-{kind.value}",
        account=p.account,
        producer_id=p.producer_id,
        strategy_id=p.strategy_id,
        client_order_id=p.client_order_id,
        instrument=p.instrument,
        side=Side.SELL if p.side is Side.BUY else Side.BUY,
        order_type=kind,
        quantity=p.quantity,
        trigger_price=Decimal(trigger),
        time_in_force=TimeInForce.GTC,
        venue="paper",
        parent_order_id=parent,
    )
    t.orders[c.order_id] = c
    t.filled[c.order_id] = Decimal(0)
    t._add(c, at)


def test_a_childs_fill_is_a_trade_its_submission_and_engine_cancel_are_not_orders() -> None:
    t = Tape()
    t.open_account("Q1", "q")
    t.config("order_to_trade", 1, min_orders="3", window_s="60", max_order_to_trade="2")
    t.submit(1.0, "Q1", "p1", "BUY", "1", "100.00")
    t.fill(1.5, "p1")
    child(t, 1.6, "p1", OrderType.TAKE_PROFIT, "101.00")
    child(t, 1.6, "p1", OrderType.STOP_LOSS, "99.00")
    t.fill(1.7, "p1-TAKE_PROFIT", price="101.00")
    stop = t.orders["p1-STOP_LOSS"]
    t._add(
        OrderCanceled(
            order_id=stop.order_id, account="Q1", filled_quantity=Decimal(0),
            leaves_quantity=stop.quantity, reason="OCO",
        ),
        1.7,
    )  # fmt: skip
    for i in range(2, 6):
        t.submit(float(i), "Q1", f"p{i}", "BUY", "1", "99.00")
    s = Surveillance(all_detectors())
    (alert,) = s.process_batch(t.events)
    ev = alert.payload.evidence
    # 5 orders over 2 trades (the parent's fill and its child's): 2.5 > 2 at p5; without
    # the child's fill, 3 orders over 1 trade raised at p3
    assert (ev["orders"], ev["cancels"], ev["trades"]) == (5, 0, 2)
    assert alert.payload.window_end == t.time(5.0)
