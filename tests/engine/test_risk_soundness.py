"""Risk checks and the paper venue agree: what an approved order can do is what was checked.

Each test reproduces a defect found by review (a limit breached after approval) and
failed before its fix.
"""

from __future__ import annotations

import copy
from datetime import timedelta
from decimal import Decimal
from typing import Any
from unittest.mock import patch

from hypothesis import given, settings
from hypothesis import strategies as st

from engine import auth
from engine.processor import catch_up, control, process
from engine.risk.evaluator import build_context
from engine.state import VALUATION
from engine.venue.paper import PaperVenue
from schemas import new_event
from schemas.events import (
    KillSwitchEngaged,
    OrderIntent,
    OrderType,
    QuoteUpdated,
    RiskLimits,
    RiskLimitsChanged,
    Side,
)
from tests.engine.pure import INSTRUMENT, Harness, decision

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


def _print(h: Harness, instrument: str, price: str, qty: str) -> list[Any]:
    """A trade print on `instrument`; the engine's outputs for it."""
    h.tick()
    return h.trade(D(price), D(qty), instrument=instrument)


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


def test_a_stop_loss_child_sells_only_what_is_free() -> None:
    """Buy 1 BTC with a stop-loss, sell it by hand: the stop has nothing left to sell."""
    h = Harness(cash=D("100000"))
    h.quote(D("29999"), D("30001"))
    assert decision(h.order(Side.BUY, D("1"), D("30001"), stop_loss=D("29000"))).outcome == (
        "APPROVED"
    )
    assert decision(h.order(Side.SELL, D("1"), D("29999"))).outcome == "APPROVED"
    h.tick()
    out = h.trade(D("28900"))
    acc = h.state.account("A1")
    assert acc.balances.get("BTC", D(0)) == 0 and acc.positions.get(INSTRUMENT, D(0)) == 0
    assert "Fill" not in [e.event_type for e in out]
    assert not [o for o in h.state.open_orders_of("A1")]


def test_a_stop_loss_child_leaves_what_a_resting_sell_commits() -> None:
    """Half the BTC is offered on a resting sell: the stop sells only the other half."""
    h = Harness(cash=D("100000"))
    h.quote(D("29999"), D("30001"))
    h.order(Side.BUY, D("1"), D("30001"), stop_loss=D("29000"))
    assert decision(h.order(Side.SELL, D("0.5"), D("31000"))).outcome == "APPROVED"
    h.tick()
    out = h.trade(D("28900"))
    fills = [e.payload for e in out if e.event_type == "Fill"]
    assert [f.quantity for f in fills] == [D("0.5")]
    h.tick()
    h.trade(D("31000"))  # the resting sell fills: nothing oversold
    acc = h.state.account("A1")
    assert acc.balances["BTC"] == 0 and acc.positions[INSTRUMENT] == 0


def test_a_child_never_reopens_a_position_under_the_kill_switch() -> None:
    """A risk-reducing sell with a stop-loss passes the kill switch; its buy child, which
    would re-open the long a plain buy may not, is canceled when it triggers."""
    h = Harness(cash=D("1000000"))
    h.quote(D("29999"), D("30001"))
    h.order(Side.BUY, D("1"), D("30001"))
    h.admin(KillSwitchEngaged(scope="A1", engaged_by="admin", reason="ops"))
    d = decision(h.order(Side.SELL, D("1"), D("29999"), stop_loss=D("31000")))
    assert d.outcome == "APPROVED"
    assert h.state.account("A1").positions[INSTRUMENT] == 0
    h.tick()
    out = h.trade(D("31500"))
    assert "Fill" not in [e.event_type for e in out]
    assert h.state.account("A1").positions[INSTRUMENT] == 0
    assert decision(h.order(Side.BUY, D("1"), D("31500"))).reason_codes == ("KILL_SWITCH_ENGAGED",)


def test_a_backdated_order_is_valued_at_the_book_it_fills_at() -> None:
    """The venue fills at the quote in force at the intent's time: risk values it there."""
    limits = RiskLimits(max_order_notional=D("10000"))
    h = Harness(limits, cash=D("10000"))
    h.quote(D("59999"), D("60000"))
    then = h.now
    h.tick(5)
    h.quote(D("29999"), D("30001"))  # the newest book: half the price
    intent = OrderIntent(
        producer_id="p1",
        strategy_id="s",
        account="A1",
        client_order_id="bd1",
        instrument=INSTRUMENT,
        side=Side.BUY,
        order_type=OrderType.MARKET,
        quantity=D("0.3"),
    )
    event = new_event(
        auth.sign(intent, h.key), producer="p1", occurred_at=then + timedelta(milliseconds=1)
    )
    out = process(h.state, event, h.ctx)
    d = decision(out)
    fills = [e.payload for e in out if e.event_type == "Fill"]
    assert all(f.quantity * f.price <= limits.max_order_notional for f in fills)
    assert h.state.account("A1").balances["USDC"] >= 0
    if out[0].event_type == "RiskDecision":  # (intake may also refuse it for its time)
        assert d.outcome == "REJECTED" and "MAX_ORDER_NOTIONAL" in d.reason_codes
    # Whatever intake does: the rules value the order at the book of its time.
    ctx = build_context(h.state, intent, then, consumer_lag=0, taker_fee_rate=D("0.001"))
    assert ctx.best_ask == h.state.price(INSTRUMENT).book_at(then).ask == D("60000")  # type: ignore[union-attr]
    assert ctx.execution_price == D("60000")


def test_a_limit_sell_is_valued_at_what_it_can_fill_at() -> None:
    """A marketable limit sell fills at the bid, above its limit: valued there."""
    limits = RiskLimits(max_order_notional=D("10000"))
    h = Harness(limits, cash=D("1000"))
    h.admin_deposit("BTC", D("1"))
    h.quote(D("29999"), D("30001"))
    d = decision(h.order(Side.SELL, D("0.35"), D("28500")))  # 5% under: in the collar
    assert d.outcome == "REJECTED" and "MAX_ORDER_NOTIONAL" in d.reason_codes
    ok = h.order(Side.SELL, D("0.33"), D("28500"))
    assert decision(ok).outcome == "APPROVED"
    fills = [e.payload for e in ok if e.event_type == "Fill"]
    assert fills and all(f.quantity * f.price <= limits.max_order_notional for f in fills)


