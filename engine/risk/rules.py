"""Pre-trade risk rules. Each is a pure function of a `RiskContext` with an id and version.

A rule that cannot make its check fails: a missing price, an unknown mark or an
unexpected value is a rejection, never an approval.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from engine.state import EXACT, VALUATION_UP, after_children, fee_at_most, rate_allowance
from engine.trusted import builder, positional_builder, validating
from schemas.drawdown import drawdown
from schemas.events import OrderType, RiskLimits, RuleResult, Side

ZERO = Decimal(0)
UNKNOWN_LAG = 2**63 - 1
"""The consumer lag the worker passes when it could not be measured, the control topics
could not be read to their end before the batch, a topic's partition count is not the
declared one, or the intent is not on its account's partition: STALE_STATE."""
_MS = timedelta(milliseconds=1)
_SPANS: dict[int, timedelta] = {}


def _ms(n: int) -> timedelta:
    """`n * _MS`, remembered by `n` (the limits' skew tolerances: a handful of values)."""
    span = _SPANS.get(n)
    if span is None:
        span = n * _MS
        if len(_SPANS) < 4096:
            _SPANS[n] = span
    return span


@dataclass(frozen=True)
class RiskContext:
    """Everything a rule may look at, computed by the evaluator from the state."""

    account_opened: bool
    kyc_verified: bool
    aml_flags: tuple[str, ...]
    limits: RiskLimits
    config_version: int
    instrument: str
    base_asset: str
    quote_asset: str
    side: Side
    order_type: OrderType
    quantity: Decimal
    limit_price: Decimal | None
    stop_loss: Decimal | None
    """The intent's attached stop-loss trigger: a child order the venue arms, for at most
    `quantity`, once the order is done, without a decision of its own."""
    take_profit: Decimal | None
    """The attached take-profit trigger (like `stop_loss`)."""
    intent_at: datetime
    received_at: datetime | None
    """The broker's append time of the intent (None: not known, which fails closed)."""
    reference_price: Decimal | None
    reference_at: datetime | None
    best_bid: Decimal | None
    """Top of the book the order meets (`PriceState.book_at` at its submission, the time
    its order events carry: `processor.order_events_at`, the append time unless stamped
    ahead within `max_intent_ahead_ms`): what the paper venue fills a marketable order at,
    so what the order is valued at. Until session 24 the book at `intent_at`, which its
    producer picks within the skew window."""
    best_ask: Decimal | None
    book_time: datetime | None
    """Event time of that book (None without one): FRESHNESS bounds its age."""
    consumer_lag: int
    position: Decimal
    open_buy_leaves: Decimal
    open_sell_leaves: Decimal
    own_opposite: Decimal | None
    """The best limit among the account's resting orders on the other side of this pair
    (a buy's: the lowest of its sells; a sell's: the highest of its buys), its armed
    take-profit children's triggers and its triggered children (0 / infinite) included
    (`EngineState.own_best`), None without any or for a market order (`SELF_TRADE`)."""
    own_same: Decimal | None
    """Of an order with a take-profit: the best price the account's open orders on this
    side of the pair trade at (`EngineState.own_best`), which its take-profit child (on
    the other side) would meet; None without any or without a take-profit (`SELF_TRADE`)."""
    open_base_buy_leaves: Decimal
    """Open buy leaves of the base asset on every pair (this one included): what the
    account's open buys may still add to its holding of it (`risk_reducing`)."""
    open_orders: int
    recent_orders: int
    quote_available: Decimal
    base_available: Decimal
    reserved_quote: Decimal
    reserved_base: Decimal
    """What the open orders commit of the quote (base) asset on any pair plus what pending
    withdrawals hold of it (`EngineState.reserved`)."""
    credit_available: Decimal
    """Units of the asset the order spends (quote for a buy, base for a sell) the account's
    credit still lends (`EngineState.credit_headroom`): 0 without credit or a mark."""
    taker_fee_rate: Decimal
    kill_engaged: bool
    equity: Decimal | None
    peak_nav: Decimal
    """The highest NAV per unit recorded since the last release (`AccountState.peak_nav`)."""
    known_stablecoins: frozenset[str]
    valuation_currency: str
    """The account's valuation currency (`base_currency`): what equity, `credit_limit`
    and `max_order_notional` are in."""
    quote_mark: Decimal | None
    """Value of one unit of the quote asset in `valuation_currency` (`EngineState.mark`,
    the marks equity is valued at: 1 for the currency itself); None without a price."""
    nav: Decimal | None = None
    """NAV per unit now (`EngineState.nav`): None without equity, units or with flows
    pending."""
    flows_pending: bool = False
    """Deposits or settled withdrawals not yet turned into units (a mark was missing):
    NAV per unit is not known (NO_MARK)."""
    lost_in_full: bool = False
    """The account has lost its whole peak (`EngineState.lost_in_full`): a flow found its
    capital gone since its last release, or it has no units left below zero."""
    open_side_children: Decimal = ZERO
    """What the account's open stop/take children on this pair and the order's side may
    still fill (`EngineState.children_closing`): they close the position, possibly before
    the open orders of that side fill (MAX_POSITION v3)."""

    @property
    def signed_quantity(self) -> Decimal:
        return self.quantity if self.side is Side.BUY else -self.quantity

    @property
    def risk_reducing(self) -> bool:
        """Shrinks the absolute position without flipping it, and the account's holding of
        the base asset likewise (counting open orders on that side either way).

        The holding (since KILL_SWITCH v2, DRAWDOWN_BRAKE v9): the position is the pair's,
        and an account holds a base asset through several pairs. One that bought BTC with
        USDC and sold it for EURC is long BTC/USDC and short BTC/EURC holding no BTC; v1
        took a buy of BTC/EURC for closing that short, and the account held BTC again under
        the kill switch (with credit, a sell of BTC/USDC likewise went short BTC). A sell
        must be covered by what is free of the base (balance less what open orders on any
        pair and pending withdrawals reserve of it: no credit), a buy must not take a short
        holding (on credit) past zero with every open buy of it on any pair."""
        if self.position > 0:
            return (
                self.side is Side.SELL
                and self.quantity + self.open_sell_leaves <= self.position
                and self.quantity <= self.base_available - self.reserved_base
            )
        if self.position < 0:
            return (
                self.side is Side.BUY
                and self.quantity + self.open_buy_leaves <= -self.position
                and self.base_available + self.open_base_buy_leaves + self.quantity <= 0
            )
        return False

    @property
    def execution_price(self) -> Decimal | None:
        """The highest price the order can trade at, what its notional and (buys) its cash
        are valued at. A buy never pays more than its limit; without one, the worse of the
        reference and the ask it meets. A sell's limit is only a floor: a marketable one
        fills at the bid it meets, a resting one at its limit, so the highest of limit,
        reference and bid (the reference keeps a missing bid from valuing it low)."""
        ref = self.reference_price
        if ref is None:
            return None
        if self.side is Side.BUY:
            if self.limit_price is not None:
                return self.limit_price
            return max(ref, self.best_ask) if self.best_ask is not None else ref
        price = ref if self.limit_price is None else max(ref, self.limit_price)
        return max(price, self.best_bid) if self.best_bid is not None else price


