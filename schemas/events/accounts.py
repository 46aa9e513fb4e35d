"""Account facts: who owns an account, whether it may trade, and which producers may act."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.envelope import EventPayload
from schemas.topics import Topic
from schemas.types import AccountId, AssetCode, CountryCode, Lei, ProducerId


class OwnerKind(StrEnum):
    NATURAL = "NATURAL"
    LEGAL = "LEGAL"


def lei_checksum_ok(lei: str) -> bool:
    """ISO 17442 / ISO 7064 MOD 97-10 check digits."""
    digits = "".join(str(int(ch, 36)) for ch in lei)
    return len(lei) == 20 and int(digits) % 97 == 1


class BeneficialOwner(BaseModel):
    """The person behind an account. Surveillance groups accounts by `owner_id`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    owner_id: str = Field(min_length=1, max_length=64)
    kind: OwnerKind
    name: str = Field(min_length=1, max_length=100)
    country: CountryCode
    lei: Lei | None = None

    @model_validator(mode="after")
    def _lei_for_legal_persons(self) -> BeneficialOwner:
        if self.kind is OwnerKind.LEGAL and self.lei is None:
            raise ValueError("a legal person needs an LEI")
        if self.lei is not None and not lei_checksum_ok(self.lei):
            raise ValueError(f"LEI {self.lei} fails its ISO 17442 check digits")
        return self


class AccountOpened(EventPayload):
    """Since version 2 `base_currency`, the account's valuation currency, is required.

    It is what the account's equity, `credit_limit` and `max_order_notional` are in.
    Version 1 (`AccountOpenedV1`) defaulted it to USDT, which the allow-list's defaults
    (USDC, EURC) do not permit: a writer that left it out had the account valued in it,
    silently."""

    EVENT_TYPE: ClassVar[str] = "AccountOpened"
    SCHEMA_VERSION: ClassVar[int] = 2
    TOPIC: ClassVar[str] = Topic.ACCOUNTS

    account: AccountId
    beneficial_owner: BeneficialOwner
    base_currency: AssetCode = Field(
        description="The account's valuation currency (required since version 2)"
    )
    jurisdiction: CountryCode = "US"
    wallet_id: str = Field("default", min_length=1, max_length=64)
    signature: str | None = Field(
        None,
        description="Hex Ed25519 signature by the issuing admin's registered key over "
        "the command's event id and payload (engine.auth.admin_signing_bytes)",
    )


class AccountOpenedV1(AccountOpened):
    """Version 1 (until session 22): `base_currency` defaults to USDT; new commands use v2.

    Kept so that the log's v1 events parse and keep their meaning on replay (an
    `AccountOpened` to every reader, `isinstance` included); the engine refuses a new v1
    command that names no currency (`processor._admin_check`)."""

    SCHEMA_VERSION: ClassVar[int] = 1

    base_currency: AssetCode = "USDT"


class KycVerified(EventPayload):
    EVENT_TYPE: ClassVar[str] = "KycVerified"
    TOPIC: ClassVar[str] = Topic.ACCOUNTS

    account: AccountId
    level: str = Field("STANDARD", max_length=32)
    verified_by: str
    reference: str = Field("", max_length=128)
    signature: str | None = Field(
        None,
        description="Hex Ed25519 signature by the issuing admin's registered key over "
        "the command's event id and payload (engine.auth.admin_signing_bytes)",
    )


class AmlFlagRaised(EventPayload):
    EVENT_TYPE: ClassVar[str] = "AmlFlagRaised"
    TOPIC: ClassVar[str] = Topic.ACCOUNTS

    account: AccountId
    flag_id: str = Field(min_length=1, max_length=64)
    reason: str
    raised_by: str
    signature: str | None = Field(
        None,
        description="Hex Ed25519 signature by the issuing admin's registered key over "
        "the command's event id and payload (engine.auth.admin_signing_bytes)",
    )


class AmlFlagCleared(EventPayload):
    EVENT_TYPE: ClassVar[str] = "AmlFlagCleared"
    TOPIC: ClassVar[str] = Topic.ACCOUNTS

    account: AccountId
    flag_id: str = Field(min_length=1, max_length=64)
    note: str = ""
    cleared_by: str
    signature: str | None = Field(
        None,
        description="Hex Ed25519 signature by the issuing admin's registered key over "
        "the command's event id and payload (engine.auth.admin_signing_bytes)",
    )


class ProducerRegistered(EventPayload):
    """A strategy producer's Ed25519 public key and the accounts it may trade."""

    EVENT_TYPE: ClassVar[str] = "ProducerRegistered"
    TOPIC: ClassVar[str] = Topic.ACCOUNTS

    producer_id: ProducerId
    public_key: str = Field(pattern=r"^[0-9a-f]{64}$", description="Raw Ed25519 key, hex")
    accounts: tuple[AccountId, ...]
    registered_by: str
    signature: str | None = Field(
        None,
        description="Hex Ed25519 signature by the issuing admin's registered key over "
        "the command's event id and payload (engine.auth.admin_signing_bytes)",
    )

    def partition_key(self) -> str:
        return f"producer:{self.producer_id}"


class ProducerRevoked(EventPayload):
    """A producer's key revoked at once (a compromised key): the engine rejects its intents
    (`PRODUCER_REVOKED`) and cancels every open order it placed, on every account. A
    tightening command (`engine.control.TIGHTENING_ADMIN_COMMANDS`). Only a
    `ProducerKeyRotated` naming the revoked key brings the producer back, with a new key."""

    EVENT_TYPE: ClassVar[str] = "ProducerRevoked"
    TOPIC: ClassVar[str] = Topic.ACCOUNTS

    producer_id: ProducerId
    reason: str = Field("", max_length=500)
    revoked_by: str
    signature: str | None = Field(
        None,
        description="Hex Ed25519 signature by the issuing admin's registered key over "
        "the command's event id and payload (engine.auth.admin_signing_bytes)",
    )

    def partition_key(self) -> str:
        return f"producer:{self.producer_id}"


class ProducerKeyRotated(EventPayload):
    """A registered (or revoked) producer's key replaced by a new one; its accounts stay.

    `previous_key` must be the key the engine holds for it (a revoked producer: the key
    revoked), so a rotation names what it replaces and two rotations cannot cross. The
    old key stops working once the engine has folded this; a revoked producer is active
    again with the new key. The one way to change a registered producer's key: a
    `ProducerRegistered` with another key is refused."""

    EVENT_TYPE: ClassVar[str] = "ProducerKeyRotated"
    TOPIC: ClassVar[str] = Topic.ACCOUNTS

    producer_id: ProducerId
    public_key: str = Field(pattern=r"^[0-9a-f]{64}$", description="The new raw Ed25519 key, hex")
    previous_key: str = Field(
        pattern=r"^[0-9a-f]{64}$", description="The key it replaces (raw Ed25519, hex)"
    )
    rotated_by: str
    signature: str | None = Field(
        None,
        description="Hex Ed25519 signature by the issuing admin's registered key over "
        "the command's event id and payload (engine.auth.admin_signing_bytes)",
    )

    def partition_key(self) -> str:
        return f"producer:{self.producer_id}"
