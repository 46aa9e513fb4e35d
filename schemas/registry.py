"""Which payload class parses which (event type, schema version)."""

from __future__ import annotations

from schemas import events
from schemas.envelope import EventPayload
from schemas.errors import UnknownEventTypeError


def _collect() -> dict[tuple[str, int], type[EventPayload]]:
    found: dict[tuple[str, int], type[EventPayload]] = {}
    for name in events.__all__:
        obj = getattr(events, name)
        if isinstance(obj, type) and issubclass(obj, EventPayload) and obj is not EventPayload:
            key = (obj.EVENT_TYPE, obj.SCHEMA_VERSION)
            if key in found:
                raise RuntimeError(f"two payload classes claim {key}")
            found[key] = obj
    return dict(sorted(found.items()))


REGISTRY: dict[tuple[str, int], type[EventPayload]] = _collect()
"""Every known payload class, keyed by (event_type, schema_version), in sorted order."""


def payload_class(
    event_type: str,
    schema_version: int,
    *,
    topic: str | None = None,
    partition: int | None = None,
    offset: int | None = None,
) -> type[EventPayload]:
    try:
        return REGISTRY[(event_type, schema_version)]
    except KeyError:
        raise UnknownEventTypeError(
            event_type, schema_version, topic=topic, partition=partition, offset=offset
        ) from None


def event_types_for(topic: str) -> list[str]:
    return sorted({cls.EVENT_TYPE for cls in REGISTRY.values() if cls.TOPIC == topic})
