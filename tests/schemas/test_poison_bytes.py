"""Bytes that crash a JSON parser in other ways than a syntax error are still malformed
records: every decoder a consumer uses turns them into `MalformedEventError` (the
dead-letter path), never an exception that takes the consumer down."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from engine.codec import decode_record
from projections import lean
from schemas import decode
from schemas.errors import MalformedEventError
from schemas.serde import HEADER_EVENT_TYPE, HEADER_SCHEMA_VERSION

HEADERS = [(HEADER_EVENT_TYPE, b"OrderIntent"), (HEADER_SCHEMA_VERSION, b"1")]
POISON = {
    # json's recursion limit: RecursionError, not a JSONDecodeError
    "deep nesting": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    # past Python's int-to-str digit limit: a plain ValueError
    "huge integer": b'{"event_type":"OrderIntent","schema_version":1,"x":' + b"9" * 5000 + b"}",
    "bad utf-8": b'{"event_type":"\xff"}',
}
DECODERS: dict[str, Callable[[bytes], Any]] = {
    "schemas.decode": lambda v: decode(v, None, topic="t", partition=0, offset=7),
    "engine decode_record, headers": lambda v: decode_record(v, HEADERS),
    "engine decode_record, no headers": lambda v: decode_record(v, None),
    "projections lean.decode_record": lambda v: lean.decode_record(v, HEADERS),
}


@pytest.mark.parametrize("poison", POISON, ids=list(POISON))
@pytest.mark.parametrize("decoder", DECODERS, ids=list(DECODERS))
def test_poison_bytes_are_malformed_records(poison: str, decoder: str) -> None:
    with pytest.raises(MalformedEventError, match="not JSON"):
        DECODERS[decoder](POISON[poison])
