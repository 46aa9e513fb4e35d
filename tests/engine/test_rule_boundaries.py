"""Each risk rule at its limits, on a hand-built `RiskContext` (no harness, no broker).

Written from a mutation audit (session 21): every comparison below was flipped (`>` to
`>=`, a term dropped, a branch removed) and the rule tests passed all the same. Each test
sets a value exactly at a limit, or one a removed term would change, and names the
verdict the rule must give there.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from engine.risk.evaluator import run_rules
from engine.risk.rules import RULES, UNKNOWN_LAG, RiskContext, max_order_notional
from engine.state import STABLECOINS
from schemas.events import OrderType, RiskLimits, Side

D = Decimal
T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
MS = timedelta(milliseconds=1)
LIMITS = RiskLimits(
    max_order_notional=D("10000"),
    max_position=D("10"),
    max_open_orders=5,
    price_collar_pct=D("0.05"),
    max_orders_per_window=10,
    rate_window_seconds=1,
    drawdown_brake_pct=D("0.10"),
    max_price_age_seconds=30,
    max_consumer_lag=100,
    max_intent_behind_ms=5000,
    max_intent_ahead_ms=1000,  # not the behind tolerance: a swap of the two shows
)
BASE = RiskContext(
    account_opened=True,
    kyc_verified=True,
    aml_flags=(),
    limits=LIMITS,
    config_version=1,
    instrument="BTC/USDC",
    base_asset="BTC",
    quote_asset="USDC",
    side=Side.BUY,
    order_type=OrderType.LIMIT,
    quantity=D("1"),
    limit_price=D("100"),
    stop_loss=None,
    take_profit=None,
    intent_at=T0,
    received_at=T0,
    reference_price=D("100"),
    reference_at=T0,
    best_bid=D("99"),
    best_ask=D("101"),
    book_time=T0,
    consumer_lag=0,
    position=D("0"),
    open_buy_leaves=D("0"),
    open_sell_leaves=D("0"),
    own_opposite=None,
    own_same=None,
    open_base_buy_leaves=D("0"),
    open_orders=0,
    recent_orders=0,
    quote_available=D("1000000"),
    base_available=D("0"),
    reserved_quote=D("0"),
    reserved_base=D("0"),
    credit_available=D("0"),
    taker_fee_rate=D("0.001"),
    kill_engaged=False,
    equity=D("1000000"),
    peak_nav=D("1"),
    known_stablecoins=STABLECOINS,
    valuation_currency="USDC",
    quote_mark=D("1"),
    nav=D("1"),
)
"""A limit buy of 1 BTC at 100 against a 99 / 101 book, reference 100: every rule passes."""


def _v(rule_id: str, **changes: Any) -> tuple[bool, str | None]:
    """(passed, reason code) of one rule on `BASE` with `changes`."""
    rule = next(r for r in RULES if r.RULE_ID == rule_id)  # type: ignore[attr-defined]
    res = rule(replace(BASE, **changes))
    return res.passed, res.reason_code


def _limits(**changes: Any) -> RiskLimits:
    return LIMITS.model_copy(update=changes)


OK = (True, None)


def test_the_base_context_passes_every_rule() -> None:
    ev = run_rules(BASE)
    assert ev.passed, ev.results


def test_freshness_lag_at_its_limit_and_unknown() -> None:
    assert _v("FRESHNESS", consumer_lag=100) == OK
    assert _v("FRESHNESS", consumer_lag=101) == (False, "STALE_STATE")
    # An unmeasured lag fails closed even when the limit would admit any lag.
    huge = _limits(max_consumer_lag=UNKNOWN_LAG)
    assert _v("FRESHNESS", limits=huge, consumer_lag=UNKNOWN_LAG - 1) == OK
    assert _v("FRESHNESS", limits=huge, consumer_lag=UNKNOWN_LAG) == (False, "STALE_STATE")


def test_freshness_skew_at_each_tolerance() -> None:
    behind, ahead = 5000 * MS, 1000 * MS
    assert _v("FRESHNESS", intent_at=T0 - behind) == OK
    assert _v("FRESHNESS", intent_at=T0 - behind - MS) == (False, "CLOCK_SKEW")
    assert _v("FRESHNESS", intent_at=T0 + ahead) == OK
    assert _v("FRESHNESS", intent_at=T0 + ahead + MS) == (False, "CLOCK_SKEW")
    # Each direction has its own tolerance: behind's 5 s is not allowed ahead.
    assert _v("FRESHNESS", intent_at=T0 + behind) == (False, "CLOCK_SKEW")
    assert _v("FRESHNESS", received_at=None) == (False, "CLOCK_SKEW")  # no broker time


def test_freshness_price_and_book_age_at_the_limit_both_ways() -> None:
    age = timedelta(seconds=30)
    fresh_book = {"book_time": T0}
    assert _v("FRESHNESS", reference_at=T0 - age, **fresh_book) == OK
    assert _v("FRESHNESS", reference_at=T0 - age - MS) == (False, "STALE_STATE")
    assert _v("FRESHNESS", reference_at=T0 + age) == OK
    assert _v("FRESHNESS", reference_at=T0 + age + MS) == (False, "STALE_STATE")
    # The book the order meets, while the reference price is fresh (FRESHNESS v3).
    assert _v("FRESHNESS", book_time=T0 - age) == OK
    assert _v("FRESHNESS", book_time=T0 - age - MS) == (False, "STALE_STATE")
    assert _v("FRESHNESS", book_time=T0 + age) == OK
    assert _v("FRESHNESS", book_time=T0 + age + MS) == (False, "STALE_STATE")
    assert _v("FRESHNESS", book_time=None) == OK  # no book: nothing of it to bound
    # A price without a time cannot be aged: closed.
    assert _v("FRESHNESS", reference_at=None) == (False, "STALE_STATE")
    assert _v("FRESHNESS", reference_price=None) == (False, "STALE_STATE")


def test_account_state_each_check() -> None:
    assert _v("ACCOUNT_STATE") == OK
    assert _v("ACCOUNT_STATE", account_opened=False) == (False, "ACCOUNT_NOT_OPEN")
    assert _v("ACCOUNT_STATE", kyc_verified=False) == (False, "KYC_NOT_VERIFIED")
    assert _v("ACCOUNT_STATE", aml_flags=("f1",)) == (False, "AML_FLAG_OPEN")


def test_asset_allow_list_checks_both_assets() -> None:
    assert _v("ASSET_ALLOW_LIST") == OK
    pair = {"instrument": "BTC/USDT", "base_asset": "BTC", "quote_asset": "USDT"}
    assert _v("ASSET_ALLOW_LIST", **pair) == (False, "STABLECOIN_NOT_PERMITTED")
    pair = {"instrument": "DOGE/USDC", "base_asset": "DOGE", "quote_asset": "USDC"}
    assert _v("ASSET_ALLOW_LIST", **pair) == (False, "ASSET_NOT_PERMITTED")
    # A known stablecoin listed as a crypto asset is still a stablecoin.
    pair = {"instrument": "USDT/USDC", "base_asset": "USDT", "quote_asset": "USDC"}
    usdt_as_crypto = _limits(crypto_assets=("BTC", "USDT"))
    assert _v("ASSET_ALLOW_LIST", limits=usdt_as_crypto, **pair) == (
        False,
        "STABLECOIN_NOT_PERMITTED",
    )


def test_risk_reducing_counts_the_open_orders_on_its_side() -> None:
    # The holding of the base asset is the pair's position here (KILL_SWITCH v2).
    engaged = {"kill_engaged": True, "side": Side.SELL, "base_available": D("2")}
    assert _v("KILL_SWITCH", position=D("2"), quantity=D("2"), **engaged) == OK
    assert _v("KILL_SWITCH", position=D("2"), quantity=D("1.5"), **engaged) == OK
    # With 1 already offered, a sale of 1.5 would take a long of 2 short.
    assert _v(
        "KILL_SWITCH", position=D("2"), quantity=D("1.5"), open_sell_leaves=D("1"), **engaged
    ) == (False, "KILL_SWITCH_ENGAGED")
    engaged = {"kill_engaged": True, "side": Side.BUY, "base_available": D("-2")}
    assert _v("KILL_SWITCH", position=D("-2"), quantity=D("2"), **engaged) == OK
    assert _v(
        "KILL_SWITCH", position=D("-2"), quantity=D("1.5"), open_buy_leaves=D("1"), **engaged
    ) == (False, "KILL_SWITCH_ENGAGED")
    assert _v("KILL_SWITCH", position=D("0"), **engaged) == (False, "KILL_SWITCH_ENGAGED")


def test_risk_reducing_counts_the_base_asset_on_every_pair() -> None:
    """KILL_SWITCH v2: a sale must be covered by what is free of the base asset (1 of 2
    is reserved elsewhere), a buy must not take the holding past zero with the open buys
    of it on other pairs (1 more bought elsewhere)."""
    sell = {"kill_engaged": True, "side": Side.SELL, "position": D("2"), "quantity": D("1.5")}
    assert _v("KILL_SWITCH", base_available=D("2"), **sell) == OK
    assert _v("KILL_SWITCH", base_available=D("2"), reserved_base=D("1"), **sell) == (
        False,
        "KILL_SWITCH_ENGAGED",
    )
    buy = {"kill_engaged": True, "side": Side.BUY, "position": D("-2"), "quantity": D("1.5")}
    assert _v("KILL_SWITCH", base_available=D("-2"), **buy) == OK
    assert _v("KILL_SWITCH", base_available=D("-2"), open_base_buy_leaves=D("1"), **buy) == (
        False,
        "KILL_SWITCH_ENGAGED",
    )


def test_drawdown_at_the_threshold_brakes() -> None:
    # 1 - 0.9 / 1 = 0.10: at the threshold, not only beyond it.
    assert _v("DRAWDOWN_BRAKE", nav=D("0.9")) == (False, "DRAWDOWN_BRAKE")
    assert _v("DRAWDOWN_BRAKE", nav=D("0.9000000001")) == OK
    reducing = {"side": Side.SELL, "position": D("1"), "quantity": D("1"), "base_available": D("1")}
    assert _v("DRAWDOWN_BRAKE", nav=D("0.5"), **reducing) == OK
    # The peak is the higher of the recorded one and NAV now: no drawdown above it.
    above = replace(BASE, peak_nav=D("0.5"), nav=D("0.9"))
    res = next(r for r in RULES if r.RULE_ID == "DRAWDOWN_BRAKE")(above)  # type: ignore[attr-defined]
    assert res.passed and res.detail == "drawdown 0.0000"
    # Nothing ever above zero: nothing to measure from (and no division by it).
    assert _v("DRAWDOWN_BRAKE", peak_nav=D("0"), nav=D("0")) == OK


def test_drawdown_cannot_value_fails_closed_but_lets_risk_reduce() -> None:
    reducing = {"side": Side.SELL, "position": D("1"), "quantity": D("1"), "base_available": D("1")}
    assert _v("DRAWDOWN_BRAKE", equity=None) == (False, "NO_MARK")
    assert _v("DRAWDOWN_BRAKE", flows_pending=True) == (False, "NO_MARK")
    assert _v("DRAWDOWN_BRAKE", equity=None, **reducing) == OK
    assert _v("DRAWDOWN_BRAKE", flows_pending=True, **reducing) == OK
    assert _v("DRAWDOWN_BRAKE", lost_in_full=True) == (False, "DRAWDOWN_BRAKE")
    assert _v("DRAWDOWN_BRAKE", lost_in_full=True, nav=None) == (False, "DRAWDOWN_BRAKE")
    assert _v("DRAWDOWN_BRAKE", lost_in_full=True, **reducing) == OK
    assert _v("DRAWDOWN_BRAKE", nav=None) == OK  # no units yet


def test_price_collar_at_the_limit_and_below_the_reference() -> None:
    assert _v("PRICE_COLLAR", limit_price=D("105")) == OK
    assert _v("PRICE_COLLAR", limit_price=D("105.01")) == (False, "PRICE_COLLAR")
    assert _v("PRICE_COLLAR", limit_price=D("95")) == OK
    assert _v("PRICE_COLLAR", limit_price=D("94.99")) == (False, "PRICE_COLLAR")
    market = {"limit_price": None, "order_type": OrderType.MARKET}
    assert _v("PRICE_COLLAR", best_ask=D("105"), **market) == OK
    assert _v("PRICE_COLLAR", best_ask=D("105.01"), **market) == (False, "PRICE_COLLAR")
    # A market buy meets the ask, a market sell the bid: the other side does not count.
    assert _v("PRICE_COLLAR", best_bid=D("100"), best_ask=D("110"), **market) == (
        False,
        "PRICE_COLLAR",
    )
    assert _v("PRICE_COLLAR", best_bid=D("90"), best_ask=D("100"), **market) == OK
    sell = {"side": Side.SELL, **market}
    assert _v("PRICE_COLLAR", best_bid=D("90"), best_ask=D("100"), **sell) == (
        False,
        "PRICE_COLLAR",
    )
    assert _v("PRICE_COLLAR", best_bid=D("95"), best_ask=D("110"), **sell) == OK
    assert _v("PRICE_COLLAR", best_bid=None, best_ask=None, **market) == OK


def test_a_buys_triggers_at_their_bounds() -> None:
    # Limit 100 against 99 / 101: enters at 100; the stop must lie below the bid, 99.
    assert _v("PRICE_COLLAR", stop_loss=D("99")) == (False, "TRIGGER_WRONG_SIDE")
    assert _v("PRICE_COLLAR", stop_loss=D("98.99")) == OK
    assert _v("PRICE_COLLAR", take_profit=D("100")) == (False, "TRIGGER_WRONG_SIDE")
    assert _v("PRICE_COLLAR", take_profit=D("100.01")) == OK
    # Only one trigger attached is checked too.
    assert _v("PRICE_COLLAR", stop_loss=D("99"), take_profit=None) == (False, "TRIGGER_WRONG_SIDE")
    # No bid: the stop must lie below the reference as well as the entry.
    no_bid = {"best_bid": None, "limit_price": D("102"), "best_ask": D("103")}
    assert _v("PRICE_COLLAR", stop_loss=D("101"), **no_bid) == (False, "TRIGGER_WRONG_SIDE")
    assert _v("PRICE_COLLAR", stop_loss=D("99.99"), **no_bid) == OK
    # A marketable limit (102 against an ask of 101) enters at the ask.
    assert _v("PRICE_COLLAR", limit_price=D("102"), take_profit=D("101.5")) == OK
    assert _v("PRICE_COLLAR", limit_price=D("102"), take_profit=D("101")) == (
        False,
        "TRIGGER_WRONG_SIDE",
    )
    # A market buy enters at the worse of reference (100) and ask (101).
    market = {"limit_price": None, "order_type": OrderType.MARKET}
    assert _v("PRICE_COLLAR", take_profit=D("100.5"), **market) == (False, "TRIGGER_WRONG_SIDE")
    assert _v("PRICE_COLLAR", take_profit=D("101.01"), **market) == OK


def test_a_sells_triggers_at_their_bounds() -> None:
    sell = {"side": Side.SELL}
    # Limit 100 against 99 / 101: enters at 100; the stop must lie above the ask, 101.
    assert _v("PRICE_COLLAR", stop_loss=D("101"), **sell) == (False, "TRIGGER_WRONG_SIDE")
    assert _v("PRICE_COLLAR", stop_loss=D("100.5"), **sell) == (False, "TRIGGER_WRONG_SIDE")
    assert _v("PRICE_COLLAR", stop_loss=D("101.01"), **sell) == OK
    assert _v("PRICE_COLLAR", take_profit=D("100"), **sell) == (False, "TRIGGER_WRONG_SIDE")
    assert _v("PRICE_COLLAR", take_profit=D("99.99"), **sell) == OK
    # No ask: the stop must lie above the reference as well as the entry.
    no_ask = {"best_ask": None, "limit_price": D("98"), "best_bid": D("97"), **sell}
    assert _v("PRICE_COLLAR", stop_loss=D("99"), **no_ask) == (False, "TRIGGER_WRONG_SIDE")
    assert _v("PRICE_COLLAR", stop_loss=D("100.01"), **no_ask) == OK
    # A marketable limit (98 against a bid of 99) enters at the bid.
    assert _v("PRICE_COLLAR", limit_price=D("98"), take_profit=D("98.5"), **sell) == OK
    assert _v("PRICE_COLLAR", limit_price=D("98"), take_profit=D("99"), **sell) == (
        False,
        "TRIGGER_WRONG_SIDE",
    )
    # A market sell enters at the worse of reference (100) and bid (99).
    market = {"limit_price": None, "order_type": OrderType.MARKET, **sell}
    assert _v("PRICE_COLLAR", take_profit=D("99.5"), **market) == (False, "TRIGGER_WRONG_SIDE")
    assert _v("PRICE_COLLAR", take_profit=D("98.99"), **market) == OK


def test_notional_at_the_limit_and_each_trigger_counted() -> None:
    assert _v("MAX_ORDER_NOTIONAL", quantity=D("100")) == OK  # 100 x 100 = the limit
    assert _v("MAX_ORDER_NOTIONAL", quantity=D("100.01")) == (False, "MAX_ORDER_NOTIONAL")
    assert _v("MAX_ORDER_NOTIONAL", quantity=D("50"), take_profit=D("200")) == OK
    assert _v("MAX_ORDER_NOTIONAL", quantity=D("50"), take_profit=D("200.01")) == (
        False,
        "MAX_ORDER_NOTIONAL",
    )
    assert _v("MAX_ORDER_NOTIONAL", quantity=D("50"), stop_loss=D("200")) == OK
    assert _v("MAX_ORDER_NOTIONAL", quantity=D("50"), stop_loss=D("200.01")) == (
        False,
        "MAX_ORDER_NOTIONAL",
    )


def test_notional_values_each_order_at_what_it_can_fill_at() -> None:
    market = {"limit_price": None, "order_type": OrderType.MARKET}
    # A market buy: the worse of reference (100) and ask (101).
    assert _v("MAX_ORDER_NOTIONAL", quantity=D("99"), **market) == OK
    assert _v("MAX_ORDER_NOTIONAL", quantity=D("99.5"), **market) == (False, "MAX_ORDER_NOTIONAL")
    # A sell: the highest of limit, reference and bid.
    sell = {"side": Side.SELL}
    assert _v("MAX_ORDER_NOTIONAL", limit_price=D("104"), quantity=D("96"), **sell) == OK
    assert _v("MAX_ORDER_NOTIONAL", limit_price=D("104"), quantity=D("96.2"), **sell) == (
        False,
        "MAX_ORDER_NOTIONAL",
    )
    assert _v("MAX_ORDER_NOTIONAL", limit_price=D("95"), quantity=D("100.01"), **sell) == (
        False,
        "MAX_ORDER_NOTIONAL",
    )
    above = {"best_bid": D("102"), "best_ask": D("103"), **market, **sell}
    assert _v("MAX_ORDER_NOTIONAL", quantity=D("98"), **above) == OK
    assert _v("MAX_ORDER_NOTIONAL", quantity=D("99"), **above) == (False, "MAX_ORDER_NOTIONAL")
    marketable = {**above, "limit_price": D("95"), "order_type": OrderType.LIMIT}
    assert _v("MAX_ORDER_NOTIONAL", quantity=D("99"), **marketable) == (False, "MAX_ORDER_NOTIONAL")


def test_max_position_at_the_limit_and_with_open_orders() -> None:
    assert _v("MAX_POSITION", position=D("9"), quantity=D("1")) == OK
    assert _v("MAX_POSITION", position=D("9"), quantity=D("1.01")) == (False, "MAX_POSITION")
    assert _v("MAX_POSITION", position=D("8"), open_buy_leaves=D("2"), quantity=D("0.01")) == (
        False,
        "MAX_POSITION",
    )
    sell = {"side": Side.SELL}
    assert _v("MAX_POSITION", position=D("-9"), quantity=D("1"), **sell) == OK
    assert _v(
        "MAX_POSITION", position=D("-8"), open_sell_leaves=D("2"), quantity=D("0.01"), **sell
    ) == (False, "MAX_POSITION")
    # Beyond a lowered limit only shrinking passes; a flip past it does not.
    assert _v("MAX_POSITION", position=D("-12"), quantity=D("1")) == OK
    assert _v("MAX_POSITION", position=D("-12"), quantity=D("23")) == (False, "MAX_POSITION")


def test_open_orders_and_rate_one_below_the_limit_pass() -> None:
    assert _v("MAX_OPEN_ORDERS", open_orders=4) == OK
    assert _v("MAX_OPEN_ORDERS", open_orders=5) == (False, "MAX_OPEN_ORDERS")
    assert _v("ORDER_RATE", recent_orders=9) == OK
    assert _v("ORDER_RATE", recent_orders=10) == (False, "ORDER_RATE")


def test_balance_exactly_enough_and_each_term() -> None:
    # A buy of 1 at 100 with a fee of 0.1% needs 100.1.
    assert _v("BALANCE", quote_available=D("100.1")) == OK
    assert _v("BALANCE", quote_available=D("100.09999999")) == (False, "INSUFFICIENT_BALANCE")
    assert _v("BALANCE", quote_available=D("101.1"), reserved_quote=D("1.00000001")) == (
        False,
        "INSUFFICIENT_BALANCE",
    )
    assert _v("BALANCE", quote_available=D("50"), credit_available=D("50.1")) == OK
    # The fee (here 0.000000012) is rounded up to its quantum (1E-8), never down.
    tiny = {"taker_fee_rate": D("0.00000000012")}
    assert _v("BALANCE", quote_available=D("100.00000002"), **tiny) == OK
    assert _v("BALANCE", quote_available=D("100.000000015"), **tiny) == (
        False,
        "INSUFFICIENT_BALANCE",
    )
    sell = {"side": Side.SELL}
    assert _v("BALANCE", base_available=D("1"), **sell) == OK
    assert _v("BALANCE", base_available=D("2"), reserved_base=D("1.00000001"), **sell) == (
        False,
        "INSUFFICIENT_BALANCE",
    )
    assert _v("BALANCE", base_available=D("0.5"), credit_available=D("0.5"), **sell) == OK


def test_self_trade_at_the_accounts_own_resting_limit() -> None:
    """SELF_TRADE: a buy at its own resting sell's limit crosses it, one a step short does
    not; mirrored for a sell; a market order never rests."""
    assert _v("SELF_TRADE", own_opposite=D("100")) == (False, "SELF_CROSS")
    assert _v("SELF_TRADE", own_opposite=D("100.00000001")) == OK
    sell = {"side": Side.SELL, "limit_price": D("100")}
    assert _v("SELF_TRADE", own_opposite=D("100"), **sell) == (False, "SELF_CROSS")
    assert _v("SELF_TRADE", own_opposite=D("99.99999999"), **sell) == OK
    market = {"order_type": OrderType.MARKET, "limit_price": None}
    assert _v("SELF_TRADE", own_opposite=D("100"), **market) == OK


def test_self_trade_at_a_take_profit_meeting_the_accounts_own_orders() -> None:
    """SELF_TRADE v3: a buy's take-profit (a sell once armed) at the account's own best bid
    crosses it, one a step above does not; mirrored for a sell; a triggered child on the
    order's side (0 / infinite in `own_same`) crosses any take-profit; market orders too."""
    tp = {"take_profit": D("110")}
    assert _v("SELF_TRADE", own_same=D("110"), **tp) == (False, "SELF_CROSS")
    assert _v("SELF_TRADE", own_same=D("109.99999999"), **tp) == OK
    assert _v("SELF_TRADE", own_same=D("Infinity"), **tp) == (False, "SELF_CROSS")
    sell = {"side": Side.SELL, "limit_price": D("100"), "take_profit": D("90")}
    assert _v("SELF_TRADE", own_same=D("90"), **sell) == (False, "SELF_CROSS")
    assert _v("SELF_TRADE", own_same=D("90.00000001"), **sell) == OK
    assert _v("SELF_TRADE", own_same=D("0"), **sell) == (False, "SELF_CROSS")
    market = {"order_type": OrderType.MARKET, "limit_price": None, "take_profit": D("110")}
    assert _v("SELF_TRADE", own_same=D("110"), **market) == (False, "SELF_CROSS")
    assert _v("SELF_TRADE", own_same=D("110")) == OK  # no take-profit


