"""Threshold signing: every signing is recorded with who took part and what was signed."""

from __future__ import annotations

from typing import ClassVar
from uuid import UUID

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
    requester: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="Registered producer (ProducerRegistered) whose key signs this request "
        "and the signing package; participants refuse requesters their group does not allow",
    )
    artefact: str | None = Field(
        None,
        min_length=1,
        max_length=512,
        description="The signed artefact's path relative to an artefact store; a participant "
        "with that store (TRADETAPE_SIGNER_ARTEFACT_ROOT) signs only if the digest is its SHA-256",
    )
    signature: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{128}$",
        description="Hex Ed25519 signature by the sender's key over the payload's canonical "
        "bytes without this field (signer_ffi.authn.message_signing_bytes)",
    )

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
    signature: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{128}$",
        description="Hex Ed25519 signature by the participant's identity key over the payload's canonical "
        "bytes without this field (signer_ffi.authn.message_signing_bytes)",
    )

    def partition_key(self) -> str:
        return self.request_id


class SigningPackageIssued(EventPayload):
    """The coordinator's choice of signers and the FROST signing package they sign."""

    EVENT_TYPE: ClassVar[str] = "SigningPackageIssued"
    TOPIC: ClassVar[str] = Topic.SIGNING_MESSAGES

    request_id: str = Field(min_length=1, max_length=64)
    participants: tuple[int, ...]
    signing_package_hex: str = Field(pattern=r"^[0-9a-f]+$")
    signature: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{128}$",
        description="Hex Ed25519 signature by the requester's key over the payload's canonical "
        "bytes without this field (signer_ffi.authn.message_signing_bytes)",
    )

    def partition_key(self) -> str:
        return self.request_id


class SignatureSharePublished(EventPayload):
    """Round 2: one participant's signature share over the issued signing package."""

    EVENT_TYPE: ClassVar[str] = "SignatureSharePublished"
    TOPIC: ClassVar[str] = Topic.SIGNING_MESSAGES

    request_id: str = Field(min_length=1, max_length=64)
    participant: int = Field(ge=1, le=65535)
    share_hex: str = Field(pattern=r"^[0-9a-f]+$")
    signature: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{128}$",
        description="Hex Ed25519 signature by the participant's identity key over the payload's canonical "
        "bytes without this field (signer_ffi.authn.message_signing_bytes)",
    )

    def partition_key(self) -> str:
        return self.request_id


class SigningMessageRejected(EventPayload):
    """A signing-round message its receiver refused: no commitment, share or package follows.

    Written by a participant (a request or package it will not answer) or by the
    coordinator (a commitment or share that is forged or unauthorised), with the reason.
    """

    EVENT_TYPE: ClassVar[str] = "SigningMessageRejected"
    TOPIC: ClassVar[str] = Topic.SIGNING

    request_id: str = Field(min_length=1, max_length=64)
    rejected_by: str = Field(min_length=1, max_length=64)
    message_type: str
    message_event_id: UUID
    sender: str = Field(description="The envelope's producer: who the message claims to be")
    reason: str

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
    identity_public_hex: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{64}$",
        description="The participant's Ed25519 identity key, with which it signs its "
        "signing-round messages; recorded in every participant's group.json",
    )

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
