"""Order intents from strategies, the order lifecycle, and fills."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar, Literal
from uuid import UUID

from pydantic import Field, model_validator

from schemas.envelope import EventPayload
from schemas.topics import Topic
from schemas.types import (
    MAX_SIGNATURE,
    AccountId,
    AssetCode,
    Dec,
    Instrument,
    NonNegativeDec,
    PositiveDec,
    ProducerId,
    UtcTimestamp,
)

ClientOrderId = str


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1


class OrderType(StrEnum):
    LIMIT = "LIMIT"
    MARKET = "MARKET"
    STOP_LOSS = "STOP_LOSS"
    TAKE_PROFIT = "TAKE_PROFIT"


class TimeInForce(StrEnum):
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"


class Liquidity(StrEnum):
    MAKER = "MAKER"
    TAKER = "TAKER"


class OrderIntent(EventPayload):
    """A strategy's request to trade, signed by its producer key over its canonical bytes."""

    EVENT_TYPE: ClassVar[str] = "OrderIntent"
    TOPIC: ClassVar[str] = Topic.INTENTS

    producer_id: ProducerId
    strategy_id: str = Field(min_length=1, max_length=64)
    account: AccountId
    client_order_id: str = Field(min_length=1, max_length=64)
    instrument: Instrument
    side: Side
    order_type: Literal[OrderType.LIMIT, OrderType.MARKET]
    quantity: PositiveDec
    limit_price: PositiveDec | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    stop_loss: PositiveDec | None = Field(None, description="Attached stop-loss trigger price")
    take_profit: PositiveDec | None = Field(None, description="Attached take-profit trigger price")
    venue: str = Field("paper", min_length=1, max_length=32)
    signature: str | None = Field(
        None,
        max_length=MAX_SIGNATURE,
        description="Hex Ed25519 signature over the canonical bytes without this field",
    )

    @model_validator(mode="after")
    def _price_matches_type(self) -> OrderIntent:
        if self.order_type is OrderType.LIMIT and self.limit_price is None:
            raise ValueError("a LIMIT intent needs limit_price")
        if self.order_type is OrderType.MARKET and self.limit_price is not None:
            raise ValueError("a MARKET intent must not carry limit_price")
        return self


class CancelIntent(EventPayload):
    """A strategy's request to cancel one of its own orders, by client order id."""

    EVENT_TYPE: ClassVar[str] = "CancelIntent"
    TOPIC: ClassVar[str] = Topic.INTENTS

    producer_id: ProducerId
    strategy_id: str = Field(min_length=1, max_length=64)
    account: AccountId
    client_order_id: str = Field(min_length=1, max_length=64)
    target_client_order_id: str = Field(min_length=1, max_length=64)
    signature: str | None = Field(None, max_length=MAX_SIGNATURE)


INTENT_DIGEST_DOC = (
    "A fingerprint of the intent decided (its type and signed content): a resend with the "
    "same client order id gets this decision back only if its digest is the same"
)


class IntentRejectReason(StrEnum):
    UNKNOWN_PRODUCER = "UNKNOWN_PRODUCER"
    PRODUCER_REVOKED = "PRODUCER_REVOKED"
    """The producer's key was revoked (`ProducerRevoked`): refused before its signature is
    checked, so, like UNKNOWN_PRODUCER, never recorded under the intent's idempotency key."""
    BAD_SIGNATURE = "BAD_SIGNATURE"
    NOT_ENTITLED = "NOT_ENTITLED"
    INVALID_INTENT = "INVALID_INTENT"
    UNKNOWN_ORDER = "UNKNOWN_ORDER"
    """A cancel naming no order of the producer on the account: an id never used, one whose
    intent was rejected, a cancel's (FIX CxlRejReason 1, "unknown order")."""
    TOO_LATE_TO_CANCEL = "TOO_LATE_TO_CANCEL"
    """A cancel naming an order that is done (filled, canceled, expired, rejected by the
    venue; no armed stop/take child left): the detail names its order id, final state and
    filled quantity while the engine keeps them (FIX CxlRejReason 0, "too late to
    cancel"). Joined schema v1 in session 19; before, such a cancel was UNKNOWN_ORDER."""
    CLIENT_ORDER_ID_REUSED = "CLIENT_ORDER_ID_REUSED"
    """The (producer, account, client_order_id) was decided for an intent with other content:
    a resend must repeat the intent exactly to get the original decision back."""
    WRONG_PARTITION = "WRONG_PARTITION"
    """The intent came on another partition of orders.intents than its account's (murmur2
    of the account, as every producer's partitioner picks): the worker there need not hold
    the account's state, so it decides nothing about the intent. Refused before its
    signature is checked and, like UNKNOWN_PRODUCER, never recorded under its idempotency
    key: a copy of a signed intent sent elsewhere cannot decide the intent sent right
    (session 23; before, a recorded STALE_STATE `RiskDecision`)."""


