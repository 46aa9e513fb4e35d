"""Build a rule context from the engine state and run every rule, failing closed."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from datetime import datetime
from decimal import Decimal
from typing import Any

from engine.risk.rules import RULES, RiskContext, Rule
from engine.state import (
    STABLECOINS,
    ZERO,
    EngineState,
    rate_allowance,
    rate_count,
    split_instrument,
)
from schemas.events import OrderIntent, RuleResult, Side

_CONTEXT_FIELDS = len(dataclass_fields(RiskContext))
_new = object.__new__
_set = object.__setattr__


@dataclass(frozen=True)
class Evaluation:
    passed: bool
    results: tuple[RuleResult, ...]
    reason_codes: tuple[str, ...]
    config_version: int
    context: RiskContext | None


def build_context(
    state: EngineState,
    intent: OrderIntent,
    intent_at: datetime,
    *,
    consumer_lag: int,
    taker_fee_rate: Decimal,
    received_at: datetime | None = None,
    book_at: datetime | None = None,
) -> RiskContext:
    """`received_at`: the broker's append time of the intent; None fails FRESHNESS.
    `book_at`: when the order is submitted (`processor.order_events_at`), whose book it
    meets; None: `intent_at` (no broker time)."""
    acc = state.account(intent.account)
    version, limits = state.limits_for(intent.account)
    base, quote = split_instrument(intent.instrument)
    ps = state.price(intent.instrument)
    ref = ps.reference()
    # The book the paper venue will fill the order against (event time), not the newest:
    # at its submission, not at the stamp its producer chose (FRESHNESS v4,
    # PRICE_COLLAR v4, MAX_ORDER_NOTIONAL v5, BALANCE v5).
    book = ps.book_at(intent_at if book_at is None else book_at)
    # O(1) in the open orders: the fold keeps their commitments per account (`Exposure`),
    # and what pending withdrawals hold (`AccountState.held`).
    x = acc.exposure
    fee = 1 + taker_fee_rate
    reserved_quote = state.reserved(acc, quote, fee)
    reserved_base = state.reserved(acc, base, fee)
    open_buy = x.buy_leaves.get(intent.instrument, ZERO)
    open_sell = x.sell_leaves.get(intent.instrument, ZERO)
    # Open orders beyond its parents: the account has stop/take children (asked once
    # here for `own_best` and `children_closing`, which returns zero without them).
    has_children = len(acc.open_orders) > x.open_parents
    # Only an account with resting orders on the other side of the pair walks them.
    # Its stop/take children too (`own_best`).
    own_opposite = (
        state.own_best(acc, intent.instrument, intent.side.opposite)
        if intent.limit_price is not None
        and ((open_sell if intent.side is Side.BUY else open_buy) > 0 or has_children)
        else None
    )
    # A take-profit becomes a child on the other side: the account's resting orders on
    # this side meet it (`own_best`).
    own_same = (
        state.own_best(acc, intent.instrument, intent.side)
        if intent.take_profit is not None
        and ((open_buy if intent.side is Side.BUY else open_sell) > 0 or has_children)
        else None
    )
    open_base_buy = ZERO
    for instrument, leaves in x.buy_leaves.items():  # the account's pairs with open buys
        if split_instrument(instrument)[0] == base:
            open_base_buy += leaves
    open_count = x.open_parents
    spent = quote if intent.side is Side.BUY else base
    credit = state.credit_headroom(acc, spent, fee, limits.credit_limit)
    limits_window, _allowed = rate_allowance(limits)  # counted back at most the horizon
    equity = state.equity(intent.account)
    fields: dict[str, Any] = {  # a literal: `dict(**kw)` builds the dict twice
        "account_opened": acc.opened,
        "kyc_verified": acc.kyc,
        "aml_flags": tuple(sorted(acc.aml_flags)) if acc.aml_flags else (),
        "limits": limits,
        "config_version": version,
        "instrument": intent.instrument,
        "base_asset": base,
        "quote_asset": quote,
        "side": intent.side,
        "order_type": intent.order_type,
        "quantity": intent.quantity,
        "limit_price": intent.limit_price,
        "stop_loss": intent.stop_loss,
        "take_profit": intent.take_profit,
        "intent_at": intent_at,
        "received_at": received_at,
        "reference_price": ref[0] if ref else None,
        "reference_at": ref[1] if ref else None,
        "best_bid": book.bid if book is not None else None,
        "best_ask": book.ask if book is not None else None,
        "book_time": book.at if book is not None else None,
        "consumer_lag": consumer_lag,
        "position": acc.positions.get(intent.instrument, ZERO),
        "open_buy_leaves": open_buy,
        "open_sell_leaves": open_sell,
        "own_opposite": own_opposite,
        "own_same": own_same,
        "open_base_buy_leaves": open_base_buy,
        "open_orders": open_count,
        "recent_orders": rate_count(
            state,
            intent.producer_id,
            intent.account,
            intent_at if received_at is None else received_at,
            limits_window,
        ),
        "quote_available": acc.balances.get(quote, ZERO),
        "base_available": acc.balances.get(base, ZERO),
        "reserved_quote": reserved_quote,
        "reserved_base": reserved_base,
        "credit_available": credit,
        "taker_fee_rate": taker_fee_rate,
        "kill_engaged": state.kill_engaged(intent.account),
        "equity": equity,
        "peak_nav": acc.peak_nav,
        "known_stablecoins": STABLECOINS,
        "valuation_currency": acc.base_currency,
        "quote_mark": state.mark(quote, acc),
        "nav": state.nav(intent.account, equity),
        "flows_pending": bool(acc.pending),
        "lost_in_full": state.lost_in_full(intent.account, equity),
        "open_side_children": state.children_closing(acc, intent.instrument, intent.side)
        if has_children
        else ZERO,
    }
    if len(fields) != _CONTEXT_FIELDS:
        return RiskContext(**fields)  # not every field given: let the constructor say so
    ctx: RiskContext = _new(RiskContext)
    _set(ctx, "__dict__", fields)  # what the frozen dataclass's __init__ sets, at 1/3 the cost
    return ctx


def run_rules(ctx: RiskContext, rules: tuple[Rule, ...] = RULES) -> Evaluation:
    """All rules run and are recorded; any failure, or any exception, rejects."""
    results: list[RuleResult] = []
    for rule in rules:
        try:
            result = rule(ctx)
        except Exception as exc:  # fail closed: a rule that cannot decide rejects
            result = RuleResult(
                rule_id=getattr(rule, "RULE_ID", rule.__name__),
                rule_version=getattr(rule, "RULE_VERSION", 1),
                passed=False,
                reason_code="RULE_ERROR",
                detail=f"{type(exc).__name__}: {exc}"[:500],
            )
        results.append(result)
    failed = [r for r in results if not r.passed]
    codes = tuple(dict.fromkeys(r.reason_code or "FAILED" for r in failed)) if failed else ()
    return _evaluation(not codes, tuple(results), codes, ctx.config_version, ctx)


def _evaluation(
    passed: bool,
    results: tuple[RuleResult, ...],
    reason_codes: tuple[str, ...],
    config_version: int,
    context: RiskContext | None,
) -> Evaluation:
    """`Evaluation(...)` without the frozen dataclass's per-field `setattr` (as for the
    context above): one per intent."""
    ev: Evaluation = _new(Evaluation)
    _set(
        ev,
        "__dict__",
        {
            "passed": passed,
            "results": results,
            "reason_codes": reason_codes,
            "config_version": config_version,
            "context": context,
        },
    )
    return ev


def evaluate(
    state: EngineState,
    intent: OrderIntent,
    intent_at: datetime,
    *,
    consumer_lag: int,
    taker_fee_rate: Decimal,
    received_at: datetime | None = None,
    book_at: datetime | None = None,
) -> Evaluation:
    try:
        ctx = build_context(
            state,
            intent,
            intent_at,
            consumer_lag=consumer_lag,
            taker_fee_rate=taker_fee_rate,
            received_at=received_at,
            book_at=book_at,
        )
    except Exception as exc:  # fail closed
        version = state.limits_for(intent.account)[0]
        result = RuleResult(
            rule_id="CONTEXT",
            rule_version=1,
            passed=False,
            reason_code="RULE_ERROR",
            detail=f"{type(exc).__name__}: {exc}"[:500],
        )
        return Evaluation(False, (result,), ("RULE_ERROR",), version, None)
    return run_rules(ctx)


if tuple(f.name for f in dataclass_fields(Evaluation)) != (
    "passed",
    "results",
    "reason_codes",
    "config_version",
    "context",
):
    raise TypeError("Evaluation's fields changed: update `_evaluation`")
