"""Valuation and cash checks: equity independent of order and context, credit in the
valuation currency, fees rounded up where cash is checked, risk-reducing orders without
a mark."""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_HALF_EVEN, Decimal, localcontext
from itertools import permutations

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.state import EngineState, fee_at_most, fill_fee
from schemas.events import MarketTrade, RiskLimits, Side
from tests.engine.pure import Harness, decision

D = Decimal
CROSS_MID = D("0.05")


def test_equity_does_not_depend_on_balance_order_or_context() -> None:
    """Live, a fold and a snapshot merge hold the balances in different orders; the
    equity recorded in a decision must be the same in all (inverse marks have 28+ digits)."""
    h = Harness(cash=D("9990000"))
    h.quote(D("29997"), D("30003"), instrument="BTC/USDC")
    h.quote(D("0.92260773"), D("0.92279227"), instrument="USDC/EURC")
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


CREDIT = RiskLimits(
    max_order_notional=D("1e9"),
    max_position=D("1e6"),
    max_open_orders=100,
    max_orders_per_window=100,
    price_collar_pct=D("0.5"),
    credit_limit=D("1000"),
)


def _credit_harness() -> Harness:
    h = Harness(CREDIT, cash=D("100000"))
    h.quote(D("30000"), D("30001"), D("1000"), instrument="BTC/USDC")
    h.quote(D("1500"), D("1501"), D("1000"), instrument="ETH/USDC")
    h.quote(D("0.05"), D("0.05001"), D("1000"), instrument="ETH/BTC")
    return h


def test_credit_is_in_the_valuation_currency_not_the_quote_asset() -> None:
    """1000 USDC of credit lends about 0.033 BTC on ETH/BTC, not 1000 BTC."""
    h = _credit_harness()
    d = decision(h.order(Side.BUY, D("19000"), D("0.05001"), instrument="ETH/BTC"))
    assert d.outcome == "REJECTED" and d.reason_codes == ("INSUFFICIENT_BALANCE",)
    d = decision(h.order(Side.BUY, D("0.6"), D("0.05001"), instrument="ETH/BTC"))
    assert d.outcome == "APPROVED"
    btc = h.state.account("A1").balances["BTC"]
    assert -btc * D("30000") <= D("1000")


def test_credit_is_one_amount_for_the_whole_account() -> None:
    """What one asset borrowed is not lent again on another."""
    h = _credit_harness()
    assert decision(h.order(Side.BUY, D("0.6"), D("0.05001"), instrument="ETH/BTC")).outcome == (
        "APPROVED"
    )  # about 900 USDC of the credit used, in BTC
    # 100500 USDC of BTC: within cash + 1000 of credit, not within cash + what is left.
    d = decision(h.order(Side.BUY, D("3.35"), D("30001")))
    assert d.outcome == "REJECTED" and d.reason_codes == ("INSUFFICIENT_BALANCE",)
    assert decision(h.order(Side.BUY, D("3.333"), D("30001"))).outcome == "APPROVED"


def test_no_credit_for_an_asset_without_a_mark() -> None:
    h = Harness(CREDIT, cash=D("100000"))
    h.quote(D("0.05"), D("0.05001"), D("1000"), instrument="ETH/BTC")  # no BTC price in USDC
    h.quote(D("1500"), D("1501"), D("1000"), instrument="ETH/USDC")
    d = decision(h.order(Side.BUY, D("0.01"), D("0.05001"), instrument="ETH/BTC"))
    # The notional (in BTC) cannot be valued in USDC either (MAX_ORDER_NOTIONAL v4).
    assert d.outcome == "REJECTED" and d.reason_codes == ("NO_MARK", "INSUFFICIENT_BALANCE")


OPEN = RiskLimits(
    max_order_notional=D("1e9"),
    max_position=D("1e6"),
    max_open_orders=100,
    max_orders_per_window=100,
    price_collar_pct=D("0.5"),
    drawdown_brake_pct=D("0.99"),
)


def _books(h: Harness, cross_mid: Decimal = CROSS_MID) -> None:
    for instrument, mid in (("BTC/USDC", D(30000)), ("ETH/USDC", D(1500)), ("ETH/BTC", cross_mid)):
        spread = mid * D("0.0001")
        h.quote(mid - spread, mid + spread, D("0.7"), instrument=instrument)