class IntentRejected(EventPayload):
    """An intent refused before risk: authentication, entitlement or validity."""

    EVENT_TYPE: ClassVar[str] = "IntentRejected"
    TOPIC: ClassVar[str] = Topic.DECISIONS

    account: AccountId
    producer_id: str
    client_order_id: str | None = None
    intent_event_id: UUID | None = None
    reason: IntentRejectReason
    detail: str = Field(max_length=2000)
    intent_digest: str | None = Field(None, max_length=64, description=INTENT_DIGEST_DOC)
    received_at: UtcTimestamp | None = Field(
        None,
        description="The broker's append time of the intent's record (LogAppendTime), a time "
        "the producer does not control: the idempotency record ranks a recorded rejection by "
        "it (folded back on restart). None: not known (no broker time, or written before "
        "session 24)",
    )
    intent_partition: int | None = Field(
        None,
        ge=0,
        description="The partition of the intents topic the refused intent's record was "
        "read from (with intent_offset: that record). A client tells the refusal of its "
        "own record from that of a copy of its envelope sent elsewhere by someone else "
        "(which the engine refuses under the same correlation id: WRONG_PARTITION, "
        "BAD_SIGNATURE) by the position the broker acknowledged. None: not known (no "
        "broker, or written before session 24)",
    )
    intent_offset: int | None = Field(
        None, ge=0, description="The offset of that record in intent_partition"
    )


class OrderSubmitted(EventPayload):
    """An approved order sent to a venue. Attached stop/take orders name their parent."""

    EVENT_TYPE: ClassVar[str] = "OrderSubmitted"
    TOPIC: ClassVar[str] = Topic.ORDERS

    order_id: str = Field(min_length=1, max_length=64)
    account: AccountId
    producer_id: str
    strategy_id: str
    client_order_id: str
    instrument: Instrument
    side: Side
    order_type: OrderType
    quantity: PositiveDec
    limit_price: PositiveDec | None = None
    trigger_price: PositiveDec | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    venue: str
    parent_order_id: str | None = None
    decision_event_id: UUID | None = None
    stop_loss: PositiveDec | None = Field(
        None, description="Attached stop-loss trigger, armed as a child order once this fills"
    )
    take_profit: PositiveDec | None = Field(
        None, description="Attached take-profit trigger, armed as a child order once this fills"
    )
    producer_key: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{64}$",
        description="The producer's key (raw Ed25519, hex) the intent's signature verified "
        "with: a revocation of that key (or of a later one) cancels the order, whatever "
        "rotation follows. None: a stop/take child, or written before session 19 (then "
        "the producer's first revocation cancels it)",
    )


class OrderAccepted(EventPayload):
    EVENT_TYPE: ClassVar[str] = "OrderAccepted"
    TOPIC: ClassVar[str] = Topic.ORDERS

    order_id: str
    account: AccountId
    venue: str
    venue_order_id: str


class OrderRejected(EventPayload):
    """The venue refused the order."""

    EVENT_TYPE: ClassVar[str] = "OrderRejected"
    TOPIC: ClassVar[str] = Topic.ORDERS

    order_id: str
    account: AccountId
    venue: str
    reason: str