def test_an_unclassified_asset_is_rejected() -> None:
    """Stablecoins the engine does not know are not thereby permitted: fail closed."""
    h = Harness(cash=D("100000"))
    for instrument in ("USDS/USDC", "FRAX/USDC", "USD1/USDC", "EURCV/USDC"):
        _quote(h, instrument, "0.9999", "1.0001")
        d = decision(h.order(Side.BUY, D("10"), D("1.0001"), instrument=instrument))
        assert d.outcome == "REJECTED" and d.reason_codes == ("ASSET_NOT_PERMITTED",), instrument
    _quote(h, "USDT/USDC", "0.9999", "1.0001")
    d = decision(h.order(Side.BUY, D("10"), D("1.0001"), instrument="USDT/USDC"))
    assert d.reason_codes == ("STABLECOIN_NOT_PERMITTED",)
    # Configurable: a listed crypto asset trades; a known stablecoin never passes as one.
    h.admin(
        RiskLimitsChanged(
            scope="*",
            config_version=2,
            limits=RiskLimits(crypto_assets=("BTC", "FRAX", "USDT")),
            changed_by="admin",
        )
    )
    d = decision(h.order(Side.BUY, D("10"), D("1.0001"), instrument="FRAX/USDC"))
    assert d.outcome == "APPROVED"
    d = decision(h.order(Side.BUY, D("10"), D("1.0001"), instrument="USDT/USDC"))
    assert d.reason_codes == ("STABLECOIN_NOT_PERMITTED",)


def test_stablecoins_are_valued_at_their_price_not_at_one() -> None:
    """EURC in a USDC account is worth its EURC/USDC price: a depeg is drawdown."""
    h = Harness(cash=D("1"))
    h.admin_deposit("EURC", D("1000000"))
    h.quote(D("29999"), D("30001"))
    _quote(h, "EURC/USDC", "1.0799", "1.0801", qty="1000")
    d = decision(h.order(Side.BUY, D("0.00001"), D("30001")))
    assert d.outcome == "APPROVED" and d.equity > D("1079000")
    _quote(h, "EURC/USDC", "0.4999", "0.5001", qty="1000")
    d = decision(h.order(Side.BUY, D("0.00001"), D("30001")))
    assert d.outcome == "REJECTED" and "DRAWDOWN_BRAKE" in d.reason_codes


def test_a_stablecoin_without_a_price_cannot_be_valued() -> None:
    h = Harness(cash=D("100000"))
    h.admin_deposit("EURC", D("10"))
    h.quote(D("29999"), D("30001"))
    d = decision(h.order(Side.BUY, D("0.01"), D("30001")))
    assert d.outcome == "REJECTED" and "NO_MARK" in d.reason_codes
    _quote(h, "USDC/EURC", "0.9299", "0.9301")  # the inverse pair values it
    assert decision(h.order(Side.BUY, D("0.01"), D("30001"))).outcome == "APPROVED"
    acc = h.state.account("A1")
    assert h.state.mark("EURC", acc) == VALUATION.divide(1, D("0.93"))  # its fixed context


def test_an_attached_trigger_is_a_notional_too() -> None:
    """MAX_ORDER_NOTIONAL v3: the stop/take children are armed without a decision, so the
    intent's check covers them. A stop-loss typed at ten times the market (290000 for 29000)
    passed v2 and sold the whole position at the first print after the buy; a take-profit
    that far off would sell ten times the notional. Sensible triggers still pass."""
    limits = RiskLimits(max_order_notional=D("100000"), max_position=D("1e6"))
    h = Harness(limits, cash=D("1000000"))
    h.quote(D("29999"), D("30001"))
    typos: list[dict[str, Any]] = [{"stop_loss": D("290000")}, {"take_profit": D("330000")}]
    for extra in typos:
        d = decision(h.order(Side.BUY, D("3"), D("30001"), **extra))
        assert d.outcome == "REJECTED" and "MAX_ORDER_NOTIONAL" in d.reason_codes, extra
        result = next(r for r in d.rule_results if r.rule_id == "MAX_ORDER_NOTIONAL")
        assert result.rule_version == 5 and "attached" in result.detail
    assert h.state.account("A1").positions.get(INSTRUMENT, D(0)) == 0
    h.tick()
    h.trade(D("30000"))  # no stop-loss armed: nothing sold
    assert h.state.account("A1").positions.get(INSTRUMENT, D(0)) == 0
    # Within the limit at every trigger: approved, children armed.
    sane = h.order(Side.BUY, D("3"), D("30001"), stop_loss=D("29000"), take_profit=D("33000"))
    assert decision(sane).outcome == "APPROVED"
    children = [o for o in h.state.open_orders_of("A1") if o.parent_order_id]
    assert sorted(str(o.trigger_price) for o in children) == ["29000", "33000"]
    # A sell's children (buys) are valued at their triggers as well.
    d = decision(h.order(Side.SELL, D("3"), D("29999"), stop_loss=D("310000")))
    assert d.reason_codes == ("MAX_ORDER_NOTIONAL",)


def test_a_trigger_on_the_wrong_side_of_its_order_is_refused() -> None:
    """PRICE_COLLAR v2. A stop-loss sell typed above the market (30,500 on a buy at 30,001,
    within every notional limit) was approved, and the stop sold the whole fill at the
    first print after it. Each trigger must lie beyond the entry (a marketable order's at
    the touch it meets), and a stop beyond the reference and the touch too; at the line is
    the wrong side."""
    limits = RiskLimits(max_order_notional=D("1e6"), max_position=D("1e6"))
    h = Harness(limits, cash=D("1000000"))
    h.admin_deposit("BTC", D("10"))
    h.quote(D("29999"), D("30001"))
    wrong: list[tuple[Side, str | None, dict[str, Any]]] = [
        (Side.BUY, "30001", {"stop_loss": D("30500")}),
        (Side.BUY, "30001", {"stop_loss": D("30000")}),  # at the reference
        (Side.BUY, "30001", {"take_profit": D("30001")}),  # at the entry
        (Side.BUY, None, {"take_profit": D("29000")}),
        (Side.BUY, "29500", {"stop_loss": D("29800")}),  # resting: above its own entry
        (Side.SELL, "29999", {"stop_loss": D("29500")}),
        (Side.SELL, "29999", {"take_profit": D("30500")}),
        (Side.SELL, None, {"stop_loss": D("29990")}),
        # inside the spread (bid 29,999, ask 30,001): the next print at the touch fires it
        (Side.BUY, None, {"stop_loss": D("29999.5")}),
        (Side.BUY, None, {"take_profit": D("30000.5")}),  # the market buy fills at the ask
        (Side.SELL, None, {"take_profit": D("29999.5")}),
    ]
    for side, limit, extra in wrong:
        d = decision(h.order(side, D("1"), None if limit is None else D(limit), **extra))
        assert (d.outcome, d.reason_codes) == ("REJECTED", ("TRIGGER_WRONG_SIDE",)), extra
        result = next(r for r in d.rule_results if r.rule_id == "PRICE_COLLAR")
        assert result.rule_version == 4 and "not" in result.detail
    h.tick()
    h.trade(D("30000"))
    assert h.state.account("A1").positions.get(INSTRUMENT, D(0)) == 0
    assert not [o for o in h.state.open_orders_of("A1") if o.parent_order_id]
    right: list[tuple[Side, str | None, dict[str, Any]]] = [
        (Side.BUY, "30001", {"stop_loss": D("29500"), "take_profit": D("30500")}),
        (Side.BUY, "29500", {"stop_loss": D("29400"), "take_profit": D("29800")}),
        (Side.SELL, "29999", {"stop_loss": D("30500"), "take_profit": D("29500")}),
        (Side.SELL, None, {"stop_loss": D("30100"), "take_profit": D("29900")}),
        # marketable: enters at the ask, so a take-profit below its limit is still above it
        (Side.BUY, "30100", {"take_profit": D("30050")}),
    ]
    for side, limit, extra in right:
        d = decision(h.order(side, D("1"), None if limit is None else D(limit), **extra))
        assert d.outcome == "APPROVED", (side, limit, extra, d.reason_codes)


