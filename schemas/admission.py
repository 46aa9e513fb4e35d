"""Admission: which records a reader of the log may fold, by topic and producer.

The one rule for every reader that folds the engine's facts: the engine
(`engine.replay.Intake`, live, in every rebuild and in the snapshotter) and the
projections (`projections.framework.Projection._admit`). Each keeps its own reaction to
a refusal (the engine dead-letters or skips the record, a projection quarantines it);
what is refused, and the reason, is decided here only, so the two cannot drift apart.

A record is refused when its type is not in the catalogue of the topic it was read from
(`schemas.registry.event_types_for`: a `Fill` on marketdata.events), or when its type is
one only one producer writes to that topic (`schemas.registry.sole_writers`) and its
producer is another: a type only the engine writes (`engine_written`, producer
`ENGINE_PRODUCER`: a `KillSwitchReleased` another client wrote to risk.config), or the
travel rule's `TransferChecked` (producer `travelrule`, `COMPONENT_WRITTEN`, since
session 26: one the engine or a strategy claims to have written is refused). The schema
version plays no part: every version of a type lives on the same topic. The producer
field is what the writer claims; the broker's ACLs make it true where the topic has one
writer: every topic holding a type only the engine writes has the engine as its only
writer (`deploy.acls`; a `DepositReceived` moved from transfers.events, which the
transfer service writes too, to accounts.events in session 22, so one on
transfers.events, an old deployment's too, is refused as not belonging there).
Likewise the travel rule's `TransferChecked` moved from transfers.events, which the
transfer service writes, to transfers.checks, which only the travel rule's principal
writes (session 27): one on transfers.events, a forgery or an old log's answer, is
refused as not belonging there (docs/travel_rule.md, *Who may answer*).

Both readers call `refusal` per record (the engine for every record of the topics it
reads in full, market data included; a projection once per topic, type, version and
producer in a batch), so the tables are built at import and a call allocates nothing
unless it refuses.
"""

from __future__ import annotations

from schemas.registry import ENGINE_PRODUCER, TRAVELRULE_PRODUCER, event_types_for, sole_writers
from schemas.topics import Topic

_CATALOGUE: dict[Topic, frozenset[str]] = {t: frozenset(event_types_for(t)) for t in Topic}
"""Per topic, every event type that belongs on it."""
_WRITERS = {ENGINE_PRODUCER: "the engine", TRAVELRULE_PRODUCER: "the travel rule"}
"""How a refusal names a sole writer."""
_SOLE: dict[Topic, dict[str, tuple[str, str]]] = {
    t: {et: (w, _WRITERS.get(w, repr(w))) for et, w in sole_writers(t).items()} for t in Topic
}
"""Per topic, the types on it only one producer writes: type -> (that producer's id, its
name in a refusal)."""

Rule = tuple[frozenset[str], dict[str, tuple[str, str]]]
"""(the types that belong on a topic, those of them only one producer writes there)"""


class _Any(frozenset[str]):
    """Holds every type: no per-record test of a rule that is not there."""

    def __contains__(self, item: object) -> bool:
        return True


_OFF_CATALOGUE: Rule = (_Any(), {})
"""The rule of a name no topic of the catalogue ends with: everything belongs, nothing
is one producer's alone (a reader decides for itself which topics it reads at all)."""

_RULES: dict[str, Rule] = {}
"""Per full topic name read so far, its rule. Filled on a name's first record: the
prefix is the deployment's; the names are the readers' subscriptions, a handful."""


def logical_topic(topic: str) -> Topic | None:
    """The topic a full name (a deployment's `topic_prefix` + topic) names; None if none.
    The longest topic name it ends with: no topic's name ends with another's, so a
    prefix cannot make one topic read as another (`tests/schemas/test_admission.py`)."""
    found = [t for t in Topic if topic.endswith(t.value)]
    return max(found, key=lambda t: len(t.value)) if found else None


def _rule(topic: str) -> Rule:
    logical = logical_topic(topic)
    rule = _RULES[topic] = (
        _OFF_CATALOGUE if logical is None else (_CATALOGUE[logical], _SOLE[logical])
    )
    return rule


def refusal(topic: str, event_type: str, producer: str) -> str | None:
    """Why a record of `event_type` that `producer` wrote, read from `topic` (a full
    topic name), must not be folded; None to admit it. A topic the catalogue does not
    name is no topic of this rule: everything on it is admitted. Two dict lookups and a
    set test."""
    types, sole = _RULES.get(topic) or _rule(topic)
    if event_type not in types:
        return f"{event_type} does not belong on {topic}"
    only = sole.get(event_type)
    if only is not None and producer != only[0]:
        return f"{event_type} on {topic} not written by {only[1]} ({producer!r})"
    return None