Rule = Callable[[RiskContext], RuleResult]


_result = builder(RuleResult)
"""Rule results are built from the rules' own ids and figures: nothing to re-validate."""
_OK: dict[tuple[str, int, str], RuleResult] = {}
"""A pass is the same (immutable) result whenever its rule, version and detail are: a
pass without detail is built once per rule, one with a detail once per text while that
text recurs ("drawdown 0.0000", "0 in window", an unchanged price age or deviation).
Building one costs about ten lookups here; cleared when `_OK_KEPT` are held."""
_OK_KEPT = 4096


_pass = positional_builder(RuleResult, ("rule_id", "rule_version", "passed", "detail"))
_fail = positional_builder(
    RuleResult, ("rule_id", "rule_version", "passed", "reason_code", "detail")
)
"""`_result` for the two shapes the rules build (the same fields given), a third cheaper."""


def _ok(rule_id: str, version: int, detail: str = "") -> RuleResult:
    if validating():
        return _pass(rule_id, version, True, detail)  # validates (the reference path)
    key = (rule_id, version, detail)
    found = _OK.get(key)
    if found is None:
        if len(_OK) >= _OK_KEPT:
            _OK.clear()
        found = _OK[key] = _pass(rule_id, version, True, detail)
    return found


def _no(rule_id: str, version: int, code: str, detail: str) -> RuleResult:
    return _fail(rule_id, version, False, code, detail)