def test_an_order_finer_than_the_engine_counts_is_refused() -> None:
    """Quantities are summed in the decimal context (28 significant digits). A resting buy
    of 0.10000000000000000000000000001 was approved, filled 0.1 on the first print and then
    1E-29 on every later print, for ever: `filled` rounded back to 0.1 each time, so the
    order never completed, each Fill reported no leaves while the order stayed open, and
    the BTC bought in those fills never reached the balance. Now a typed rejection, like
    a quantity or price finer than 1e-8 (the step fees and capped children are rounded
    to): no dust is ever left to fill."""
    h = Harness(RiskLimits(max_order_notional=D("1e9"), max_position=D("1e6")))
    h.quote(D("29999"), D("30001"))
    fine = {
        "quantity": D("0.10000000000000000000000000001"),
        "sub-satoshi": D("0.123456789"),
    }
    for what, qty in fine.items():
        out = h.order(Side.BUY, qty, D("29000"))
        assert getattr(decision(out), "reason", None) == "INVALID_INTENT", what
        assert "OrderSubmitted" not in [e.event_type for e in out]
    triggers: list[dict[str, Any]] = [
        {"stop_loss": D("28000.000000001")},
        {"take_profit": D("31000.5000000001")},
    ]
    for extra in triggers:
        d = decision(h.order(Side.BUY, D("0.1"), D("29000"), **extra))
        assert getattr(d, "reason", None) == "INVALID_INTENT", extra
    d = decision(h.order(Side.BUY, D("0.1"), D("29000.000000001")))
    assert getattr(d, "reason", None) == "INVALID_INTENT"
    # On the grid: approved, and a partial fill leaves a fillable remainder that completes.
    on_grid = h.order(Side.BUY, D("0.12345678"), D("29000.00000001"))
    assert decision(on_grid).outcome == "APPROVED"
    h.tick()
    h.trade(D("28990"), D("0.1"))
    h.tick()
    h.trade(D("28990"), D("1"))
    assert h.state.open_orders_of("A1") == []
    assert h.state.account("A1").balances["BTC"] == D("0.12345678")


_STEPS = st.integers(1, 10**12).map(lambda n: D(n).scaleb(-8))
"""Amounts on the 1e-8 grid, 1e-8 to 10,000."""


@settings(max_examples=60, deadline=None)
@given(_STEPS.filter(lambda q: q <= 5), st.lists(_STEPS, min_size=1, max_size=6))
def test_a_resting_buy_on_the_grid_fills_up_exactly(qty: Decimal, sizes: list[Decimal]) -> None:
    """No dust: partial fills of any sizes leave exact leaves, which the next crossing
    print fills; the fills add up to the quantity, and the balances move by exactly them."""
    h = Harness(RiskLimits(max_order_notional=D("1e9"), max_position=D("1e6")), cash=D("1e6"))
    h.quote(D("29999"), D("30001"))
    assert decision(h.order(Side.BUY, qty, D("29000.5"))).outcome == "APPROVED"
    fills = []
    for size in [*sizes, qty]:  # the last print covers whatever is left
        h.tick()
        fills += [e.payload for e in h.trade(D("28990"), size) if e.event_type == "Fill"]
    assert h.state.open_orders_of("A1") == []
    assert sum(f.quantity for f in fills) == qty
    assert fills[-1].leaves_quantity == 0 and all(f.leaves_quantity > 0 for f in fills[:-1])
    acc = h.state.account("A1")
    assert acc.balances["BTC"] == qty
    assert acc.balances["USDC"] == D("1e6") - qty * D("29000.5") - sum(f.fee for f in fills)


_MARKET_STEP = st.one_of(
    st.tuples(st.just("market"), st.sampled_from([Side.BUY, Side.SELL]), st.booleans()),
    st.tuples(st.just("limit"), st.sampled_from([Side.BUY, Side.SELL]), st.integers(-3, 3)),
    st.tuples(st.just("print"), st.integers(-6, 6)),
    st.tuples(st.just("lagged"), st.sampled_from([Side.BUY, Side.SELL])),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_MARKET_STEP, min_size=1, max_size=25))
def test_no_market_buy_is_open_when_anything_values_one(steps: list[tuple[Any, ...]]) -> None:
    """`EngineState.market_buy_price` raises without a price, and `free()` (the child cap)
    calls it for open market buys. It cannot raise there: the paper venue ends a market
    order's remainder in its own submission, before it arms the children, so no market buy
    is open when a child is capped, nor between inputs. Checked at every cap and after
    every input, with market buys carrying stop/take children, lagged intents meeting kept
    prints at once, and an instrument (ETH/USDC) no price ever reached."""
    h = Harness(
        RiskLimits(max_order_notional=D("1e9"), max_position=D("1e6"), credit_limit=D("5000")),
        cash=D("1000000"),
    )
    h.admin_deposit("BTC", D("10"))
    h.quote(D("29999"), D("30001"), D("0.3"))  # less than an order: remainders expire
    capped = PaperVenue._child_quantity

    def no_market_buy_open(state: Any) -> None:
        for acc in state.accounts.values():
            assert not acc.exposure.buy_market_leaves, acc.account
        assert not [o for o in state.orders.values() if not o.done and o.order_type == "MARKET"]

    def checked(self: PaperVenue, state: Any, child: Any, price: Decimal) -> Decimal:
        no_market_buy_open(state)
        return capped(self, state, child, price)

    with patch.object(PaperVenue, "_child_quantity", checked):
        h.order(Side.BUY, D("0.1"), instrument="ETH/USDC")  # no price: rejected
        for step in steps:
            if step[0] == "market":
                extra: dict[str, Any] = (
                    {"stop_loss": D("29500"), "take_profit": D("30500")} if step[2] else {}
                )
                if step[1] is Side.SELL:
                    extra = {k: 60000 - v for k, v in extra.items()}
                h.order(step[1], D("0.5"), **extra)
            elif step[0] == "limit":
                stop = D("29000" if step[1] is Side.BUY else "31000")  # its side (PRICE_COLLAR v2)
                h.order(step[1], D("0.5"), D(30000 + 100 * step[2]), stop_loss=stop)
            elif step[0] == "print":
                h.trade(D(30000 + 100 * step[1]), D("0.3"))
            else:
                h.now -= timedelta(milliseconds=20)  # stamped before the last print read
                h.order(
                    step[1], D("0.5"), take_profit=D("30100" if step[1] is Side.BUY else "29900")
                )
            no_market_buy_open(h.state)


