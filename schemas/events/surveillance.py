"""Market-abuse alerts and detector configuration."""

from __future__ import annotations

from typing import Any, ClassVar
from uuid import UUID

from pydantic import Field

from schemas.envelope import EventPayload
from schemas.topics import Topic
from schemas.types import AccountId, Dec, Instrument, UtcTimestamp


class SurveillanceAlert(EventPayload):
    """An explainable alert. `alert_id` derives from detector, version and trigger events."""

    EVENT_TYPE: ClassVar[str] = "SurveillanceAlert"
    TOPIC: ClassVar[str] = Topic.SURVEILLANCE_ALERTS

    alert_id: UUID
    detector: str = Field(min_length=1, max_length=64)
    detector_version: int = Field(ge=1)
    pattern: str = Field(description="SPOOFING, LAYERING, WASH_TRADING, ORDER_TO_TRADE, ...")
    account: AccountId
    related_accounts: tuple[AccountId, ...] = ()
    beneficial_owner: str | None = None
    instrument: Instrument
    score: Dec
    window_start: UtcTimestamp
    window_end: UtcTimestamp
    triggering_event_ids: tuple[UUID, ...]
    evidence: dict[str, Any] = Field(default_factory=dict)
    summary: str


class DetectorConfigChanged(EventPayload):
    """New parameters for one detector; values are strings so decimals stay exact."""

    EVENT_TYPE: ClassVar[str] = "DetectorConfigChanged"
    TOPIC: ClassVar[str] = Topic.SURVEILLANCE_CONFIG

    detector: str = Field(min_length=1, max_length=64)
    config_version: int = Field(ge=1)
    params: dict[str, str]
    changed_by: str
    signature: str | None = Field(
        None,
        description="Hex Ed25519 signature by the issuing admin's registered key over "
        "the command's event id and payload (engine.auth.admin_signing_bytes)",
    )

    def partition_key(self) -> str:
        return self.detector
