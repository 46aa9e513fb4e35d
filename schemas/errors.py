"""Typed errors raised by the wire format, naming exactly where bad bytes came from."""

from __future__ import annotations


class MalformedEventError(ValueError):
    """Bytes on a topic that are not a valid event. Carries the source coordinates."""

    def __init__(
        self, reason: str, *, topic: str | None, partition: int | None, offset: int | None
    ) -> None:
        self.reason = reason
        self.topic = topic
        self.partition = partition
        self.offset = offset
        super().__init__(f"malformed event at {topic}[{partition}]@{offset}: {reason}")


class UnknownEventTypeError(MalformedEventError):
    """A well-formed envelope whose event type or schema version we do not know."""

    def __init__(
        self,
        event_type: str,
        schema_version: int,
        *,
        topic: str | None,
        partition: int | None,
        offset: int | None,
    ) -> None:
        self.event_type = event_type
        self.schema_version = schema_version
        super().__init__(
            f"unknown event type {event_type!r} v{schema_version}",
            topic=topic,
            partition=partition,
            offset=offset,
        )
