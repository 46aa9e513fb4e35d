"""Turning a record we cannot process into a `DeadLetter` event, never a crash or a drop."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

from schemas import Envelope, MalformedEventError, decode, new_event
from schemas.events import DeadLetter
from schemas.ids import derived_uuid7


class KafkaRecord(Protocol):
    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> Any: ...


class LoggedRecord(KafkaRecord, Protocol):
    """A record read from the log, with its timestamp there (confluent_kafka's Message)."""

    def timestamp(self) -> tuple[int, int]: ...


def record_time(record: LoggedRecord) -> datetime | None:
    """The record's timestamp on the log (the broker's append time, or the producer's
    create time on a topic that keeps it), UTC; None if it has none a datetime can hold."""
    try:
        _kind, ms = record.timestamp()
        if ms is None or ms < 0:
            return None
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    except (OverflowError, ValueError, TypeError):
        return None


def redelivered_dead_letter(
    record: LoggedRecord, error: Exception, *, stage: str, producer: str
) -> Envelope[DeadLetter]:
    """`dead_letter_for` with its id and time from the record: its coordinates (topic,
    partition, offset) and its timestamp on the log, and the producer writing it. The same
    record dead-lettered again (delivered again at least once, re-read after a hand-over)
    gives the same event, which sinks keep once (the dead-letter projection is idempotent
    on the event id); a new id each time listed one bad record twice. A record without a
    usable timestamp gets a new id, now (never a crash)."""
    at = record_time(record)
    where = (str(record.topic()), str(record.partition()), str(record.offset()))
    return dead_letter_for(
        record,
        error,
        stage=stage,
        producer=producer,
        event_id=derived_uuid7(at, producer, "deadletter", *where) if at else None,
        occurred_at=at,
    )


MAX_KEPT_VALUE_BYTES = 128 * 1024
"""The most of an original value a dead letter keeps (base64 makes it a third larger).

A record is dead-lettered because it is wrong, and wrong includes "as large as the topic
allows": kept whole, and grown by base64, its dead letter would exceed the producer's
`message.max.bytes` (1 MB by default) and the produce would fail, so the prefix, the full
length and the SHA-256 are kept instead."""
MAX_KEPT_KEY_BYTES = 1024


def kept_value(value: bytes) -> dict[str, Any]:
    """The `DeadLetter` fields that keep an original value: at most MAX_KEPT_VALUE_BYTES of
    it (base64), its full length and SHA-256, and whether it was cut."""
    return {
        "original_value_b64": base64.b64encode(value[:MAX_KEPT_VALUE_BYTES]).decode(),
        "original_value_bytes": len(value),
        "original_value_sha256": hashlib.sha256(value).hexdigest(),
        "original_truncated": len(value) > MAX_KEPT_VALUE_BYTES,
    }


def dead_letter_for(
    record: KafkaRecord,
    error: Exception,
    *,
    stage: str,
    producer: str,
    event_id: UUID | None = None,
    occurred_at: datetime | None = None,
) -> Envelope[DeadLetter]:
    """A dead-letter event that keeps the original bytes (up to MAX_KEPT_VALUE_BYTES, with
    the full length and SHA-256), coordinates and the reason; it always fits in a record.
    `event_id`/`occurred_at`: derived from the record by a caller that may dead-letter it
    again (at-least-once), so the copy is the same event; else a new id, now."""
    key = record.key()
    value = record.value() or b""
    if isinstance(key, str):
        key = key.encode()
    if isinstance(value, str):
        value = value.encode()
    kept = kept_value(value)
    kept["original_truncated"] |= key is not None and len(key) > MAX_KEPT_KEY_BYTES
    return new_event(
        DeadLetter(
            source_topic=(record.topic() or "?")[:249],
            source_partition=record.partition(),
            source_offset=record.offset(),
            original_key_b64=(
                base64.b64encode(key[:MAX_KEPT_KEY_BYTES]).decode() if key is not None else None
            ),
            **kept,
            error_type=type(error).__name__,
            error=str(error)[:4000],
            stage=stage,
        ),
        producer=producer,
        event_id=event_id,
        occurred_at=occurred_at,
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
