"""Pre-trade risk: decisions with every rule's result, limits as events, kill switches."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from schemas.envelope import EventPayload
from schemas.events.orders import INTENT_DIGEST_DOC
from schemas.topics import Topic
from schemas.types import (
    AccountId,
    AssetCode,
    Dec,
    Instrument,
    NonNegativeDec,
    PositiveDec,
    UtcTimestamp,
)

GLOBAL_SCOPE = "*"

MAX_CONFIG_VERSION = 2**31 - 1
"""The highest config version of a limits change: the projections record it (and every
decision's `risk_config_version`) in a PostgreSQL integer. Versions only go up, so one
beyond it would have every later decision quarantined for good (it was accepted)."""
"""Scope key for limits and kill switches that apply to every account."""


class DecisionOutcome(StrEnum):
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"


class RuleResult(BaseModel):
    """One rule's verdict, with the figures it compared so a reviewer can re-check it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rule_id: str
    rule_version: int = Field(ge=1)
    passed: bool
    reason_code: str | None = None
    detail: str = ""


class RiskDecision(EventPayload):
    """The engine's answer to one intent. Its causation is the intent."""

    EVENT_TYPE: ClassVar[str] = "RiskDecision"
    TOPIC: ClassVar[str] = Topic.DECISIONS

    account: AccountId
    producer_id: str
    strategy_id: str
    client_order_id: str
    intent_event_id: UUID
    intent_kind: str = Field(description="ORDER or CANCEL")
    outcome: DecisionOutcome
    reason_codes: tuple[str, ...] = ()
    rule_results: tuple[RuleResult, ...] = ()
    risk_config_version: int = Field(ge=0)
    order_id: str | None = None
    equity: Dec | None = Field(
        None, description="The account's equity in its base currency when decided (orders)"
    )
    peak_equity: Dec | None = Field(
        None,
        description="The drawdown peak the decision measured against, kept on equity plus "
        "what the account's settled withdrawals took out (since DRAWDOWN_BRAKE v4; the "
        "drawdown is measured from it less that); the engine folds it back on restart",
    )
    peak_nav: Dec | None = Field(
        None,
        description="The drawdown peak the decision measured against, as NAV per unit "
        "(equity / the account's units: DRAWDOWN_BRAKE v6, so deposits and withdrawals do "
        "not move it); the engine folds it back on restart. Since v6 peak_equity is this "
        "peak times the units then (the peak in the account's money now), not folded",
    )
    intent_digest: str | None = Field(None, max_length=64, description=INTENT_DIGEST_DOC)
    received_at: UtcTimestamp | None = Field(
        None,
        description="The broker's append time of the intent's record (LogAppendTime), a time "
        "the producer does not control: order-rate windows count in it, and the idempotency "
        "record ranks the decision by it (folded back on restart)",
    )


class PeakEquityRaised(EventPayload):
    """The engine valued the account above its drawdown peak at a public print that moved
    the mark of an asset it holds (`PaperVenue.raise_peaks`): the new peak. Folded like a
    decision's `peak_equity`, so a restart keeps it. Its causation is the print."""

    EVENT_TYPE: ClassVar[str] = "PeakEquityRaised"
    TOPIC: ClassVar[str] = Topic.DECISIONS

    account: AccountId
    instrument: Instrument = Field(description="The printed instrument")
    peak_equity: Dec = Field(
        description="The account's equity in its base currency at the print: its new peak "
        "(since DRAWDOWN_BRAKE v6 for display only: the peak is `peak_nav`)"
    )
    peak_nav: Dec | None = Field(
        None,
        description="The new peak as NAV per unit (equity / units, DRAWDOWN_BRAKE v6): what "
        "the engine folds back on restart; null on events written before v6 (not folded)",
    )


class UnitsChanged(EventPayload):
    """Deposits or settled withdrawals turned into units of the account
    (DRAWDOWN_BRAKE v6, docs/engine.md *What the peak is*): units are issued or redeemed
    at the NAV per unit just before the flows, so the flows leave NAV per unit (the
    drawdown's measure) where it was. Written by the worker owning the account when it
    folds the flow (or, if it could not value the account then, at its next valuation);
    a restart, hand-over or snapshot folds `units` from here and never re-computes it.
    Keyed by the account; its causation is the flow (a deposit's admin command, a
    `TransferSettled`) or the valuation that turned it into units."""

    EVENT_TYPE: ClassVar[str] = "UnitsChanged"
    TOPIC: ClassVar[str] = Topic.DECISIONS

    account: AccountId
    flows: tuple[str, ...] = Field(
        description="The flows turned into units: `deposit:<deposit_id>`, "
        "`withdrawal:<transfer_id>` (none: an account valued with equity but no units, "
        "whose units are issued 1:1 at the last NAV)"
    )
    units: NonNegativeDec = Field(description="The account's units after the flows")
    nav: Dec | None = Field(
        None,
        description="The NAV per unit the units were issued or redeemed at; null if none "
        "could be (equity at or below zero before the flows: units kept)",
    )
    equity: Dec = Field(description="The account's equity after the flows")
    peak_nav: Dec | None = Field(
        None, description="A new drawdown peak (NAV per unit) found at this valuation"
    )


class RestingOrdersChecked(EventPayload):
    """The account's owner ran a fact's pass over its resting orders, cancelling or not.

    In the transaction of the pass: a withdrawal hold's (`processor._unhold`, for a
    transfer fact that raised a hold or settled a rejected withdrawal), a limits
    change's (`processor._limits_changed`, for the `RiskLimitsChanged` in force for the
    account) or a kill switch's halt (`processor._halt`): a global one's per account
    with open orders (or, for an account that had nothing resting then, with its first
    decision approved under the switch), an account's own one engaged by an admin command
    for its account (the drawdown brake's needs none: its fact is the owner's). What
    the pass cancelled, if anything, is on orders.lifecycle, caused by the
    same input. Written whether or not it cancelled anything (for a hold-raising fact, a
    change of the account's own limits and an account's own switch with nothing resting
    too; for a global change or switch, per account with open orders it covers), so the log shows the pass's transaction
    committed and a restart's `catch_up` does not run the pass again on a
    later state, where it could cancel what no live worker did (docs/engine.md
    *Withdrawals*). One per fact and account: its id is derived from the input and the
    account. Keyed by the account; its causation is the fact (for a limits change or a
    switch the engine decided, the admin command)."""

    EVENT_TYPE: ClassVar[str] = "RestingOrdersChecked"
    TOPIC: ClassVar[str] = Topic.DECISIONS

    account: AccountId
    fact_event_id: UUID = Field(
        description="The fact whose pass ran: the transfer fact (`TransferRequested`, "
        "`TransferChecked`, `TransferReleased`, `TransferSettled`), the "
        "`RiskLimitsChanged` or the `KillSwitchEngaged` as published on its topic"
    )
    fact_type: str = Field(min_length=1, max_length=64, description="The event type of that fact")


class RiskLimits(BaseModel):
    """Limit values. Decimal ratios are fractions (0.1 = 10%)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_order_notional: PositiveDec = Field(
        Decimal("250000"),
        description="The largest notional of one order (and of each trigger attached to "
        "it), in the account's valuation currency (base_currency): an order on a pair "
        "quoted in another asset is valued at that asset's mark; one that cannot be is "
        "rejected (NO_MARK)",
    )
    max_position: PositiveDec = Decimal("50")
    max_open_orders: int = Field(200, ge=0)
    price_collar_pct: PositiveDec = Decimal("0.05")
    max_orders_per_window: int = Field(500, ge=0)
    rate_window_seconds: int = Field(1, ge=1)
    drawdown_brake_pct: PositiveDec = Decimal("0.10")
    max_price_age_seconds: int = Field(30, ge=1)
    max_consumer_lag: int = Field(10_000, ge=0)
    max_intent_behind_ms: int = Field(
        5000,
        ge=0,
        description="How far an intent's occurred_at may lie before the broker's append "
        "time of its record (publish latency, producer retries)",
    )
    max_intent_ahead_ms: int = Field(
        1000,
        ge=0,
        description="How far an intent's occurred_at may lie after the broker's append time "
        "(clock drift between producer and broker)",
    )
    order_events_ahead_ms: int = Field(
        0,
        ge=0,
        description="How far after the broker's append time an intent's own occurred_at "
        "is taken, when stamped ahead of it, as the time of its order events and of the "
        "book its order meets (at most max_intent_ahead_ms). 0: the append time, which the "
        "producer does not control. A simulation whose producers run on a clock ahead of "
        "the broker's, with its market data (streams.scenario), allows more",
    )
    allowed_stablecoins: tuple[AssetCode, ...] = ("USDC", "EURC")
    crypto_assets: tuple[AssetCode, ...] = Field(
        ("BTC", "ETH", "SOL"),
        description="Crypto assets other than payment stablecoins that may be traded. Each "
        "asset of a pair must be on this list or on allowed_stablecoins; anything else is "
        "rejected (fail closed). Must not name a stablecoin.",
    )
    credit_limit: NonNegativeDec = Field(
        Decimal("0"),
        description="One amount for the whole account, in its valuation currency "
        "(base_currency): what its balances may fall short by, each short asset valued at "
        "its mark; an asset without a mark gets no credit",
    )


class RiskLimitsChanged(EventPayload):
    """New limits for one account or for all (`scope='*'`). Versions only go up."""

    EVENT_TYPE: ClassVar[str] = "RiskLimitsChanged"
    TOPIC: ClassVar[str] = Topic.RISK_CONFIG

    scope: str = Field(min_length=1, max_length=64)
    config_version: int = Field(ge=1, le=MAX_CONFIG_VERSION)
    limits: RiskLimits
    changed_by: str
    reason: str = ""
    signature: str | None = Field(
        None,
        description="Hex Ed25519 signature by the issuing admin's registered key over "
        "the command's event id and payload (engine.auth.admin_signing_bytes)",
    )

    def partition_key(self) -> str:
        return self.scope


class KillSwitchEngaged(EventPayload):
    """Only risk-reducing orders pass while engaged. Engaged by an admin or the brake."""

    EVENT_TYPE: ClassVar[str] = "KillSwitchEngaged"
    TOPIC: ClassVar[str] = Topic.RISK_CONFIG

    scope: str = Field(min_length=1, max_length=64)
    engaged_by: str = Field(description="an admin id, or 'drawdown-brake'")
    reason: str
    drawdown: Dec | None = None
    peak_equity: Dec | None = None
    equity: Dec | None = None
    signature: str | None = Field(
        None,
        description="Hex Ed25519 signature by the issuing admin's registered key over "
        "the command's event id and payload (engine.auth.admin_signing_bytes)",
    )

    def partition_key(self) -> str:
        return self.scope


class KillSwitchReleased(EventPayload):
    EVENT_TYPE: ClassVar[str] = "KillSwitchReleased"
    TOPIC: ClassVar[str] = Topic.RISK_CONFIG

    scope: str = Field(min_length=1, max_length=64)
    released_by: str
    reason: str
    signature: str | None = Field(
        None,
        description="Hex Ed25519 signature by the issuing admin's registered key over "
        "the command's event id and payload (engine.auth.admin_signing_bytes)",
    )

    def partition_key(self) -> str:
        return self.scope


__all__ = [
    "GLOBAL_SCOPE",
    "DecisionOutcome",
    "KillSwitchEngaged",
    "KillSwitchReleased",
    "RestingOrdersChecked",
    "RiskDecision",
    "RiskLimits",
    "RiskLimitsChanged",
    "RuleResult",
]
