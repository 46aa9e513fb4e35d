"""Event payload models, one module per domain."""

from schemas.events.accounts import (
    AccountOpened,
    AmlFlagCleared,
    AmlFlagRaised,
    BeneficialOwner,
    KycVerified,
    OwnerKind,
    ProducerRegistered,
)
from schemas.events.admin import AdminCommandRejected
from schemas.events.deadletter import DeadLetter
from schemas.events.marketdata import MarketTrade, QuoteUpdated
from schemas.events.orders import (
    CancelIntent,
    CancelRequested,
    Fill,
    IntentRejected,
    Liquidity,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderIntent,
    OrderRejected,
    OrderSubmitted,
    OrderType,
    Side,
    TimeInForce,
)
from schemas.events.risk import (
    KillSwitchEngaged,
    KillSwitchReleased,
    RiskDecision,
    RiskLimits,
    RiskLimitsChanged,
    RuleResult,
)
from schemas.events.signing import SigningCompleted, SigningFailed, SigningRequested
from schemas.events.surveillance import DetectorConfigChanged, SurveillanceAlert
from schemas.events.transfers import (
    DepositReceived,
    TransferChecked,
    TransferReleased,
    TransferRequested,
    TransferSettled,
)

__all__ = [
    "AccountOpened",
    "AdminCommandRejected",
    "AmlFlagCleared",
    "AmlFlagRaised",
    "BeneficialOwner",
    "CancelIntent",
    "CancelRequested",
    "DeadLetter",
    "DepositReceived",
    "DetectorConfigChanged",
    "Fill",
    "IntentRejected",
    "KillSwitchEngaged",
    "KillSwitchReleased",
    "KycVerified",
    "Liquidity",
    "MarketTrade",
    "OrderAccepted",
    "OrderCanceled",
    "OrderExpired",
    "OrderIntent",
    "OrderRejected",
    "OrderSubmitted",
    "OrderType",
    "OwnerKind",
    "ProducerRegistered",
    "QuoteUpdated",
    "RiskDecision",
    "RiskLimits",
    "RiskLimitsChanged",
    "RuleResult",
    "Side",
    "SigningCompleted",
    "SigningFailed",
    "SigningRequested",
    "SurveillanceAlert",
    "TimeInForce",
    "TransferChecked",
    "TransferReleased",
    "TransferRequested",
    "TransferSettled",
]
