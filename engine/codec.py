"""The engine's wire codec: `schemas.decode`/`encode` with a fast path for the hot loop.

Decoding: the type and version headers pick the payload class, and pydantic parses and
validates the JSON in one pass, in *strict* mode (`model_validate_json(strict=True)`, no
`json.loads` first). Strict accepts a subset of what the canonical lax path accepts, so
anything the fast path refuses — a missing header, a coercible value such as `true` for an
int, a body whose type or version disagrees with the header — goes through
`schemas.decode`, which either accepts it or raises the canonical `MalformedEventError`.
Validation is the same models either way: nothing untrusted skips it.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from schemas import Envelope, decode
from schemas.envelope import envelope_class
from schemas.registry import REGISTRY
from schemas.serde import HEADER_EVENT_TYPE, HEADER_SCHEMA_VERSION, HeadersIn

_CLASSES: dict[tuple[bytes, bytes], Any] = {
    (cls.EVENT_TYPE.encode(), str(cls.SCHEMA_VERSION).encode()): (cls, envelope_class(cls))
    for cls in REGISTRY.values()
}


def decode_record(
    value: bytes | None,
    headers: HeadersIn,
    *,
    topic: str | None = None,
    partition: int | None = None,
    offset: int | None = None,
) -> Envelope[Any]:
    """Same result as `schemas.decode`, faster when the headers are present and right."""
    if value is not None and isinstance(headers, list):
        et = ver = None
        for k, v in headers:
            if k == HEADER_EVENT_TYPE:
                et = v
            elif k == HEADER_SCHEMA_VERSION:
                ver = v
        found = _CLASSES.get((et, ver)) if et is not None and ver is not None else None
        if found is not None:
            cls, env_cls = found
            try:
                event: Envelope[Any] = env_cls.model_validate_json(value, strict=True)
            except (ValidationError, ValueError):
                event = None  # type: ignore[assignment]
            if (
                event is not None
                and event.event_type == cls.EVENT_TYPE
                and event.schema_version == cls.SCHEMA_VERSION
            ):
                return event
    return decode(value, headers, topic=topic, partition=partition, offset=offset)
