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


class SigningCommitmentPublished(EventPayload):
    """Round 1: a participant's public nonce commitments (the nonces stay in its memory)."""

    EVENT_TYPE: ClassVar[str] = "SigningCommitmentPublished"
    TOPIC: ClassVar[str] = Topic.SIGNING_MESSAGES

    request_id: str = Field(min_length=1, max_length=64)
    participant: int = Field(ge=1, le=65535)
    commitments_hex: str = Field(pattern=r"^[0-9a-f]+$")

    def partition_key(self) -> str:
        return self.request_id


class SigningPackageIssued(EventPayload):
    """The coordinator's choice of signers and the FROST signing package they sign."""

    EVENT_TYPE: ClassVar[str] = "SigningPackageIssued"
    TOPIC: ClassVar[str] = Topic.SIGNING_MESSAGES

    request_id: str = Field(min_length=1, max_length=64)
    participants: tuple[int, ...]
    signing_package_hex: str = Field(pattern=r"^[0-9a-f]+$")

    def partition_key(self) -> str:
        return self.request_id


class SignatureSharePublished(EventPayload):
    """Round 2: one participant's signature share over the issued signing package."""

    EVENT_TYPE: ClassVar[str] = "SignatureSharePublished"
    TOPIC: ClassVar[str] = Topic.SIGNING_MESSAGES

    request_id: str = Field(min_length=1, max_length=64)
    participant: int = Field(ge=1, le=65535)
    share_hex: str = Field(pattern=r"^[0-9a-f]+$")

    def partition_key(self) -> str:
        return self.request_id


class DkgRound1Published(EventPayload):
    """DKG part 1 broadcast, plus an X25519 key so round-2 packages can be sealed to it."""

    EVENT_TYPE: ClassVar[str] = "DkgRound1Published"
    TOPIC: ClassVar[str] = Topic.SIGNING_MESSAGES

    ceremony_id: str = Field(min_length=1, max_length=64)
    participant: int = Field(ge=1, le=65535)
    package_hex: str = Field(pattern=r"^[0-9a-f]+$")
    x25519_public_hex: str = Field(pattern=r"^[0-9a-f]{64}$")

    def partition_key(self) -> str:
        return self.ceremony_id


class DkgRound2Published(EventPayload):
    """DKG part 2 package for one recipient, sealed with X25519 + AES-GCM (secret on the wire)."""

    EVENT_TYPE: ClassVar[str] = "DkgRound2Published"
    TOPIC: ClassVar[str] = Topic.SIGNING_MESSAGES

    ceremony_id: str = Field(min_length=1, max_length=64)
    sender: int = Field(ge=1, le=65535)
    recipient: int = Field(ge=1, le=65535)
    sealed_package_hex: str = Field(pattern=r"^[0-9a-f]+$")

    def partition_key(self) -> str:
        return self.ceremony_id


class DkgCompleted(EventPayload):
    """A participant finished DKG part 3; all must report the same group key."""

    EVENT_TYPE: ClassVar[str] = "DkgCompleted"
    TOPIC: ClassVar[str] = Topic.SIGNING

    ceremony_id: str = Field(min_length=1, max_length=64)
    participant: int = Field(ge=1, le=65535)
    group_public_key: str = Field(pattern=r"^[0-9a-f]{64}$")

    def partition_key(self) -> str:
        return self.ceremony_id
