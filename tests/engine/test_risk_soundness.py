"""Risk checks and the paper venue agree: what an approved order can do is what was checked.

Each test reproduces a defect found by review (a limit breached after approval) and
failed before its fix.
"""

from __future__ import annotations

from decimal import Decimal

from schemas.events import MarketTrade, QuoteUpdated, RiskLimits, Side
from tests.engine.pure import Harness, decision

D = Decimal


def _quote(h: Harness, instrument: str, bid: str, ask: str, qty: str = "1000000") -> None:
    h.n += 1
    h.feed(
        QuoteUpdated(
            venue="v",
            instrument=instrument,
            bid_price=D(bid),
            bid_quantity=D(qty),
            ask_price=D(ask),
            ask_quantity=D(qty),
            update_id=h.n,
            exchange_ts=h.now,
        ),
        "md",
    )


def _print(h: Harness, instrument: str, price: str, qty: str) -> None:
    h.n += 1
    h.tick()
    h.feed(
        MarketTrade(
            venue="v",
            instrument=instrument,
            trade_id=f"t{h.n}",
            price=D(price),
            quantity=D(qty),
            aggressor_side=Side.BUY,
            exchange_ts=h.now,
        ),
        "md",
    )


def test_cash_committed_on_one_pair_is_not_free_on_another() -> None:
    """A resting BTC/USDC buy commits USDC; a USDC/EURC sell may not commit it again."""
    h = Harness(RiskLimits(max_position=D("1e6"), max_order_notional=D("1e6")), cash=D("100000"))
    _quote(h, "BTC/USDC", "29999", "30001")
    _quote(h, "USDC/EURC", "0.9299", "0.9301")
    assert decision(h.order(Side.BUY, D("3"), D("29000"))).outcome == "APPROVED"
    d = decision(h.order(Side.SELL, D("90000"), D("0.9301"), instrument="USDC/EURC"))
    assert d.outcome == "REJECTED" and "INSUFFICIENT_BALANCE" in d.reason_codes
    # And the other way round: USDC offered for EURC is not free to bid for BTC.
    h2 = Harness(RiskLimits(max_position=D("1e6"), max_order_notional=D("1e6")), cash=D("100000"))
    _quote(h2, "BTC/USDC", "29999", "30001")
    _quote(h2, "USDC/EURC", "0.9299", "0.9301")
    sell = h2.order(Side.SELL, D("90000"), D("0.9400"), instrument="USDC/EURC")
    assert decision(sell).outcome == "APPROVED"
    d = decision(h2.order(Side.BUY, D("3"), D("29000")))
    assert d.outcome == "REJECTED" and "INSUFFICIENT_BALANCE" in d.reason_codes
    _print(h, "BTC/USDC", "28990", "5")
    _print(h, "USDC/EURC", "0.9400", "100000")
    assert h.state.account("A1").balances["USDC"] >= 0