def test_a_buy_child_capped_at_the_cash_pays_the_rounded_fee_too() -> None:
    """cash / (price x (1 + fee)) leaves nothing for the fee's rounding up."""
    h = Harness(OPEN, cash=D("5000"))
    h.admin_deposit("ETH", D("2"))
    _books(h)
    h.order(
        Side.SELL,
        D("0.1"),
        D("0.049"),
        instrument="ETH/BTC",
        stop_loss=D("0.0505"),
        take_profit=D("0.0475"),
    )
    h.n += 1
    out = h.feed(
        MarketTrade(
            venue="v",
            instrument="ETH/BTC",
            trade_id=f"t{h.n}",
            price=D("0.0505"),
            quantity=D("0.2"),
            aggressor_side=Side.BUY,
            exchange_ts=h.now,
        ),
        "md",
    )
    fills = [e.payload for e in out if e.event_type == "Fill"]
    assert len(fills) == 1  # the stop-loss child, capped at the BTC the sale brought
    assert h.state.account("A1").balances["BTC"] >= 0


def test_a_plain_buy_of_all_the_cash_is_checked_with_the_fee_rounded_up() -> None:
    for k in range(200):
        ask = D("0.05") + D(k) / 10**7
        cash = D("0.0049945")
        h = Harness(OPEN, cash=D("1"))
        h.admin_deposit("BTC", cash)
        _books(h, ask / D("1.0001"))
        a = h.state.prices["ETH/BTC"].ask
        assert a is not None
        qty = (cash / (a * D("1.001"))).quantize(D("1e-8"), ROUND_DOWN)
        h.order(Side.BUY, qty, a, instrument="ETH/BTC")
        assert h.state.account("A1").balances["BTC"] >= 0, k


def test_an_unpriced_holding_does_not_freeze_risk_reducing_orders() -> None:
    """Without a mark the account cannot be valued: new risk is refused, reducing is not."""
    h = Harness(cash=D("100000"))
    h.quote(D("29999"), D("30001"))
    assert decision(h.order(Side.BUY, D("0.5"), D("30001"))).outcome == "APPROVED"
    h.admin_deposit("EURC", D("10"))  # no EURC price anywhere
    d = decision(h.order(Side.BUY, D("0.1"), D("30001")))
    assert d.outcome == "REJECTED" and d.reason_codes == ("NO_MARK",)
    d = decision(h.order(Side.SELL, D("0.5"), D("29999")))
    assert d.outcome == "APPROVED", d.reason_codes
    brake = next(r for r in d.rule_results if r.rule_id == "DRAWDOWN_BRAKE")
    assert "risk-reducing" in brake.detail and d.equity is None


def _exact_fee(qty: Decimal, price: Decimal, rate: Decimal, rounding: str) -> Decimal:
    with localcontext() as c:
        c.prec = 200
        return (qty * price * rate).quantize(D("0.00000001"), rounding)


@settings(max_examples=200, deadline=None)
@given(
    qty=st.decimals(D("0.00000001"), D("99999999999"), places=8),
    price=st.decimals(D("0.00000001"), D("99999999999"), places=8),
    rate=st.sampled_from([D("0"), D("0.001"), D("0.0004"), D("0.00075"), D("0.0123456789")]),
    prec=st.sampled_from([6, 12, 28]),
)
def test_a_fee_is_the_exact_fee_rounded_once_whatever_the_context(
    qty: Decimal, price: Decimal, rate: Decimal, prec: int
) -> None:
    """Fees were computed in the thread's ambient context: a notional past its precision was
    rounded before the fee was (and a fee past it made `quantize` raise), so a fee and the
    cash check's bound could depend on a context nobody set for them."""
    notional = _exact_notional(qty, price)
    with localcontext() as c:
        c.prec = prec
        charged = fill_fee(qty, price, rate)
        bound = fee_at_most(notional, rate)
    assert charged == _exact_fee(qty, price, rate, ROUND_HALF_EVEN)
    assert bound == _exact_fee(qty, price, rate, ROUND_CEILING) >= charged


def _exact_notional(qty: Decimal, price: Decimal) -> Decimal:
    with localcontext() as c:
        c.prec = 200
        return qty * price
