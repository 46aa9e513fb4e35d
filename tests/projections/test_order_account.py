"""An order's events name its account: one naming another account (on another partition
of orders.lifecycle, which is keyed by account) is for an order that account never
placed, and is quarantined as for an unknown order. Applied, it moved the order only if
the order's partition happened to be read first: a live projection and its rebuild
could differ."""

from __future__ import annotations

from decimal import Decimal
from itertools import permutations

from projections.core import _OI
from projections.framework import Located
from schemas.events import CancelRequested, OrderCanceled, OrderSubmitted
from schemas.events.orders import OrderType, Side
from tests.projections.folding import Tape, fold


def _events() -> list[Located]:
    t = Tape()
    return [
        t.ev(
            OrderSubmitted(
                order_id="o1", account="ACC001", producer_id="p", strategy_id="s",
                client_order_id="c1", instrument="BTC/USDT", side=Side.BUY,
                order_type=OrderType.LIMIT, quantity=Decimal("2"), limit_price=Decimal("100"),
                venue="paper",
            )
        ),
        t.fill("BUY", "1", "100", leaves="1", acct="ACC002"),
        t.ev(CancelRequested(order_id="o1", account="ACC002", reason="x")),
        t.ev(
            OrderCanceled(
                order_id="o1", account="ACC002", filled_quantity=Decimal(0),
                leaves_quantity=Decimal(2), reason="x",
            )
        ),
    ]  # fmt: skip


def test_another_accounts_events_leave_the_order_in_any_interleaving() -> None:
    submitted, *others = _events()
    outcomes = set()
    for order in permutations(others):
        for at in range(len(others) + 1):  # the order's partition read before any, or later
            items = [*order[:at], submitted, *order[at:]]
            s, bad = fold("orders", items)
            row = s.dirty["orders"][("o1",)]
            assert row[_OI["status"]] == "SUBMITTED" and Decimal(row[_OI["filled_quantity"]]) == 0
            assert sorted(q.error for q in bad) == sorted(
                f"SkipEvent: {t} for unknown order o1"
                for t in ("Fill", "CancelRequested", "OrderCanceled")
            )
            outcomes.add(tuple(sorted(s.inserts["order_events"])))
    assert len(outcomes) == 1