class CancelRequested(EventPayload):
    EVENT_TYPE: ClassVar[str] = "CancelRequested"
    TOPIC: ClassVar[str] = Topic.ORDERS

    order_id: str
    account: AccountId
    reason: str = Field(description="CLIENT, KILL_SWITCH, OCO (sibling filled), ...")


class OrderCanceled(EventPayload):
    EVENT_TYPE: ClassVar[str] = "OrderCanceled"
    TOPIC: ClassVar[str] = Topic.ORDERS

    order_id: str
    account: AccountId
    filled_quantity: NonNegativeDec
    leaves_quantity: NonNegativeDec
    reason: str


class OrderExpired(EventPayload):
    """An IOC/FOK remainder, or an order the venue aged out."""

    EVENT_TYPE: ClassVar[str] = "OrderExpired"
    TOPIC: ClassVar[str] = Topic.ORDERS

    order_id: str
    account: AccountId
    filled_quantity: NonNegativeDec
    leaves_quantity: NonNegativeDec
    reason: str


class OrderTriggered(EventPayload):
    """An attached stop-loss/take-profit child whose trigger a print crossed while it got
    nothing of that print (the account's resting orders on its side took it all): it is a
    market order from then on, filling at the next prints newer than `triggered_at`
    whatever their price, and its sibling is canceled (OCO). A child that fills at the
    print that triggers it needs no such event (its fill says so). Also written for the
    child that replaces a triggered one when its parent fills again (`replaces`): the
    replacement is triggered as well. The engine folds it back on restart."""

    EVENT_TYPE: ClassVar[str] = "OrderTriggered"
    TOPIC: ClassVar[str] = Topic.ORDERS

    order_id: str = Field(min_length=1, max_length=64)
    account: AccountId
    trigger_price: PositiveDec
    price: PositiveDec | None = Field(
        None, description="The print that crossed the trigger; null for a replacement"
    )
    triggered_at: UtcTimestamp = Field(
        description="The print's exchange time (a replacement: the one it replaces had "
        "filled or been triggered until then): the child fills only at prints newer"
    )
    replaces: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="The triggered child this one replaces (its parent filled again)",
    )


class Fill(EventPayload):
    """An execution. The UTI identifies the transaction for regulatory reporting."""

    EVENT_TYPE: ClassVar[str] = "Fill"
    TOPIC: ClassVar[str] = Topic.ORDERS

    fill_id: str = Field(min_length=1, max_length=64)
    order_id: str
    account: AccountId
    instrument: Instrument
    side: Side
    quantity: PositiveDec
    price: PositiveDec
    fee: NonNegativeDec
    fee_asset: AssetCode
    liquidity: Liquidity
    venue: str
    venue_trade_id: str = Field(min_length=1, max_length=64)
    uti: str = Field(min_length=1, max_length=52, description="Unique transaction identifier")
    traded_at: UtcTimestamp
    leaves_quantity: NonNegativeDec
    peak_equity: Dec | None = Field(
        None,
        description="The account's drawdown peak, raised to its equity (plus what its "
        "settled withdrawals took out, since DRAWDOWN_BRAKE v4) as the engine valued it at "
        "the print that filled this order (before the fill); null if not raised. The "
        "engine folds it back on restart (until DRAWDOWN_BRAKE v6; since v6 for display "
        "only: `peak_nav` is folded)",
    )
    peak_nav: Dec | None = Field(
        None,
        description="The drawdown peak as NAV per unit (equity / units, DRAWDOWN_BRAKE v6) "
        "raised at the print that filled this order (before the fill); null if not raised. "
        "The engine folds it back on restart",
    )
    quote_id: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="Of a taker fill on submission: the quote (its event id) whose displayed "
        "quantity it took, which the account's later orders against that quote no longer "
        "find; the engine folds it back on restart. Null for fills at public prints",
    )

    @property
    def notional(self) -> Dec:
        return self.quantity * self.price
