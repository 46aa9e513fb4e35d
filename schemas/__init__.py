"""The single source of truth for every tradetape event and topic.

Everything else imports event models, topic names and the wire format from here;
nothing outside this package defines an event shape.
"""

from schemas.envelope import Envelope, EventPayload, derive_event, new_event
from schemas.errors import MalformedEventError, UnknownEventTypeError
from schemas.registry import REGISTRY, payload_class
from schemas.serde import decode, decode_message, encode
from schemas.topics import TOPICS, Topic, TopicSpec

__all__ = [
    "REGISTRY",
    "TOPICS",
    "Envelope",
    "EventPayload",
    "MalformedEventError",
    "Topic",
    "TopicSpec",
    "UnknownEventTypeError",
    "decode",
    "decode_message",
    "derive_event",
    "encode",
    "new_event",
    "payload_class",
]