def freshness(ctx: RiskContext) -> RuleResult:
    """Fail closed when our view is behind the log, the intent's own time is not credible,
    or the reference price is old.

    Version 2: times are measured against the broker's append time of the intent
    (`received_at`), not the producer-set `occurred_at` alone: the intent's stamp must lie
    within the limits' skew tolerance of it (CLOCK_SKEW), and the price age is taken at
    the append time and bounded both ways (a price stamped long after the intent arrived
    is no proof of freshness either). Version 1 took the age from `occurred_at`, so a
    producer stamping an intent at an old price's time passed.

    Version 3: the book the order meets (`RiskContext.book_time`), which values it and
    which its marketable part fills at, is bounded the same way. v2 bounded the reference
    alone, the newer of last trade and mid: prints kept it fresh while the quote was
    minutes old, and a market buy filled at that old ask.

    Version 4: that book is the one in force at the order's submission (its append time,
    `RiskContext.best_bid`), not at its producer's stamp (v3), which picked it among the
    quotes of the skew window.
    """
    rid, ver = freshness.RULE_ID, freshness.RULE_VERSION  # type: ignore[attr-defined]
    lim = ctx.limits
    if ctx.consumer_lag >= UNKNOWN_LAG:
        return _no(
            rid,
            ver,
            "STALE_STATE",
            "consumer lag unknown, the control topics not read to their end, a topic's "
            "partition count not the declared one, or a failed catch-up (see the worker's log)",
        )
    if ctx.consumer_lag > lim.max_consumer_lag:
        return _no(
            rid,
            ver,
            "STALE_STATE",
            f"consumer lag {ctx.consumer_lag} > {lim.max_consumer_lag}",
        )
    if ctx.received_at is None:
        return _no(
            rid,
            ver,
            "CLOCK_SKEW",
            "no broker append time for the intent (the intents topic must use "
            "message.timestamp.type=LogAppendTime)",
        )
    skew = ctx.intent_at - ctx.received_at
    if skew > _ms(lim.max_intent_ahead_ms) or -skew > _ms(lim.max_intent_behind_ms):
        return _no(
            rid,
            ver,
            "CLOCK_SKEW",
            f"occurred_at is {skew.total_seconds():+.3f}s from the broker's append time; "
            f"allowed -{lim.max_intent_behind_ms}..+{lim.max_intent_ahead_ms} ms",
        )
    if ctx.reference_price is None or ctx.reference_at is None:
        return _no(rid, ver, "STALE_STATE", f"no reference price for {ctx.instrument}")
    age = (ctx.received_at - ctx.reference_at).total_seconds()
    if abs(age) > lim.max_price_age_seconds:
        return _no(
            rid,
            ver,
            "STALE_STATE",
            f"reference price {age:.3f}s old at the intent's arrival; allowed "
            f"±{lim.max_price_age_seconds}s",
        )
    if ctx.book_time is not None:
        book_age = (ctx.received_at - ctx.book_time).total_seconds()
        if abs(book_age) > lim.max_price_age_seconds:
            return _no(
                rid,
                ver,
                "STALE_STATE",
                f"the book the order meets is {book_age:.3f}s old at the intent's arrival; "
                f"allowed ±{lim.max_price_age_seconds}s",
            )
    return _ok(
        rid, ver, f"lag {ctx.consumer_lag}, price age {age:.3f}s, skew {skew.total_seconds():+.3f}s"
    )


def account_state(ctx: RiskContext) -> RuleResult:
    rid, ver = account_state.RULE_ID, account_state.RULE_VERSION  # type: ignore[attr-defined]
    if not ctx.account_opened:
        return _no(rid, ver, "ACCOUNT_NOT_OPEN", "no AccountOpened for this account")
    if not ctx.kyc_verified:
        return _no(rid, ver, "KYC_NOT_VERIFIED", "KYC not verified")
    if ctx.aml_flags:
        return _no(rid, ver, "AML_FLAG_OPEN", f"open AML flags: {', '.join(ctx.aml_flags)}")
    return _ok(rid, ver)


def asset_allow_list(ctx: RiskContext) -> RuleResult:
    """Only permitted payment stablecoins (MiCA, GENIUS Act) may appear in a pair.

    v2 fails closed: each asset must be classified, either a permitted stablecoin
    (`allowed_stablecoins`) or a listed crypto asset (`crypto_assets`). v1 rejected only
    stablecoins on a built-in list, so any stablecoin it did not know (USDS, FRAX, USD1,
    EURCV) passed. A known stablecoin is never taken for a crypto asset, whatever the
    configuration says.
    """
    rid, ver = asset_allow_list.RULE_ID, asset_allow_list.RULE_VERSION  # type: ignore[attr-defined]
    refused = asset_refusal(ctx.limits, (ctx.base_asset, ctx.quote_asset), ctx.known_stablecoins)
    if refused is not None:
        return _no(rid, ver, *refused)
    return _ok(rid, ver)