def _flat_across_pairs(credit: str = "0") -> Harness:
    """Long 1 on BTC/USDC and short 1 on BTC/EURC: bought with USDC, sold for EURC, no
    BTC held. Each pair's position is open; the account holds no BTC at all."""
    limits = RiskLimits(max_position=D("100"), max_order_notional=D("1e7"), credit_limit=D(credit))
    h = Harness(limits, cash=D("100000"))
    _quote(h, "BTC/USDC", "29999", "30001")
    _quote(h, "BTC/EURC", "27999", "28001")
    _quote(h, "EURC/USDC", "1.0713", "1.0715")
    assert decision(h.order(Side.BUY, D("1"), D("30001"))).outcome == "APPROVED"
    d = decision(h.order(Side.SELL, D("1"), D("27999"), instrument="BTC/EURC"))
    assert d.outcome == "APPROVED"
    acc = h.state.account("A1")
    assert acc.positions == {"BTC/USDC": D("1"), "BTC/EURC": D("-1")}
    assert acc.balances["BTC"] == 0
    return h


def test_the_kill_switch_counts_the_asset_not_only_the_pair() -> None:
    """KILL_SWITCH v2 / DRAWDOWN_BRAKE v9: "risk-reducing" also asks that the order take
    the base asset's holding toward zero without flipping it. v1 looked at the pair's
    position alone: an account that bought BTC with USDC and sold it for EURC holds no BTC,
    but is "short" BTC/EURC, so under the kill switch a buy of 0.9 BTC/EURC passed as
    closing that short and the account held 0.9 BTC, new risk; and, with credit, a sell of
    BTC/USDC "closed" the long by going short BTC."""
    h = _flat_across_pairs()
    h.admin(KillSwitchEngaged(scope="A1", engaged_by="admin", reason="ops"))
    d = decision(h.order(Side.BUY, D("0.9"), D("28001"), instrument="BTC/EURC"))
    assert (d.outcome, d.reason_codes) == ("REJECTED", ("KILL_SWITCH_ENGAGED",))
    assert h.state.account("A1").balances["BTC"] == 0
    h = _flat_across_pairs(credit="50000")
    h.admin(KillSwitchEngaged(scope="A1", engaged_by="admin", reason="ops"))
    d = decision(h.order(Side.SELL, D("1"), D("29999")))
    assert (d.outcome, d.reason_codes) == ("REJECTED", ("KILL_SWITCH_ENGAGED",))
    assert h.state.account("A1").balances["BTC"] == 0
    # What does reduce the holding still passes: BTC bought on one pair, sold on it.
    h.admin_deposit("BTC", D("1"))
    assert decision(h.order(Side.SELL, D("1"), D("29999"))).outcome == "APPROVED"
    assert h.state.account("A1").balances["BTC"] == 0


def test_the_kill_switch_cancels_a_resting_order_that_reopens_the_asset() -> None:
    """The venue's side of the same rule (`PaperVenue.halt` and the print's backstop): a
    buy resting on BTC/EURC when the switch is engaged closes that pair's short but buys
    BTC the account does not hold; it is canceled, and no print fills it."""
    h = _flat_across_pairs()
    assert decision(h.order(Side.BUY, D("0.9"), D("27000"), instrument="BTC/EURC")).outcome == (
        "APPROVED"
    )
    out = h.admin(KillSwitchEngaged(scope="A1", engaged_by="admin", reason="ops"))
    assert [e.payload.reason for e in out if e.event_type == "OrderCanceled"] == ["KILL_SWITCH"]
    _print(h, "BTC/EURC", "26900", "5")
    assert h.state.account("A1").balances["BTC"] == 0
    # The backstop at the print alone (the order left resting, as a lost halt would).
    h = _flat_across_pairs()
    h.order(Side.BUY, D("0.9"), D("27000"), instrument="BTC/EURC")
    with patch.object(PaperVenue, "halt", lambda *a, **k: None):
        h.admin(KillSwitchEngaged(scope="A1", engaged_by="admin", reason="ops"))
    out = _print(h, "BTC/EURC", "26900", "5")
    assert "Fill" not in [e.event_type for e in out]
    assert h.state.account("A1").balances["BTC"] == 0