def test_a_failing_last_rule_rejects_and_a_raising_one_is_recorded() -> None:
    ev = run_rules(replace(BASE, own_opposite=D("100")))  # SELF_TRADE, the last rule
    assert not ev.passed and ev.reason_codes == ("SELF_CROSS",)
    ev = run_rules(replace(BASE, quote_available=D("0")))  # BALANCE
    assert not ev.passed and ev.reason_codes == ("INSUFFICIENT_BALANCE",)
    ev = run_rules(replace(BASE, limits=None))  # type: ignore[arg-type]
    assert not ev.passed and "RULE_ERROR" in ev.reason_codes
    assert all(r.passed is False for r in ev.results if r.reason_code == "RULE_ERROR")


def test_notional_in_another_quote_is_valued_at_its_mark() -> None:
    """MAX_ORDER_NOTIONAL v4: the limit is in the valuation currency. On ETH/BTC at 0.05
    with BTC marked at 30,000 (USDC), 10,000 USDC is 6.6666... ETH: at the line passes, a
    hair over does not; without a mark (or a zero one) any size is NO_MARK; with the quote
    the valuation currency itself no mark is needed."""
    cross: dict[str, Any] = {
        "instrument": "ETH/BTC",
        "base_asset": "ETH",
        "quote_asset": "BTC",
        "limit_price": D("0.05"),
        "reference_price": D("0.05"),
        "best_bid": D("0.0499"),
        "best_ask": D("0.0501"),
        "quote_mark": D("30000"),
    }
    assert _v("MAX_ORDER_NOTIONAL", quantity=D("6.666666"), **cross) == OK
    assert _v("MAX_ORDER_NOTIONAL", quantity=D("6.666667"), **cross) == (
        False,
        "MAX_ORDER_NOTIONAL",
    )
    assert _v("MAX_ORDER_NOTIONAL", quantity=D("3"), take_profit=D("0.1111"), **cross) == OK
    assert _v("MAX_ORDER_NOTIONAL", quantity=D("3"), take_profit=D("0.1112"), **cross) == (
        False,
        "MAX_ORDER_NOTIONAL",
    )
    for mark in (None, D("0")):
        tiny = {**cross, "quote_mark": mark}
        assert _v("MAX_ORDER_NOTIONAL", quantity=D("0.001"), **tiny) == (False, "NO_MARK")
    assert _v("MAX_ORDER_NOTIONAL", quote_mark=None) == OK  # BTC/USDC: USDC is the currency
    detail = max_order_notional(replace(BASE, quantity=D("7"), **cross)).detail
    assert detail == "notional 0.35 BTC = 10500.00 USDC (mark 30000) > 10000 USDC"
