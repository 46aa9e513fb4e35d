"""Risk gaps found in session 22 (helper-120): each test failed before its fix."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from schemas.events import MarketTrade, RiskLimits, RiskLimitsChanged, Side
from tests.engine.pure import INSTRUMENT, Harness, decision

D = Decimal


def _print(h: Harness, price: str, qty: str = "100") -> list[Any]:
    h.n += 1
    h.tick()
    return h.feed(
        MarketTrade(
            venue="v",
            instrument=INSTRUMENT,
            trade_id=f"t{h.n}",
            price=D(price),
            quantity=D(qty),
            aggressor_side=Side.BUY,
            exchange_ts=h.now,
        ),
        "md",
    )


def test_a_stop_loss_child_and_a_resting_sell_stay_within_max_position() -> None:
    """Long 10 (the limit) with a stop-loss for the 10, and BTC deposited besides: a sell
    of 20 counted the position as there to sell, but the stop sells it first when it
    triggers, and the sell then took the pair short 20, twice the limit (MAX_POSITION v3
    counts the account's open stop/take children on the order's side as filled first)."""
    limits = RiskLimits(max_position=D("10"), max_order_notional=D("1e9"))
    h = Harness(limits, cash=D("1000000"))
    h.admin_deposit("BTC", D("20"))
    h.quote(D("99"), D("101"))
    bought = decision(h.order(Side.BUY, D("10"), D("101"), stop_loss=D("96")))
    assert bought.outcome == "APPROVED"
    assert h.state.account("A1").positions[INSTRUMENT] == 10
    d = decision(h.order(Side.SELL, D("20"), D("104")))
    _print(h, "95")  # the stop triggers and sells the 10
    _print(h, "104")  # the resting sell fills
    position = h.state.account("A1").positions[INSTRUMENT]
    assert abs(position) <= limits.max_position, (d.outcome, position)
    assert d.outcome == "REJECTED" and "MAX_POSITION" in d.reason_codes


def test_without_the_child_the_same_sell_passes() -> None:
    """The same sell with no stop-loss armed: the position is there to net against."""
    limits = RiskLimits(max_position=D("10"), max_order_notional=D("1e9"))
    h = Harness(limits, cash=D("1000000"))
    h.admin_deposit("BTC", D("20"))
    h.quote(D("99"), D("101"))
    assert decision(h.order(Side.BUY, D("10"), D("101"))).outcome == "APPROVED"
    assert decision(h.order(Side.SELL, D("20"), D("104"))).outcome == "APPROVED"
    _print(h, "104")
    assert h.state.account("A1").positions[INSTRUMENT] == -10


def test_a_lowered_position_limit_counts_the_children_too() -> None:
    """The limits change's pass measures as MAX_POSITION v3: long 10 with a stop for the
    10 and a sell of 20 resting (worst case -20 once the stop sold), a limit lowered to
    15 cancels the sell; the pass measured -10 before and left it."""
    limits = RiskLimits(max_position=D("30"), max_order_notional=D("1e9"))
    h = Harness(limits, cash=D("1000000"))
    h.admin_deposit("BTC", D("20"))
    h.quote(D("99"), D("101"))
    h.order(Side.BUY, D("10"), D("101"), stop_loss=D("96"))
    sell = h.order(Side.SELL, D("20"), D("104"))
    assert decision(sell).outcome == "APPROVED"
    lower = limits.model_copy(update={"max_position": D("15")})
    out = h.admin(RiskLimitsChanged(scope="*", config_version=2, limits=lower, changed_by="a"))
    ended = [e.payload for e in out if e.event_type == "OrderCanceled"]
    assert [c.reason for c in ended] == ["MAX_POSITION"]
    _print(h, "95")
    _print(h, "104")
    assert h.state.account("A1").positions[INSTRUMENT] == 0