def test_a_lower_credit_limit_cancels_the_resting_orders_it_no_longer_covers() -> None:
    """A limits change lowering `credit_limit` leaves an account over its credit: its
    resting orders that borrow on it are canceled at once (`CREDIT_LIMIT`, caused by the
    change), newest first until it fits, on the worker that decides the change and on
    every worker reading it. Before, a buy resting on 19,500 of a 50,000 credit stayed
    when the credit went to 0, filled at the next print with the one cash covered, and took
    USDC 28,380.68 below zero with no credit. `catch_up` redoes a lost transaction's with
    the same ids, and not a pass the log shows committed (`processor._limits_committed`:
    what the credit covers moves with the marks, and on a restart's state the pass would
    cancel what no live worker did)."""

    def limits(credit: str, version: int) -> RiskLimitsChanged:
        return RiskLimitsChanged(
            scope="*",
            config_version=version,
            limits=RiskLimits(
                max_position=D("100"), max_order_notional=D("1e7"), credit_limit=D(credit)
            ),
            changed_by="admin",
        )

    h = Harness(limits("50000", 1).limits, cash=D("10000"))
    h.quote(D("29999"), D("30001"))
    first = decision(h.order(Side.BUY, D("0.3"), D("29500")))  # 8,859: on cash
    second = decision(h.order(Side.BUY, D("1"), D("29500")))  # on credit
    assert (first.outcome, second.outcome) == ("APPROVED", "APPROVED")
    before = copy.deepcopy(h.state)
    out = h.admin(limits("0", 2))
    ended = [e.payload for e in out if e.event_type == "OrderCanceled"]
    assert [(c.order_id, c.reason) for c in ended] == [(second.order_id, "CREDIT_LIMIT")]
    assert list(h.state.account("A1").open_orders) == [first.order_id]
    _print(h, "BTC/USDC", "29400", "5")
    assert h.state.account("A1").balances["USDC"] >= 0
    # A worker reading the accepted change from risk.config cancels the same, caused by it.
    fact = next(e for e in out if e.event_type == "RiskLimitsChanged")
    reader = copy.deepcopy(before)
    read = control(reader, fact, h.ctx)
    ended = [e.payload for e in read if e.event_type == "OrderCanceled"]
    assert [(c.order_id, c.reason) for c in ended] == [(second.order_id, "CREDIT_LIMIT")]
    assert all(e.causation_id == fact.event_id for e in read)
    assert catch_up(reader, h.ctx, lambda _account: True) == []  # its cancel is on the log
    # One whose transaction was lost: catch_up redoes it with the same ids.
    lost = copy.deepcopy(before)
    lost.apply(fact)
    redone = catch_up(lost, h.ctx, lambda _account: True)
    assert [e.event_id for e in redone] == [e.event_id for e in read]

    # A change the credit still covers cancels nothing; BTC rising then takes the ETH/BTC
    # buy's borrowed BTC past it. No live worker cancels, and no restart either: the
    # pass's `RestingOrdersChecked` shows its transaction committed. On a log from before
    # that record, a decision of the account under the change's version shows it; without
    # one nothing does, and a restart redoes its pass on its state (fail closed).
    def restart(decided: bool, recorded: bool = True) -> list[Any]:
        h = Harness(limits("5000", 1).limits, cash=D("10000"))
        h.quote(D("29999"), D("30001"))
        _quote(h, "ETH/BTC", "0.05", "0.0501")
        buy = decision(h.order(Side.BUY, D("1"), D("0.0499"), instrument="ETH/BTC"))
        assert buy.outcome == "APPROVED"
        out = h.admin(limits("2000", 2))  # 0.0499 BTC borrowed, 1,497 at 30,000: covered
        assert [e.event_type for e in out] == ["RiskLimitsChanged", "RestingOrdersChecked"]
        if not recorded:  # a log from before the record: as if it had not been folded
            h.state.account("A1").unheld.discard(out[0].event_id)
        if decided:
            later = decision(h.order(Side.BUY, D("0.01"), D("29000")))
            assert (later.outcome, later.risk_config_version) == ("APPROVED", 2)
        _print(h, "BTC/USDC", "45000", "1")  # now 2,245.5: over
        return catch_up(h.state, h.ctx, lambda _account: True)

    assert restart(decided=True) == [] == restart(decided=False)
    assert restart(decided=True, recorded=False) == []
    unproved = restart(decided=False, recorded=False)
    assert [e.payload.reason for e in unproved if e.event_type == "OrderCanceled"] == [
        "CREDIT_LIMIT"
    ]


def test_under_the_kill_switch_a_child_does_not_go_short_the_asset_on_credit() -> None:
    """A stop/take child closes its pair's position, capped at what is free, the credit's
    loan included; under the kill switch it may not take the base asset's holding past
    zero either (`PaperVenue._holding_room`, as for resting parents). Before: long 1
    BTC/USDC with a stop-loss, the BTC sold on BTC/EURC, the switch engaged; the stop hit
    and sold 1 BTC on credit, the account short BTC under the switch."""
    h = Harness(
        RiskLimits(max_position=D("100"), max_order_notional=D("1e7"), credit_limit=D("50000")),
        cash=D("100000"),
    )
    _quote(h, "BTC/USDC", "29999", "30001")
    _quote(h, "BTC/EURC", "27999", "28001")
    _quote(h, "EURC/USDC", "1.0713", "1.0715")
    buy = h.order(Side.BUY, D("1"), D("30001"), stop_loss=D("29000"))
    assert decision(buy).outcome == "APPROVED"
    d = decision(h.order(Side.SELL, D("1"), D("27999"), instrument="BTC/EURC"))
    assert d.outcome == "APPROVED" and h.state.account("A1").balances["BTC"] == 0
    h.admin(KillSwitchEngaged(scope="A1", engaged_by="admin", reason="ops"))
    out = _print(h, "BTC/USDC", "28900", "5")
    assert "Fill" not in [e.event_type for e in out]
    assert [e.payload.reason for e in out if e.event_type == "OrderCanceled"] == ["CHILD_CAPPED"]
    assert h.state.account("A1").balances["BTC"] == 0


def test_a_print_at_any_price_the_schema_admits_never_makes_the_engine_raise() -> None:
    """`process` never raises for a well-formed event: a print at 1E+50 made every holder's
    valuation (`EngineState._value`, each holding rounded to 1E-12 in 60 digits) raise
    InvalidOperation at the print's peak check, and one at 1E-20 a triggered take-profit
    buy's cash cap (`PaperVenue._affordable`, quantized in 28 digits); the worker then
    rebuilt and, the print among the kept ones, its catch-up failed too. Now a holding
    that cannot be valued leaves the account unvalued (NO_MARK, fail closed), and the
    children's caps are taken at most their leaves before they are rounded."""
    prices = ("1" + "0" * 50, "0." + "0" * 19 + "1", "1" + "0" * 199, "0." + "0" * 198 + "1")
    for price, side in [(p, side) for p in prices for side in (Side.BUY, Side.SELL)]:
        h = Harness(
            RiskLimits(max_position=D("100"), max_order_notional=D("1e7"), credit_limit=D("1e6")),
            cash=D("100000"),
        )
        h.admin_deposit("BTC", D("2"))
        h.quote(D("29999"), D("30001"))
        # An armed take-profit far off (a sell's for a buy), and a resting sell.
        take = D("40000") if side is Side.BUY else D("20000")
        limit = D("30001") if side is Side.BUY else D("29999")
        assert decision(h.order(side, D("1"), limit, take_profit=take)).outcome == "APPROVED"
        h.order(Side.SELL, D("0.5"), D("31000"))
        out = _print(h, "BTC/USDC", price, "1")  # raised before
        if D(price) > 1 or side is Side.SELL:  # through the resting sell or a take-profit
            assert "Fill" in [e.event_type for e in out], (price, side)
        _print(h, "BTC/USDC", "30000", "1")  # and the next one
        d = decision(h.order(Side.BUY, D("0.01"), D("30001")))
        assert d.outcome in ("APPROVED", "REJECTED")


