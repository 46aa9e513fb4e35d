"""Which payload class parses which (event type, schema version)."""

from __future__ import annotations

from schemas import events
from schemas.envelope import EventPayload
from schemas.errors import UnknownEventTypeError
from schemas.events.admin import ADMIN_COMMAND_TYPES
from schemas.topics import ENGINE_OUTPUT_TOPICS


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


ENGINE_PRODUCER = "engine"
"""The producer id of every event the engine writes: what `engine_written` types must carry."""


def engine_written(topic: str) -> frozenset[str]:
    """The event types on `topic` (a logical topic name) that only the engine writes:
    every type of its output topics (`ENGINE_OUTPUT_TOPICS`), and on a domain topic the
    admin facts it publishes once it has accepted the command (`ADMIN_COMMAND_TYPES`:
    a `KillSwitchReleased` on risk.config; none on transfers.events, where the transfer
    service writes its `TransferRequested`: since session 22 a `DepositReceived` lives
    on accounts.events, which only the engine writes). A reader that folds one of these from anyone else folds what
    the engine never said (`projections.framework.engine_only`)."""
    types = frozenset(event_types_for(topic))
    if topic in ENGINE_OUTPUT_TOPICS:
        return types
    return types & frozenset(ADMIN_COMMAND_TYPES)


TRAVELRULE_PRODUCER = "travelrule"
"""The producer id of the travel-rule processor's answers (`tradetape run travelrule`,
`streams.travel_rule.processor`)."""

COMPONENT_WRITTEN: dict[str, str] = {"TransferChecked": TRAVELRULE_PRODUCER}
"""Event types one component other than the engine alone writes, and its producer id: a
`TransferChecked` decides whether a withdrawal's hold stays (the engine and the books
fold it), so one another producer wrote (the engine, a strategy, the transfer service
under any name but `travelrule`) is refused by every reader (`schemas.admission`) since
session 26; before, any producer's was folded. Since session 27 it lives on
transfers.checks, which the broker lets only the travel rule's principal write
(`deploy.acls`), so the claim is the broker's too; one on transfers.events does not
belong there and is refused whoever claims to have written it."""


def sole_writers(topic: str) -> dict[str, str]:
    """The event types on `topic` (a logical topic name) that one producer alone writes,
    and that producer's id: the engine's (`engine_written`) and the other components'
    (`COMPONENT_WRITTEN`). A reader admits one of these from that producer only."""
    types = frozenset(event_types_for(topic))
    only = {t: ENGINE_PRODUCER for t in engine_written(topic)}
    only.update({t: w for t, w in COMPONENT_WRITTEN.items() if t in types})
    return dict(sorted(only.items()))