def asset_refusal(
    limits: RiskLimits, assets: tuple[str, ...], known_stablecoins: frozenset[str]
) -> tuple[str, str] | None:
    """(reason code, detail) if `limits` do not permit one of `assets` (ASSET_ALLOW_LIST's
    check, also what a limits change cancels resting orders for), else None."""
    allowed = limits.allowed_stablecoins
    crypto = limits.crypto_assets
    for asset in assets:
        if asset in allowed:
            continue
        if asset in known_stablecoins:
            return (
                "STABLECOIN_NOT_PERMITTED",
                f"{asset} is not on the allow-list {sorted(allowed)}",
            )
        if asset not in crypto:
            return (
                "ASSET_NOT_PERMITTED",
                f"{asset} is neither a permitted stablecoin {sorted(allowed)} nor a listed "
                f"crypto asset {sorted(crypto)}",
            )
    return None


def kill_switch(ctx: RiskContext) -> RuleResult:
    """While a switch covers the account, only risk-reducing orders pass.

    v2: risk-reducing also asks that the order take the base asset's holding toward zero
    (`RiskContext.risk_reducing`); v1 looked at the pair's position alone, so an account
    holding no BTC, long it on one pair and short on another, bought it back on the
    second pair under the switch."""
    rid, ver = kill_switch.RULE_ID, kill_switch.RULE_VERSION  # type: ignore[attr-defined]
    if ctx.kill_engaged and not ctx.risk_reducing:
        return _no(rid, ver, "KILL_SWITCH_ENGAGED", "kill switch engaged: risk-reducing only")
    return _ok(rid, ver, "engaged, risk-reducing" if ctx.kill_engaged else "")


def drawdown_brake(ctx: RiskContext) -> RuleResult:
    """Passes while drawdown from the peak is under the threshold, or the order reduces risk.

    v2: equity values every asset but the account's valuation currency from a price
    (`EngineState.mark`), stablecoins too; v1 marked every stablecoin at 1, so a depeg or
    an FX move (EURC in a USDC account) never showed as drawdown. v3: equity is summed in
    asset order, each holding rounded to `EQUITY_QUANTUM` (v2 summed 28-digit terms in the
    balances' order, so live state and a rebuild could record different last digits), and
    an account that cannot be valued may still reduce risk (v2 rejected every order with
    NO_MARK, so an unpriced deposit froze even the sale of a position). v4: a withdrawal is
    not a loss (v3 braked an account that withdrew the threshold's share). v5: the peak is
    also raised at prints. v6: the drawdown is measured per unit, as a fund measures
    performance: deposits issue units and settled withdrawals redeem them at the NAV per
    unit just before (`EngineState.unitization`, recorded on `UnitsChanged`), so neither
    moves NAV per unit = equity / units, the peak is the highest NAV per unit, and the
    drawdown is 1 - NAV / peak. v5 kept the peak on equity plus what withdrawals took
    out: a deposit during a drawdown raised that sum (peak 100, equity 92, a deposit of
    10: 102, a new peak, the 8% loss forgiven), and a withdrawn asset was valued at its
    mark now, so a later move of BTC no longer held moved the measure. v7: an account
    left with no units and equity below zero (a settled withdrawal took more than it was
    worth: `unitization` redeems every unit) is measured as its whole peak lost
    (`EngineState.lost_in_full`); v6 measured nothing then ("no units yet"), so such a
    settlement erased the drawdown of the moment before and the account traded on. v8:
    likewise an account a flow found with its capital gone (NAV per unit at or below zero
    just before a deposit, `AccountState.wiped_at`) until a release: v6 kept its units,
    so a margin call's deposit lifted NAV per unit above the old peak and the loss of
    more than everything measured 0%. v9: what passes as risk-reducing while the account
    is braked or cannot be valued also takes the base asset's holding toward zero
    (`RiskContext.risk_reducing`, as KILL_SWITCH v2); v8 looked at the pair's position
    alone.
    """
    rid, ver = drawdown_brake.RULE_ID, drawdown_brake.RULE_VERSION  # type: ignore[attr-defined]
    if ctx.equity is None or ctx.flows_pending:
        why = (
            "a held asset has no price"
            if ctx.equity is None
            else "deposits or withdrawals not yet turned into units (a mark was missing)"
        )
        if ctx.risk_reducing:
            return _ok(rid, ver, f"cannot value the account ({why}); risk-reducing")
        return _no(rid, ver, "NO_MARK", f"cannot value the account: {why}")
    nav = ctx.nav
    if ctx.lost_in_full:
        # The whole peak is lost until a release (DRAWDOWN v7, v8).
        why = (
            f"equity {ctx.equity} below zero with no units left (a withdrawal took more "
            f"than the account was worth): all of the peak {ctx.peak_nav:.12f} lost"
            if nav is None
            else f"the account's capital was gone when a deposit or withdrawal came (NAV "
            f"per unit at or below zero): all of the peak {ctx.peak_nav:.12f} lost until "
            "a release"
        )
        if ctx.risk_reducing:
            return _ok(rid, ver, f"{why}; risk-reducing")
        return _no(rid, ver, "DRAWDOWN_BRAKE", why)
    if nav is None:
        return _ok(rid, ver, "no units yet")
    peak = max(ctx.peak_nav, nav)
    if peak <= 0:
        return _ok(rid, ver, "no equity yet")
    dd = drawdown(peak, nav)
    if dd >= ctx.limits.drawdown_brake_pct and not ctx.risk_reducing:
        return _no(
            rid,
            ver,
            "DRAWDOWN_BRAKE",
            f"drawdown {dd:.4f} >= {ctx.limits.drawdown_brake_pct} (equity {ctx.equity}, "
            f"NAV per unit {nav:.12f}, peak {peak:.12f})",
        )
    return _ok(rid, ver, f"drawdown {dd:.4f}")


