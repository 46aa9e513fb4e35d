"""Admin commands and their rejection.

An admin command is published on `admin.commands` as the very event it asks for
(e.g. an `AccountOpened`); the engine validates it and re-publishes the accepted fact
on the domain topic, or answers with `AdminCommandRejected`.
"""

from __future__ import annotations

from typing import ClassVar
from uuid import UUID

from pydantic import Field

from schemas.envelope import EventPayload
from schemas.topics import Topic

ADMIN_COMMAND_TYPES: tuple[str, ...] = (
    "AccountOpened",
    "KycVerified",
    "AmlFlagRaised",
    "AmlFlagCleared",
    "ProducerRegistered",
    "ProducerRevoked",
    "ProducerKeyRotated",
    "RiskLimitsChanged",
    "KillSwitchEngaged",
    "KillSwitchReleased",
    "DepositReceived",
    "DetectorConfigChanged",
)


class AdminCommandRejected(EventPayload):
    EVENT_TYPE: ClassVar[str] = "AdminCommandRejected"
    TOPIC: ClassVar[str] = Topic.DECISIONS

    command_event_id: UUID
    command_type: str
    key: str = Field(min_length=1, max_length=128)
    reason: str

    def partition_key(self) -> str:
        return self.key
