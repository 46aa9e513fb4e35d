"""Transfers and deposits, with room for the IVMS-101 travel-rule payload."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar

from pydantic import Field

from schemas.envelope import EventPayload
from schemas.topics import Topic
from schemas.types import AccountId, AssetCode, CountryCode, PositiveDec, UtcTimestamp


class TransferCheckOutcome(StrEnum):
    PASS = "PASS"
    HOLD = "HOLD"
    REJECT = "REJECT"


class TransferRequested(EventPayload):
    EVENT_TYPE: ClassVar[str] = "TransferRequested"
    TOPIC: ClassVar[str] = Topic.TRANSFERS

    transfer_id: str = Field(min_length=1, max_length=64)
    account: AccountId
    asset: AssetCode
    amount: PositiveDec
    destination_address: str = Field(min_length=1, max_length=128)
    destination_vasp: str | None = Field(None, description="LEI or name of the beneficiary VASP")
    destination_country: CountryCode | None = None
    self_hosted: bool = False
    ivms101: dict[str, Any] | None = Field(None, description="IVMS-101 IdentityPayload")


class TransferChecked(EventPayload):
    EVENT_TYPE: ClassVar[str] = "TransferChecked"
    TOPIC: ClassVar[str] = Topic.TRANSFERS

    transfer_id: str
    account: AccountId
    outcome: TransferCheckOutcome
    jurisdiction: str
    rule_results: tuple[dict[str, str], ...] = ()
    reason: str = ""


class TransferReleased(EventPayload):
    EVENT_TYPE: ClassVar[str] = "TransferReleased"
    TOPIC: ClassVar[str] = Topic.TRANSFERS

    transfer_id: str
    account: AccountId
    approved_by: tuple[str, ...] = ()
    signature: str | None = Field(None, description="Hex threshold signature over the release")


class TransferSettled(EventPayload):
    EVENT_TYPE: ClassVar[str] = "TransferSettled"
    TOPIC: ClassVar[str] = Topic.TRANSFERS

    transfer_id: str
    account: AccountId
    tx_hash: str
    settled_at: UtcTimestamp


class DepositReceived(EventPayload):
    EVENT_TYPE: ClassVar[str] = "DepositReceived"
    TOPIC: ClassVar[str] = Topic.TRANSFERS

    deposit_id: str = Field(min_length=1, max_length=64)
    account: AccountId
    asset: AssetCode
    amount: PositiveDec
    source_address: str | None = None
    tx_hash: str | None = None
    self_hosted: bool = False
    ivms101: dict[str, Any] | None = None
    signature: str | None = Field(
        None,
        description="Hex Ed25519 signature by the issuing admin's registered key over "
        "the command's event id and payload (engine.auth.admin_signing_bytes)",
    )