def test_a_limits_change_cancels_resting_orders_on_assets_it_no_longer_permits() -> None:
    """EURC taken off the allow-list: the BTC/EURC bid resting from before is canceled at
    the change (`STABLECOIN_NOT_PERMITTED`, as the rule refuses a new one), not left to buy BTC
    for EURC at the next print; the BTC/USDC one stays."""
    base = RiskLimits(max_position=D("100"), max_order_notional=D("1e7"))
    h = Harness(base, cash=D("100000"))
    h.admin_deposit("EURC", D("100000"))
    _quote(h, "BTC/USDC", "29999", "30001")
    _quote(h, "BTC/EURC", "27999", "28001")
    _quote(h, "EURC/USDC", "1.0713", "1.0715")
    eurc = decision(h.order(Side.BUY, D("1"), D("27500"), instrument="BTC/EURC"))
    usdc = decision(h.order(Side.BUY, D("1"), D("29500")))
    assert (eurc.outcome, usdc.outcome) == ("APPROVED", "APPROVED")
    narrower = base.model_copy(update={"allowed_stablecoins": ("USDC",)})
    out = h.admin(RiskLimitsChanged(scope="A1", config_version=2, limits=narrower, changed_by="a"))
    ended = [e.payload for e in out if e.event_type == "OrderCanceled"]
    assert [(c.order_id, c.reason) for c in ended] == [(eurc.order_id, "STABLECOIN_NOT_PERMITTED")]
    _print(h, "BTC/EURC", "27000", "5")
    assert h.state.account("A1").positions.get("BTC/EURC", D(0)) == 0
    assert list(h.state.account("A1").open_orders) == [usdc.order_id]


def test_a_lower_position_limit_cancels_the_resting_orders_beyond_it() -> None:
    """MAX_POSITION lowered from 2 to 1 with two bids of 1 resting (worst case 2): the
    newer is canceled at the change (`MAX_POSITION`), the older stays (worst case 1), and
    the print that reaches both leaves the position within the new limit. Before, both
    filled: long 2 under a limit of 1. Orders that only shrink the position stay."""
    base = RiskLimits(max_position=D("2"), max_order_notional=D("1e7"))
    h = Harness(base, cash=D("100000"))
    h.quote(D("29999"), D("30001"))
    older = decision(h.order(Side.BUY, D("1"), D("29500")))
    newer = decision(h.order(Side.BUY, D("1"), D("29400")))
    assert (older.outcome, newer.outcome) == ("APPROVED", "APPROVED")
    lower = base.model_copy(update={"max_position": D("1")})
    before, lost = copy.deepcopy(h.state), copy.deepcopy(h.state)
    out = h.admin(RiskLimitsChanged(scope="*", config_version=2, limits=lower, changed_by="a"))
    ended = [e.payload for e in out if e.event_type == "OrderCanceled"]
    assert [(c.order_id, c.reason) for c in ended] == [(newer.order_id, "MAX_POSITION")]
    fact = next(e for e in out if e.event_type == "RiskLimitsChanged")
    read = control(before, fact, h.ctx)  # a worker reading it: the same cancel
    assert [e.payload.order_id for e in read if e.event_type == "OrderCanceled"] == [newer.order_id]
    lost.apply(fact)  # one that read it and lost its transaction: catch_up redoes it
    redone = catch_up(lost, h.ctx, lambda _account: True)
    assert [e.event_id for e in redone] == [e.event_id for e in read]
    assert catch_up(before, h.ctx, lambda _account: True) == []
    _print(h, "BTC/USDC", "29000", "5")
    assert h.state.account("A1").positions[INSTRUMENT] == 1
    # Long 1 with a limit of 0.5: a resting sell of 1 only shrinks it, and stays.
    sell = decision(h.order(Side.SELL, D("1"), D("30400")))
    assert sell.outcome == "APPROVED", sell.reason_codes
    half = lower.model_copy(update={"max_position": D("0.5")})
    out = h.admin(RiskLimitsChanged(scope="*", config_version=3, limits=half, changed_by="a"))
    assert "OrderCanceled" not in [e.event_type for e in out]


def test_the_order_rate_is_not_reset_by_a_new_strategy_id() -> None:
    """ORDER_RATE v4: the window is the producer's on the account, whatever strategy id
    its intents carry. The strategy id is the producer's own label, not authenticated:
    counted per strategy (v3), a runaway producer stamping each intent with a new one
    passed every intent (10 within a second under a limit of 3), and each id kept a window
    of its own in memory."""
    limits = RiskLimits(max_orders_per_window=3, rate_window_seconds=1)
    h = Harness(limits, cash=D("1000000"))
    h.quote(D("29999"), D("30001"))
    outcomes = []
    for n in range(10):
        intent = OrderIntent(
            producer_id="p1",
            strategy_id=f"s{n}",
            account="A1",
            client_order_id=f"rate{n}",
            instrument=INSTRUMENT,
            side=Side.BUY,
            order_type=OrderType.LIMIT,
            quantity=D("0.01"),
            limit_price=D("29000"),
        )
        outcomes.append(decision(h.feed(auth.sign(intent, h.key), producer="p1")))
    assert [d.outcome for d in outcomes] == ["APPROVED"] * 3 + ["REJECTED"] * 7
    assert all(d.reason_codes == ("ORDER_RATE",) for d in outcomes[3:])
    assert len(h.state.rate) == 1


def test_tiny_maker_fills_never_charge_more_fee_than_was_reserved() -> None:
    """A resting buy reserves its leaves x limit x (1 + taker rate), and the balance rule
    counted the taker fee rounded up; each fill was charged its fee rounded half-even. A
    maker fill of notional under 2.5E-5 could be rounded past the taker rate (7E-6 at
    0.08%: 5.6E-9 -> 1E-8, where 7E-9 was reserved), so ten 1-satoshi prints took an
    account with exactly the cash the rule asked for to USDC -3E-8, no credit. A parent's
    fill is now never charged more than its notional x the taker rate, rounded down."""
    h = Harness(
        RiskLimits(max_position=D("100"), max_order_notional=D("1e7")), cash=D("0.00007007")
    )
    h.quote(D("699"), D("701"))
    assert decision(h.order(Side.BUY, D("0.0000001"), D("700"))).outcome == "APPROVED"
    fills = []
    for _ in range(10):
        out = _print(h, "BTC/USDC", "699", "0.00000001")
        fills += [e.payload for e in out if e.event_type == "Fill"]
    assert len(fills) == 10 and not h.state.account("A1").open_orders
    assert all(f.fee <= f.quantity * f.price * D("0.001") for f in fills)
    assert h.state.account("A1").balances["USDC"] >= 0


