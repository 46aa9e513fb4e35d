"""A dead letter always fits in a record (review helper-46, d11).

A malformed record close to the topic's limit (1 MB by default) used to be dead-lettered
with all its bytes, base64-encoded: a third larger than the producer's
`message.max.bytes`, so the produce raised and the signer (or engine, or projector) that
was reporting it died. Now a prefix is kept, with the full length and SHA-256.
"""

from __future__ import annotations

import base64
import hashlib

import pytest
from confluent_kafka import Producer

from deploy.deadletter import MAX_KEPT_VALUE_BYTES, dead_letter_for
from deploy.kafka import producer_config
from deploy.settings import Settings
from schemas import decode, encode

PRODUCER_LIMIT = 1_000_000  # librdkafka's default message.max.bytes


class Record:
    def __init__(self, value: bytes, key: bytes | None = b"k") -> None:
        self._v, self._k = value, key

    def topic(self) -> str:
        return "signing.requests"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 7

    def key(self) -> bytes | None:
        return self._k

    def value(self) -> bytes:
        return self._v

    def headers(self) -> list[tuple[str, bytes]]:
        return []


@pytest.mark.parametrize("size", [800_000, 1_000_000, 1_048_576, 10_000_000])
def test_dead_letter_of_a_large_record_fits_the_producer_limit(size: int) -> None:
    value = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    letter = dead_letter_for(
        Record(value, key=b"K" * 5000), ValueError("bad"), stage="t", producer="t"
    )
    key, raw, headers = encode(letter)
    total = len(raw) + len(key or b"") + sum(len(str(k)) + len(v or b"") for k, v in headers or [])
    assert total < PRODUCER_LIMIT // 2
    p = letter.payload
    assert p.original_truncated
    assert base64.b64decode(p.original_value_b64) == value[:MAX_KEPT_VALUE_BYTES]
    assert p.original_value_bytes == size
    assert p.original_value_sha256 == hashlib.sha256(value).hexdigest()
    assert decode(raw, headers).payload == p  # and it reads back
    # The real producer's local size check (no broker needed to refuse an oversized record).
    producer = Producer({**producer_config(Settings()), "bootstrap.servers": "127.0.0.1:1"})
    producer.produce("deadletter", key=key, value=raw, headers=headers)
    producer.purge()


def test_small_record_is_kept_whole() -> None:
    letter = dead_letter_for(Record(b"\x00junk"), ValueError("bad"), stage="t", producer="t")
    p = letter.payload
    assert base64.b64decode(p.original_value_b64) == b"\x00junk"
    assert not p.original_truncated and p.original_value_bytes == 5
