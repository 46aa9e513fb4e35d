"""The one envelope every event travels in.

`causation_id` is the id of the event that directly caused this one; `correlation_id`
ties a whole flow together, from the first intent to the last fill. The partition key
is the account for everything account-scoped, so one account's events stay in order.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Generic, TypeVar, cast
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from schemas.ids import derived_uuid7, uuid7
from schemas.types import UtcTimestamp, utc_now


class EventPayload(BaseModel):
    """Base of every payload. Subclasses declare their type, version and topic."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=False)

    EVENT_TYPE: ClassVar[str]
    SCHEMA_VERSION: ClassVar[int] = 1
    TOPIC: ClassVar[str]

    def partition_key(self) -> str:
        """The Kafka key. Account-scoped payloads override nothing: they have `account`."""
        account = getattr(self, "account", None)
        if isinstance(account, str):
            return account
        raise NotImplementedError(f"{type(self).__name__} must define partition_key()")


P = TypeVar("P", bound=EventPayload)


class Envelope(BaseModel, Generic[P]):
    """An immutable fact on the log."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: UUID = Field(description="UUIDv7; derived events get an input-derived UUIDv7")
    event_type: str
    schema_version: int = Field(ge=1)
    occurred_at: UtcTimestamp = Field(description="When it happened, UTC, microseconds")
    producer: str = Field(min_length=1, max_length=64)
    correlation_id: UUID
    causation_id: UUID | None = None
    key: str = Field(min_length=1, max_length=128, description="Kafka partition key")
    payload: P

    @property
    def topic(self) -> str:
        return self.payload.TOPIC


_ENVELOPE_CLASSES: dict[type[EventPayload], Any] = {}


def envelope_class(payload_cls: type[EventPayload]) -> Any:
    """`Envelope[payload_cls]`, held strongly.

    pydantic's own cache of parametrized generics is weak, so under load it evicts them and
    rebuilds the class (milliseconds each) on the next `Envelope[cls]`; there are only as
    many of these as payload classes, so keeping them is free.
    """
    cls = _ENVELOPE_CLASSES.get(payload_cls)
    if cls is None:
        cls = _ENVELOPE_CLASSES[payload_cls] = Envelope[payload_cls]  # type: ignore[valid-type]
    return cls


def new_event(
    payload: P,
    *,
    producer: str,
    correlation_id: UUID | None = None,
    causation: Envelope[Any] | None = None,
    occurred_at: datetime | None = None,
    event_id: UUID | None = None,
    causation_id: UUID | None = None,
) -> Envelope[P]:
    """Stamp a new event now. Without a cause it starts a new correlation.

    `causation_id` names a cause by id alone, for an event derived from several (a
    surveillance alert): it starts a new correlation unless one is given."""
    eid = event_id or uuid7()
    if causation is not None:
        corr = correlation_id or causation.correlation_id
        cause: UUID | None = causation.event_id
    else:
        corr = correlation_id or eid
        cause = causation_id
    envelope_cls = envelope_class(type(payload))
    return cast(
        "Envelope[P]",
        envelope_cls(
            event_id=eid,
            event_type=payload.EVENT_TYPE,
            schema_version=payload.SCHEMA_VERSION,
            occurred_at=occurred_at or utc_now(),
            producer=producer,
            correlation_id=corr,
            causation_id=cause,
            key=payload.partition_key(),
            payload=payload,
        ),
    )


def derive_event(
    payload: P,
    *,
    producer: str,
    causation: Envelope[Any],
    discriminator: str = "",
    occurred_at: datetime | None = None,
) -> Envelope[P]:
    """An event derived from `causation`, with an id reproducible on replay.

    The id hashes the producer, the cause's id, the new event type and `discriminator`
    (e.g. a fill sequence number), so the same input always yields the same event id.
    `occurred_at` defaults to the cause's time, keeping projections free of the wall clock.
    """
    envelope_cls = envelope_class(type(payload))
    return cast(
        "Envelope[P]",
        envelope_cls(
            **derived_fields(
                payload,
                producer=producer,
                causation=causation,
                discriminator=discriminator,
                occurred_at=occurred_at,
            )
        ),
    )


def derived_fields(
    payload: EventPayload,
    *,
    producer: str,
    causation: Envelope[Any],
    discriminator: str = "",
    occurred_at: datetime | None = None,
    cause_id: str | None = None,
) -> dict[str, Any]:
    """The envelope fields of `derive_event(payload, ...)`, before validation.

    For a caller that builds many derived events from already-validated causes (the
    engine) and constructs the envelope without validating it again; `cause_id` is
    `str(causation.event_id)` when the caller has it already.
    """
    eid = derived_uuid7(
        causation.occurred_at,
        producer,
        str(causation.event_id) if cause_id is None else cause_id,
        payload.EVENT_TYPE,
        discriminator,
    )
    return {
        "event_id": eid,
        "event_type": payload.EVENT_TYPE,
        "schema_version": payload.SCHEMA_VERSION,
        "occurred_at": occurred_at or causation.occurred_at,
        "producer": producer,
        "correlation_id": causation.correlation_id,
        "causation_id": causation.event_id,
        "key": payload.partition_key(),
        "payload": payload,
    }