def _fill_estimate(ctx: RiskContext, ref: Decimal) -> Decimal:
    """Where the parent enters: a marketable order at the touch it meets (a buy limit at
    or above the ask fills at the ask), a resting one at its limit, a market order at the
    worse of reference and touch."""
    limit = ctx.limit_price
    if ctx.side is Side.BUY:
        ask = ctx.best_ask
        if limit is None:
            return ref if ask is None else max(ref, ask)
        return ask if ask is not None and limit >= ask else limit
    bid = ctx.best_bid
    if limit is None:
        return ref if bid is None else min(ref, bid)
    return bid if bid is not None and limit <= bid else limit


def _trigger_on_wrong_side(ctx: RiskContext, ref: Decimal) -> str | None:
    """Why an attached trigger would fire at once, or None. The children close what the
    parent opened: a buy's are sells, a stop-loss sell firing on a print at or below it
    and a take-profit sell on one at or above it (mirrored for a sell's). A take-profit
    must lie beyond the entry (`_fill_estimate`); a stop beyond the entry and on the far
    side of the market too (reference and the touch prints trade at: a buy's stop below
    the bid, or the next sell print at the bid fires it)."""
    entry = _fill_estimate(ctx, ref)
    sl, tp = ctx.stop_loss, ctx.take_profit
    if ctx.side is Side.BUY:
        floor = min(entry, ref) if ctx.best_bid is None else min(entry, ref, ctx.best_bid)
        if sl is not None and sl >= floor:
            return f"stop_loss {sl} not below {floor} (entry {entry}, reference {ref}, bid)"
        if tp is not None and tp <= entry:
            return f"take_profit {tp} not above entry {entry}"
    else:
        ceiling = max(entry, ref) if ctx.best_ask is None else max(entry, ref, ctx.best_ask)
        if sl is not None and sl <= ceiling:
            return f"stop_loss {sl} not above {ceiling} (entry {entry}, reference {ref}, ask)"
        if tp is not None and tp >= entry:
            return f"take_profit {tp} not below entry {entry}"
    return None


def price_collar(ctx: RiskContext) -> RuleResult:
    """The fat-finger check: a limit price within the collar of the reference price.

    v2: and the attached stop-loss / take-profit triggers on their side of the order
    (`_trigger_on_wrong_side`): the children are armed without a decision of their own,
    and v1 let a stop-loss sell typed above the market sell the whole fill at the first
    print after it.

    v3: a market order, which has no limit, is collared at the touch it meets (the ask
    for a buy, the bid for a sell, of the book the venue fills it against): v2 passed any
    market order, which then filled at whatever the book showed (a buy against a 99 / 300
    book at 300, 50% from the reference).

    v4: the book is the one in force at the order's submission (`RiskContext.best_bid`);
    v3 took it at the producer's stamp, up to 5 s back."""
    rid, ver = price_collar.RULE_ID, price_collar.RULE_VERSION  # type: ignore[attr-defined]
    if ctx.reference_price is None:
        return _no(rid, ver, "NO_REFERENCE_PRICE", "no reference price")
    if ctx.stop_loss is not None or ctx.take_profit is not None:
        wrong = _trigger_on_wrong_side(ctx, ctx.reference_price)
        if wrong is not None:
            return _no(rid, ver, "TRIGGER_WRONG_SIDE", wrong)
    price = ctx.limit_price
    if price is None:
        price = ctx.best_ask if ctx.side is Side.BUY else ctx.best_bid
        if price is None:
            return _ok(rid, ver, "market order, no book: nothing to execute against")
    dev = abs(price - ctx.reference_price) / ctx.reference_price
    if ctx.limit_price is None and dev > ctx.limits.price_collar_pct:
        return _no(
            rid,
            ver,
            "PRICE_COLLAR",
            f"market order meets {'ask' if ctx.side is Side.BUY else 'bid'} {price}, "
            f"{dev:.4f} from reference {ctx.reference_price} > {ctx.limits.price_collar_pct}",
        )
    if ctx.limit_price is None:
        return _ok(rid, ver, f"market order, touch deviation {dev:.4f}")
    if dev > ctx.limits.price_collar_pct:
        return _no(
            rid,
            ver,
            "PRICE_COLLAR",
            f"limit {ctx.limit_price} deviates {dev:.4f} from "
            f"reference {ctx.reference_price} > {ctx.limits.price_collar_pct}",
        )
    return _ok(rid, ver, f"deviation {dev:.4f}")


