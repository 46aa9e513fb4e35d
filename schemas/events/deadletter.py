"""A record of input we could not process, kept with its original bytes and the reason."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from schemas.envelope import EventPayload
from schemas.topics import Topic


class DeadLetter(EventPayload):
    EVENT_TYPE: ClassVar[str] = "DeadLetter"
    TOPIC: ClassVar[str] = Topic.DEADLETTER

    source_topic: str = Field(min_length=1, max_length=249)
    source_partition: int | None = None
    source_offset: int | None = None
    original_key_b64: str | None = None
    original_value_b64: str = Field(
        description="The original bytes, base64; only their first bytes when "
        "`original_truncated` (a dead letter must fit where the original did not)"
    )
    original_value_bytes: int | None = Field(
        default=None, ge=0, description="The original value's full length in bytes"
    )
    original_value_sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="SHA-256 of the full original value, hex",
    )
    original_truncated: bool = Field(
        default=False, description="The key or value kept here is a prefix of the original"
    )
    error_type: str
    error: str = Field(max_length=4000)
    stage: str = Field(description="Which processor refused it: engine, projector, loader, ...")

    def partition_key(self) -> str:
        return self.source_topic
