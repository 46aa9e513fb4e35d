"""Turning a record we cannot process into a `DeadLetter` event, never a crash or a drop."""

from __future__ import annotations

import base64
from typing import Any, Protocol

from schemas import Envelope, MalformedEventError, decode, new_event
from schemas.events import DeadLetter


class KafkaRecord(Protocol):
    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> Any: ...


def dead_letter_for(
    record: KafkaRecord, error: Exception, *, stage: str, producer: str
) -> Envelope[DeadLetter]:
    """A dead-letter event that keeps the original bytes, coordinates and the reason."""
    key = record.key()
    return new_event(
        DeadLetter(
            source_topic=record.topic() or "?",
            source_partition=record.partition(),
            source_offset=record.offset(),
            original_key_b64=base64.b64encode(key).decode() if key is not None else None,
            original_value_b64=base64.b64encode(record.value() or b"").decode(),
            error_type=type(error).__name__,
            error=str(error)[:4000],
            stage=stage,
        ),
        producer=producer,
    )


def decode_or_dead_letter(
    record: KafkaRecord, *, stage: str, producer: str
) -> tuple[Envelope[Any] | None, Envelope[DeadLetter] | None]:
    """(event, None) for a good record, (None, dead letter) for a malformed one."""
    try:
        return (
            decode(
                record.value(),
                record.headers(),
                topic=record.topic(),
                partition=record.partition(),
                offset=record.offset(),
            ),
            None,
        )
    except MalformedEventError as exc:
        return None, dead_letter_for(record, exc, stage=stage, producer=producer)