def max_order_notional(ctx: RiskContext) -> RuleResult:
    """quantity x `RiskContext.execution_price`, and quantity x each attached stop/take
    trigger, valued in the account's valuation currency: the largest must be within the
    limit.

    v2: valued at the book the order meets (the quote in force at its time, as the venue
    fills it, not the newest), and a sell at the highest of limit, reference and bid (v1:
    its limit, under by up to the collar). v3: the attached children count too. They are
    armed without a decision of their own, for up to the order's quantity, and the trigger
    is the price they trade at (a stop-loss sell or take-profit buy at most it, a
    take-profit sell or stop-loss buy at least it), so this intent is the only check a
    fat-fingered trigger meets: a stop-loss sell typed at ten times the market fills at the
    first print, and a take-profit that far off would trade ten times the notional. v2
    looked at the parent alone.

    v4: the limit is in the account's valuation currency (`base_currency`, as equity and
    `credit_limit`), so a notional in another quote asset is valued at that asset's mark
    (`RiskContext.quote_mark`), in `VALUATION` rounded up; without a mark it cannot be
    (NO_MARK, fail closed). v3 compared the notional in the quote asset: on ETH/BTC 1,000
    ETH at 0.05 was 50 (BTC, about 1.5M USDC) against a limit of 100,000.

    v5: the book is the one in force at the order's submission (`RiskContext.best_bid`);
    v4 took it at the producer's stamp, so a backdated market buy was valued (and
    filled) at the ask of up to 5 s before."""
    rid, ver = max_order_notional.RULE_ID, max_order_notional.RULE_VERSION  # type: ignore[attr-defined]
    price = ctx.execution_price
    if price is None:
        return _no(rid, ver, "NO_REFERENCE_PRICE", "no price to value the order")
    limit = ctx.limits.max_order_notional
    quote, ccy, mark = ctx.quote_asset, ctx.valuation_currency, ctx.quote_mark
    multiply = VALUATION_UP.multiply
    notional = multiply(ctx.quantity, price)
    rate: Decimal | None = None  # None: the notional is in the valuation currency
    if quote != ccy:
        if mark is None or mark <= 0:
            return _no(
                rid,
                ver,
                "NO_MARK",
                f"notional {notional} {quote}: no mark values {quote} in {ccy}, the "
                "limit's currency",
            )
        rate = mark
    valued = notional if rate is None else multiply(notional, rate)
    if valued > limit:
        if rate is None:
            return _no(rid, ver, "MAX_ORDER_NOTIONAL", f"notional {notional} > {limit}")
        return _no(
            rid,
            ver,
            "MAX_ORDER_NOTIONAL",
            f"notional {notional} {quote} = {valued} {ccy} (mark {mark}) > {limit} {ccy}",
        )
    for name, trigger in (("stop_loss", ctx.stop_loss), ("take_profit", ctx.take_profit)):
        if trigger is None:
            continue
        child = multiply(ctx.quantity, trigger)
        child_valued = child if rate is None else multiply(child, rate)
        if child_valued > limit:
            if rate is None:
                figure = f"{child}"
            else:
                figure = f"{child} {quote} = {child_valued} {ccy} (mark {mark})"
            return _no(
                rid,
                ver,
                "MAX_ORDER_NOTIONAL",
                f"attached {name} notional {figure} (quantity x trigger {trigger}) > {limit}",
            )
    if rate is None:
        return _ok(rid, ver, f"notional {notional}")
    return _ok(rid, ver, f"notional {notional} {quote} = {valued} {ccy} (mark {mark})")