def test_an_order_crossing_the_accounts_own_resting_orders_is_refused() -> None:
    """SELF_TRADE v1. Inside a 29,990 / 30,010 book an account offered at 29,995 and then
    bid 30,005: both rested, and the next print at 30,000 filled both, the account buying
    from and selling to itself through the tape (a wash trade), paying the 10 and the fees.
    A limit crossing the account's own resting opposite orders on the pair is now refused
    (`SELF_CROSS`); one at or short of them, a market order and another account pass."""
    h = Harness(
        RiskLimits(max_position=D("100"), max_order_notional=D("1e7")),
        cash=D("100000"),
        accounts=("A1", "A2"),
    )
    h.admin_deposit("BTC", D("2"))
    h.quote(D("29990"), D("30010"))
    assert decision(h.order(Side.SELL, D("1"), D("29995"))).outcome == "APPROVED"
    d = decision(h.order(Side.BUY, D("1"), D("30005")))
    assert (d.outcome, d.reason_codes) == ("REJECTED", ("SELF_CROSS",))
    result = next(r for r in d.rule_results if r.rule_id == "SELF_TRADE")
    assert result.rule_version == 3 and "29995" in result.detail
    assert decision(h.order(Side.BUY, D("1"), D("29995"))).reason_codes == ("SELF_CROSS",)
    assert decision(h.order(Side.BUY, D("1"), D("29994"))).outcome == "APPROVED"
    assert decision(h.order(Side.BUY, D("1"), D("30005"), account="A2")).outcome == "APPROVED"
    assert decision(h.order(Side.SELL, D("0.5"), D("29994"))).reason_codes == ("SELF_CROSS",)
    out = _print(h, "BTC/USDC", "29994", "5")
    sides = {(e.payload.account, e.payload.side) for e in out if e.event_type == "Fill"}
    assert ("A1", Side.BUY) in sides and ("A1", Side.SELL) not in sides


def _cross_harness(limits: RiskLimits) -> Harness:
    """A USDC account holding BTC and ETH, with BTC/USDC 30,000, ETH/USDC 1,500 and ETH/BTC
    0.05 quoted (each mid; a tight spread)."""
    h = Harness(limits, cash=D("1000000"))
    _quote(h, "BTC/USDC", "29999", "30001")
    _quote(h, "ETH/USDC", "1499.9", "1500.1")
    _quote(h, "ETH/BTC", "0.04999", "0.05001")
    h.admin_deposit("BTC", D("100"))
    h.admin_deposit("ETH", D("2000"))
    return h


def test_a_cross_pair_notional_is_valued_in_the_account_currency() -> None:
    """MAX_ORDER_NOTIONAL v4. v3 compared quantity x price in the pair's quote asset with
    the limit, which (like `credit_limit`) is in the account's valuation currency: on
    ETH/BTC a buy of 1,000 ETH at 0.05 is 50 BTC, about 1.5M USDC, and passed a limit of
    100,000 as a notional of 50. Valued at the BTC mark it is rejected, and the detail
    gives both figures; 60 ETH (3 BTC, about 90,000 USDC) passes."""
    limits = RiskLimits(max_order_notional=D("100000"), max_position=D("1e6"))
    h = _cross_harness(limits)
    d = decision(h.order(Side.BUY, D("1000"), D("0.05"), instrument="ETH/BTC"))
    assert d.outcome == "REJECTED" and d.reason_codes == ("MAX_ORDER_NOTIONAL",)
    result = next(r for r in d.rule_results if r.rule_id == "MAX_ORDER_NOTIONAL")
    assert result.rule_version == 5
    assert "50.00 BTC" in result.detail and "1500000" in result.detail, result.detail
    assert "USDC" in result.detail
    # A sell and an attached trigger are valued likewise.
    d = decision(h.order(Side.SELL, D("1000"), D("0.05"), instrument="ETH/BTC"))
    assert d.reason_codes == ("MAX_ORDER_NOTIONAL",)
    d = decision(h.order(Side.BUY, D("60"), D("0.05"), instrument="ETH/BTC", take_profit=D("0.06")))
    assert d.reason_codes == ("MAX_ORDER_NOTIONAL",)  # 60 x 0.06 = 3.6 BTC = 108,000 USDC
    ok = decision(h.order(Side.BUY, D("60"), D("0.05"), instrument="ETH/BTC"))
    assert ok.outcome == "APPROVED", ok.reason_codes
    assert h.state.account("A1").positions.get("ETH/BTC", D(0)) == 0  # rests at 0.05


def test_a_quote_asset_without_a_mark_cannot_be_valued() -> None:
    """No price values ETH in USDC (no ETH/USDC, USDC/ETH or ETH/stablecoin): a SOL/ETH
    order's notional in the account's currency is unknown, so the rule rejects (NO_MARK),
    however small the order; v3 passed it on its notional in ETH."""
    limits = RiskLimits(max_order_notional=D("100000"), max_position=D("1e6"))
    h = Harness(limits, cash=D("1000000"))
    _quote(h, "SOL/ETH", "0.0499", "0.0501")
    d = decision(h.order(Side.BUY, D("1"), D("0.05"), instrument="SOL/ETH"))
    assert d.outcome == "REJECTED"
    result = next(r for r in d.rule_results if r.rule_id == "MAX_ORDER_NOTIONAL")
    assert (result.passed, result.reason_code) == (False, "NO_MARK"), result
    assert "ETH" in result.detail and "USDC" in result.detail


