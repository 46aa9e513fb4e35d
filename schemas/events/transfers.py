"""Transfers (the transfer service's, on transfers.events; the travel rule's checks on
transfers.checks) and deposits (the engine's, on accounts.events), with room for the
IVMS-101 travel-rule payload."""

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
    """A withdrawal the transfer service asks for. Version 2 (session 25) adds
    `ownership_proof`: the EU's Transfer of Funds Regulation (2023/1113) holds a transfer
    of more than EUR 1,000 to or from a self-hosted address until the customer has shown
    that they own or control it; the travel-rule check (`streams.travel_rule`) passes
    that rule when the request names its evidence. Version 1 (`TransferRequestedV1`)
    had no such field and keeps its meaning: no proof given."""

    EVENT_TYPE: ClassVar[str] = "TransferRequested"
    SCHEMA_VERSION: ClassVar[int] = 2
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
    ownership_proof: str | None = Field(
        None,
        min_length=1,
        max_length=256,
        description="Reference to the evidence that the customer owns or controls the "
        "self-hosted address (a signed message's id, a test transaction's hash, a "
        "reviewed document's id), checked by the transfer service before it is named here "
        "(since version 2)",
    )


class TransferRequestedV1(TransferRequested):
    """Version 1 (until session 25): no `ownership_proof`. Kept so that the log's v1
    requests parse and keep their meaning (a `TransferRequested` to every reader,
    `isinstance` included); one naming a proof is refused."""

    SCHEMA_VERSION: ClassVar[int] = 1

    ownership_proof: None = Field(None, description="Not in version 1: always null")


class TransferChecked(EventPayload):
    """The travel rule's answer to a `TransferRequested`; only the travel rule writes it.

    On transfers.checks, which only the travel rule's principal may write (session 27):
    on transfers.events the transfer service's principal could write one claiming
    producer `travelrule`, and a `REJECT` frees the withdrawal's hold. Every reader
    refuses one read from transfers.events."""

    EVENT_TYPE: ClassVar[str] = "TransferChecked"
    TOPIC: ClassVar[str] = Topic.TRANSFER_CHECKS

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
    """A deposit the engine accepted (an admin command, re-published as the engine's
    fact). On accounts.events, which only the engine writes, since session 22: on
    transfers.events, which the transfer service writes too, the broker's ACLs could not
    stop that service from writing one that claims the engine as its producer, and every
    reader credited it. One read from transfers.events is refused by every reader
    (`schemas.admission`: it does not belong there), an old deployment's too: a genuine
    one cannot be told from a forged one there (docs/operations.md, *Securing the
    broker*, what to do after the upgrade)."""

    EVENT_TYPE: ClassVar[str] = "DepositReceived"
    TOPIC: ClassVar[str] = Topic.ACCOUNTS

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