def max_position(ctx: RiskContext) -> RuleResult:
    """Worst case: the position if every open order on this side and this one fill. Beyond
    the limit (lowered below a position held) only an order that shrinks the position
    without flipping it passes.

    v2: v1 passed any order ending smaller in absolute size, a flip too: short 10 under
    a limit of 5, a buy of 18 went long 8, a new position over the limit.

    v3: the worst case starts from the position once the account's open stop/take
    children on the order's side filled (`after_children`, `open_side_children`): armed
    without a decision, a child closes the position, and may do so before the open orders
    of its side fill, which then take the pair past zero by what they counted on netting.
    Long 10 under a limit of 10 with a stop-loss for the 10, v2 passed a sell of 20 (worst
    case -10); the stop sold the 10 at its trigger and the sell then went short 20."""
    rid, ver = max_position.RULE_ID, max_position.RULE_VERSION  # type: ignore[attr-defined]
    start = after_children(ctx.position, ctx.side, ctx.open_side_children)
    if ctx.side is Side.BUY:
        worst = start + ctx.open_buy_leaves + ctx.quantity
    else:
        worst = start - ctx.open_sell_leaves - ctx.quantity
    shrinks = abs(worst) <= abs(ctx.position) and (worst >= 0) == (ctx.position >= 0)
    of = "" if start == ctx.position else f" (from {start}, its stop/take children filled)"
    if abs(worst) > ctx.limits.max_position and not shrinks:
        return _no(
            rid,
            ver,
            "MAX_POSITION",
            f"worst-case position {worst}{of} exceeds {ctx.limits.max_position}",
        )
    return _ok(rid, ver, f"worst-case position {worst}{of}")


def max_open_orders(ctx: RiskContext) -> RuleResult:
    rid, ver = max_open_orders.RULE_ID, max_open_orders.RULE_VERSION  # type: ignore[attr-defined]
    if ctx.open_orders + 1 > ctx.limits.max_open_orders:
        return _no(
            rid,
            ver,
            "MAX_OPEN_ORDERS",
            f"{ctx.open_orders} open, limit {ctx.limits.max_open_orders}",
        )
    return _ok(rid, ver, f"{ctx.open_orders} open")


def order_rate(ctx: RiskContext) -> RuleResult:
    """`recent_orders` is counted over `rate_allowance(limits)`'s window, at most the rate
    windows' fixed horizon; a longer configured window allows proportionally fewer in it.

    v3: the windows keep a fixed horizon (`RATE_HORIZON_SECONDS`) whatever the limits, so a
    limits change cannot make the live state and a fold of the log disagree; v2 pruned them
    to the longest window in force, and a longer window then counted what the live worker
    had pruned after a restart only.

    v4: counted per producer and account, whatever strategy id the intents carry
    (`engine.state.rate_key`): the strategy id is the producer's own label, and v3 counted
    per strategy, so a producer stamping each intent with a new one was never limited.
    """
    rid, ver = order_rate.RULE_ID, order_rate.RULE_VERSION  # type: ignore[attr-defined]
    window, allowed = rate_allowance(ctx.limits)
    if ctx.recent_orders + 1 > allowed:
        configured = ctx.limits.rate_window_seconds
        of = (
            ""
            if configured == window
            else f" (of {ctx.limits.max_orders_per_window} in {configured}s)"
        )
        return _no(
            rid,
            ver,
            "ORDER_RATE",
            f"{ctx.recent_orders} orders in {window}s, limit {allowed}{of}",
        )
    return _ok(rid, ver, f"{ctx.recent_orders} in window")


def balance(ctx: RiskContext) -> RuleResult:
    """Cash (buys) or inventory (sells) free of open orders, plus what the credit lends.

    v2: what is reserved is everything the open orders commit of the asset on any pair
    (`Exposure.committed`): a buy's notional plus fee in its quote asset and a sell's
    leaves in its base asset, so USDC bidding for BTC is not also free to sell for EURC;
    and a market buy's cash is valued at the ask of the book it meets (the quote in force
    at its time, which the venue fills it at), not the newest. v3: the credit limit is one
    amount in the account's valuation currency for the whole account, less what other
    assets are already short, converted at the spent asset's mark (none: no credit); v2
    added it raw to whatever asset was spent (1000 credit on ETH/BTC was 1000 BTC), and
    again for every asset. A buy needs its notional plus the fee rounded up to the fee
    quantum (v2: notional x (1 + fee), short of a fee the venue rounds up). v4: what is
    reserved includes what the account's pending withdrawals hold (`EngineState.reserved`:
    requested, not rejected or settled yet), and a settled one is off the balance; v3 saw
    neither, so money requested out, or gone, was free to trade. v5: a market buy's cash
    is valued at the ask of the book in force at its submission (`RiskContext.best_bid`),
    not at its producer's stamp (v4).
    """
    rid, ver = balance.RULE_ID, balance.RULE_VERSION  # type: ignore[attr-defined]
    add, sub = EXACT.add, EXACT.subtract  # the engine's context, not the thread's
    if ctx.side is Side.BUY:
        price = ctx.execution_price
        if price is None:
            return _no(rid, ver, "NO_REFERENCE_PRICE", "no price to value the order")
        notional = EXACT.multiply(ctx.quantity, price)
        need = add(notional, fee_at_most(notional, ctx.taker_fee_rate))
        free = add(sub(ctx.quote_available, ctx.reserved_quote), ctx.credit_available)
        asset = ctx.quote_asset
    else:
        need = ctx.quantity
        free = add(sub(ctx.base_available, ctx.reserved_base), ctx.credit_available)
        asset = ctx.base_asset
    if need > free:
        return _no(rid, ver, "INSUFFICIENT_BALANCE", f"needs {need} {asset}, free {free}")
    return _ok(rid, ver, f"needs {need} {asset}, free {free}")