_PAIRS = {"BTC/USDC": D("30000"), "ETH/USDC": D("1500"), "ETH/BTC": D("0.05")}


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(sorted(_PAIRS)),
            st.sampled_from([Side.BUY, Side.SELL]),
            st.integers(1, 200),  # the notional in thousands of USDC, at the mid
            st.sampled_from([None, "0.99", "1", "1.01", "1.04"]),  # limit / mid
            st.sampled_from([None, "0.9", "0.97", "1.03", "1.1", "2"]),  # trigger / mid
        ),
        min_size=1,
        max_size=5,
    )
)
def test_no_approved_order_exceeds_the_limit_in_the_account_currency(
    orders: list[tuple[str, Side, int, str | None, str | None]],
) -> None:
    """Valued at the decision's marks (`EngineState.mark`, what equity is valued at), no
    approved order's notional, nor that of a trigger attached to it, exceeds the limit in
    the account's valuation currency, whatever the pair is quoted in."""
    limits = RiskLimits(max_order_notional=D("100000"), max_position=D("1e6"))
    h = _cross_harness(limits)
    acc = h.state.account("A1")
    for instrument, side, thousands, limit_at, trigger_at in orders:
        mid = _PAIRS[instrument]
        quote = instrument.split("/")[1]
        mark = h.state.mark(quote, acc)
        assert mark is not None
        qty = VALUATION.divide(D(thousands * 1000), VALUATION.multiply(mid, mark)).quantize(
            D("0.0001")
        )
        limit = None if limit_at is None else (mid * D(limit_at)).quantize(D("0.00001"))
        extra: dict[str, Any] = {}
        if trigger_at is not None:
            up = D(trigger_at) > 1
            name = "take_profit" if up == (side is Side.BUY) else "stop_loss"
            extra[name] = (mid * D(trigger_at)).quantize(D("0.00001"))
        h.tick(1.1)  # out of the rate window
        out = h.order(side, qty, limit, instrument=instrument, **extra)
        d = decision(out)
        if d.outcome != "APPROVED":
            continue
        intent = h.last_intent
        assert intent is not None
        ctx = build_context(
            h.state, intent.payload, intent.occurred_at, consumer_lag=0, taker_fee_rate=D("0")
        )
        price = ctx.execution_price
        assert price is not None
        marked = h.state.mark(quote, acc)
        assert marked is not None
        for p in (price, *extra.values()):
            assert VALUATION.multiply(qty * p, marked) <= limits.max_order_notional, (
                instrument,
                side,
                qty,
                p,
                marked,
            )


def test_an_order_crossing_the_accounts_own_take_profit_or_triggered_child_is_refused() -> None:
    """SELF_TRADE v2. v1 walked resting parent limits only: an account long from a bid with
    a take-profit at 30,500 (an armed child: a sell of what filled at any print at or above
    30,500) bid 30,600, which rested, and a print at 30,550 filled both, the account
    buying from and selling to itself through the tape, as with a resting offer at 30,500.
    An armed take-profit child counts at its trigger; a triggered child (a market order at
    each later print) crosses any limit on the other side."""
    h = Harness(
        RiskLimits(max_position=D("100"), max_order_notional=D("1e7")),
        cash=D("100000"),
    )
    h.quote(D("29990"), D("30010"))
    parent = decision(h.order(Side.BUY, D("1"), D("30000"), take_profit=D("30500")))
    assert parent.outcome == "APPROVED"
    _print(h, "BTC/USDC", "30000", "5")  # the parent fills: its take-profit is armed
    h.quote(D("30690"), D("30700"))
    d = decision(h.order(Side.BUY, D("1"), D("30600")))
    assert (d.outcome, d.reason_codes) == ("REJECTED", ("SELF_CROSS",))
    result = next(r for r in d.rule_results if r.rule_id == "SELF_TRADE")
    assert result.rule_version == 3 and "30500" in result.detail
    assert decision(h.order(Side.BUY, D("1"), D("30499"))).outcome == "APPROVED"
    out = _print(h, "BTC/USDC", "30499", "5")
    assert [e.payload.side for e in out if e.event_type == "Fill"] == [Side.BUY]


def test_a_restart_does_not_cancel_what_a_childs_fill_took_past_the_position_limit() -> None:
    """catch_up ran the limits change's position pass at every restart, on the restart's
    state, even when the log showed the change's transaction committed: a side's worst
    case moves with a stop/take child's fill (it closes the position, the side's resting
    orders stay). Long 1 with a take-profit and an offer of 3 under a limit of 2 (worst
    1 - 3 = -2), the take-profit filled: 0 - 3. No live worker cancels the offer; a
    restart cancelled it MAX_POSITION, caused by the limits in force. Now the pass is
    redone only for a change the log does not show committed (`_limits_committed`).

    Since MAX_POSITION v3 the offer of 3 is refused (its worst case starts from the
    position once the take-profit sold: 0 - 3), so a child's fill no longer moves a side's
    worst case past the limit; an offer of 2 (0 - 2) rests, and a restart after the
    take-profit filled still cancels nothing."""
    h = Harness(RiskLimits(max_position=D("2"), max_order_notional=D("1e7")), cash=D("100000"))
    h.admin_deposit("BTC", D("10"))
    h.quote(D("29990"), D("30010"))
    assert decision(h.order(Side.BUY, D("1"), D("30000"), take_profit=D("30500"))).outcome == (
        "APPROVED"
    )
    _print(h, "BTC/USDC", "30000", "5")  # the bid fills: long 1, the take-profit armed
    d = decision(h.order(Side.SELL, D("3"), D("31000")))
    assert (d.outcome, d.reason_codes) == ("REJECTED", ("MAX_POSITION",))
    assert decision(h.order(Side.SELL, D("2"), D("31000"))).outcome == "APPROVED"
    out = _print(h, "BTC/USDC", "30600", "5")  # the take-profit sells the 1
    assert [(e.payload.side, e.payload.quantity) for e in out if e.event_type == "Fill"] == [
        (Side.SELL, D("1"))
    ]
    assert h.state.account("A1").positions["BTC/USDC"] == 0
    assert [e.event_type for e in out if e.event_type == "OrderCanceled"] == []
    assert catch_up(h.state, h.ctx, lambda _account: True) == []


def test_a_take_profit_crossing_the_accounts_own_resting_orders_is_refused() -> None:
    """SELF_TRADE v3. A new order's take-profit becomes, from its first fill on, a child on
    the other side that trades at prints through its trigger: a buy's take-profit at T
    sells at any print at or above T, so the account's own resting buy at or above T fills
    at the same print. Bid 5 at 30,800 against 1 displayed at 30,700 (1 taken, 4 rest
    above the ask), then a market buy of 1 with a take-profit at 30,750: v2 approved it,
    and a print at 30,760 filled the resting bid (buy @ 30,800) and the take-profit (sell
    @ 30,760), a trade with itself."""
    h = Harness(
        RiskLimits(max_position=D("100"), max_order_notional=D("1e7")),
        cash=D("1000000"),
    )
    h.quote(D("30690"), D("30700"), D("1"))
    assert decision(h.order(Side.BUY, D("5"), D("30800"))).outcome == "APPROVED"
    h.quote(D("30690"), D("30700"), D("1"))
    d = decision(h.order(Side.BUY, D("1"), take_profit=D("30750")))
    assert (d.outcome, d.reason_codes) == ("REJECTED", ("SELF_CROSS",))
    result = next(r for r in d.rule_results if r.rule_id == "SELF_TRADE")
    assert result.rule_version == 3 and "30800" in result.detail and "30750" in result.detail
    assert decision(h.order(Side.BUY, D("1"), take_profit=D("30801"))).outcome == "APPROVED"
