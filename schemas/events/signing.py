"""Threshold signing: every signing is recorded with who took part and what was signed."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from schemas.envelope import EventPayload
from schemas.topics import Topic


class SigningRequested(EventPayload):
    EVENT_TYPE: ClassVar[str] = "SigningRequested"
    TOPIC: ClassVar[str] = Topic.SIGNING_REQUESTS

    request_id: str = Field(min_length=1, max_length=64)
    digest_hex: str = Field(pattern=r"^[0-9a-f]+$")
    purpose: str
    signers: tuple[int, ...]
    group_public_key: str

    def partition_key(self) -> str:
        return self.request_id


class SigningCompleted(EventPayload):
    EVENT_TYPE: ClassVar[str] = "SigningCompleted"
    TOPIC: ClassVar[str] = Topic.SIGNING

    request_id: str = Field(min_length=1, max_length=64)
    digest_hex: str
    purpose: str
    participants: tuple[int, ...]
    group_public_key: str
    signature_hex: str = Field(pattern=r"^[0-9a-f]{128}$")

    def partition_key(self) -> str:
        return self.request_id


class SigningFailed(EventPayload):
    EVENT_TYPE: ClassVar[str] = "SigningFailed"
    TOPIC: ClassVar[str] = Topic.SIGNING

    request_id: str = Field(min_length=1, max_length=64)
    digest_hex: str
    purpose: str
    participants: tuple[int, ...]
    reason: str
    culprits: tuple[int, ...] = ()

    def partition_key(self) -> str:
        return self.request_id