def _own_order(price: Decimal, sell: bool) -> str:
    """How SELF_TRADE names the account's own order met at `price` (0 or infinite: a
    triggered stop/take child, which trades at every print)."""
    if price == 0 or price.is_infinite():
        return "triggered stop/take child (a market order at every print)"
    return f"resting {'sell' if sell else 'buy'} at {price}"


def self_trade(ctx: RiskContext) -> RuleResult:
    """A limit order may not cross the account's own resting orders on the other side of
    the pair (`RiskContext.own_opposite`): both would rest, and a print between them fills
    both, the account buying from and selling to itself through the tape (a wash trade,
    paying the spread between its limits and the fees). A market order never rests.

    v2: the account's armed take-profit children count at their trigger, and triggered
    stop/take children cross every limit (`EngineState.own_best`); v1 walked parents only,
    and a bid above the account's own take-profit sell rested and filled with it.

    v3: an order's take-profit (a child on the other side from its first fill on, any
    order type) may not cross the account's own orders on the order's side
    (`RiskContext.own_same`): a buy's take-profit at T sells at prints at or above T, where
    the account's own bid at or above T buys. An attached stop-loss is not judged (it
    trades on the far side of its trigger, as every resting order of that side may): the
    paper venue cancels the account's resting orders a print reaches on the other side of
    a child trading at it (`engine.venue.paper.SELF_TRADE`).
    """
    rid, ver = self_trade.RULE_ID, self_trade.RULE_VERSION  # type: ignore[attr-defined]
    own, limit = ctx.own_opposite, ctx.limit_price
    buy = ctx.side is Side.BUY
    if own is not None and limit is not None and (limit >= own if buy else limit <= own):
        return _no(
            rid,
            ver,
            "SELF_CROSS",
            f"limit {limit} crosses the account's own {_own_order(own, buy)}"
            ": a print between them would fill both, a trade with itself",
        )
    same, tp = ctx.own_same, ctx.take_profit
    if same is not None and tp is not None and (same >= tp if buy else same <= tp):
        return _no(
            rid,
            ver,
            "SELF_CROSS",
            f"take_profit {tp} (a {'sell' if buy else 'buy'} once armed) crosses the "
            f"account's own {_own_order(same, not buy)}"
            ": a print between them would fill both, a trade with itself",
        )
    return _ok(rid, ver)


def _tag(rule: Rule, rule_id: str, version: int) -> Rule:
    rule.RULE_ID = rule_id  # type: ignore[attr-defined]
    rule.RULE_VERSION = version  # type: ignore[attr-defined]
    return rule


RULES: tuple[Rule, ...] = (
    _tag(freshness, "FRESHNESS", 4),
    _tag(account_state, "ACCOUNT_STATE", 1),
    _tag(asset_allow_list, "ASSET_ALLOW_LIST", 2),
    _tag(kill_switch, "KILL_SWITCH", 2),
    _tag(drawdown_brake, "DRAWDOWN_BRAKE", 9),
    _tag(price_collar, "PRICE_COLLAR", 4),
    _tag(max_order_notional, "MAX_ORDER_NOTIONAL", 5),
    _tag(max_position, "MAX_POSITION", 3),
    _tag(max_open_orders, "MAX_OPEN_ORDERS", 1),
    _tag(order_rate, "ORDER_RATE", 4),
    _tag(balance, "BALANCE", 5),
    _tag(self_trade, "SELF_TRADE", 3),
)
"""Every rule, in the order their results are recorded."""
