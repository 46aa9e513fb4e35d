"""Valuation and cash checks: equity independent of order and context, credit in the
valuation currency, fees rounded up where cash is checked, risk-reducing orders without
a mark."""

from __future__ import annotations

from decimal import Decimal, localcontext
from itertools import permutations

from engine.state import EngineState
from schemas.events import QuoteUpdated
from tests.engine.pure import Harness

D = Decimal
TEN = D("10")


def book(h: Harness, instrument: str, bid: Decimal, ask: Decimal, qty: Decimal = TEN) -> None:
    h.n += 1
    h.feed(
        QuoteUpdated(
            venue="v",
            instrument=instrument,
            bid_price=bid,
            bid_quantity=qty,
            ask_price=ask,
            ask_quantity=qty,
            update_id=h.n,
            exchange_ts=h.now,
        ),
        "md",
    )


def test_equity_does_not_depend_on_balance_order_or_context() -> None:
    """Live, a fold and a snapshot merge hold the balances in different orders; the
    equity recorded in a decision must be the same in all (inverse marks have 28+ digits)."""
    h = Harness(cash=D("9990000"))
    book(h, "BTC/USDC", D("29997"), D("30003"))
    book(h, "USDC/EURC", D("0.92260773"), D("0.92279227"))
    h.admin_deposit("BTC", D("1.7"))
    state: EngineState = h.state
    acc = state.account("A1")
    for k in range(1, 60):
        acc.balances["EURC"] = D(1200000 + k * 37) / 100
        items = list(acc.balances.items())
        seen = set()
        for order in permutations(items):
            acc.balances = dict(order)
            seen.add(state.equity("A1"))
            with localcontext() as c:
                c.prec = 12
                seen.add(state.equity("A1"))
        assert len(seen) == 1, (k, seen)
