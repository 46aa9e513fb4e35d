"""The role model of `deploy.acls` (no broker): every catalogue topic has exactly the
writers the table below says, the engine alone writes what only the engine writes
(`schemas.registry.engine_written`), each role reads what its code reads, every
consumer-group and transactional id the code builds is one a role may use, and the plan
is a pure function of the prefix and the principals. The real broker's refusals are in
test_kafka_acls.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deploy.acls import (
    ROLES,
    Binding,
    Pattern,
    PlanError,
    Resource,
    Role,
    plan,
    principals,
    readers,
    writers,
)
from schemas.registry import engine_written, event_types_for
from schemas.topics import ENGINE_OUTPUT_TOPICS, TOPICS, Topic

E, S, A, M, T = Role.ENGINE, Role.STRATEGY, Role.ADMIN, Role.MARKETDATA, Role.TRANSFERS
SV, SG, RQ = Role.SURVEILLANCE, Role.SIGNER, Role.REQUESTER

WRITERS: dict[Topic, set[Role]] = {
    Topic.INTENTS: {S},
    Topic.ADMIN: {A},
    Topic.DECISIONS: {E},
    Topic.ORDERS: {E},
    Topic.ACCOUNTS: {E},
    Topic.TRANSFERS: {T},  # the transfer service's four types (deposits: accounts.events)
    Topic.RISK_CONFIG: {E},
    Topic.MARKETDATA: {M},
    Topic.SURVEILLANCE_CONFIG: {E},  # an accepted DetectorConfigChanged
    Topic.SURVEILLANCE_ALERTS: {SV},
    Topic.SIGNING: {SG, RQ},  # DkgCompleted; outcomes and refusals
    Topic.SIGNING_REQUESTS: {RQ},
    Topic.SIGNING_MESSAGES: {SG, RQ},  # commitments, shares, DKG rounds; signing packages
    Topic.DEADLETTER: {E, SV, SG},
    Topic.ENGINE_SNAPSHOTS: {E},
}

ROOT = Path(__file__).resolve().parents[2]


def test_every_topic_has_exactly_the_writers_of_the_table() -> None:
    assert set(WRITERS) == set(Topic) == set(TOPICS)
    assert {t: set(writers(t)) for t in Topic} == WRITERS


def test_every_topic_is_read_by_someone() -> None:
    assert [t for t in Topic if not readers(t)] == []


@pytest.mark.parametrize("topic", list(Topic))
def test_only_the_engine_writes_a_topic_of_only_engine_facts(topic: Topic) -> None:
    """Derived from the schemas, not the table: a topic whose every event type only the
    engine writes (its output topics, accounts, risk config, detector config) has the
    engine as its one writer; a topic with any engine-only type has the engine among them."""
    types = set(event_types_for(topic))
    only_engine = engine_written(topic)
    if topic in ENGINE_OUTPUT_TOPICS or (types and types <= only_engine):
        assert writers(topic) == {Role.ENGINE}
    if only_engine:
        # Another writer could forge them: the producer field is only a claim (a
        # transfers principal wrote a DepositReceived on transfers.events until session 22).
        assert writers(topic) == {Role.ENGINE}, sorted(only_engine)
    if types - only_engine:
        assert writers(topic) - {Role.ENGINE}, f"nobody writes {sorted(types - only_engine)}"


def test_the_readers_are_what_the_code_reads() -> None:
    from engine.client import ANSWER_TOPICS
    from engine.replay import OWN_TOPICS, REFERENCE_TOPICS
    from engine.snapshotter import Snapshotter  # noqa: F401  (its topics: own + reference)
    from engine.worker import INPUT_TOPICS, READ_TOPICS
    from projections.core import PROJECTIONS
    from streams.app import SOURCES, WRITTEN

    engine = {*INPUT_TOPICS, *READ_TOPICS, *OWN_TOPICS, *REFERENCE_TOPICS, Topic.ENGINE_SNAPSHOTS}
    assert ROLES[Role.ENGINE].reads == engine
    assert ROLES[Role.PROJECTOR].reads == {t for p in PROJECTIONS.values() for t in p.topics}
    assert set(SOURCES) <= ROLES[Role.SURVEILLANCE].reads
    assert set(WRITTEN) == ROLES[Role.SURVEILLANCE].writes
    assert ROLES[Role.STRATEGY].reads == ROLES[Role.ADMIN].reads == set(ANSWER_TOPICS)


RUN_AS_ADMIN = ("demo.py", "snapshot-status-")
"""Group and transactional ids of the demos and of `tradetape status`: they run as the
cluster administrator (a super user), outside the role model."""
PARTICIPANT_GROUP = ("{producer_name}-", "signer-")
"""signer_ffi/participant.py names its group after its producer name, `signer-<id>`."""
_ID = re.compile(r'(group_id|transactional_id)=f?"([^"]*)"')


def _ids_in_code() -> list[tuple[str, str, str]]:
    found = []
    for package in ("engine", "projections", "streams", "signer_ffi"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for kind, template in _ID.findall(path.read_text()):
                found.append((str(path.relative_to(ROOT)), kind, template))
    return found


def test_every_group_and_transactional_id_in_the_code_is_granted() -> None:
    ids = _ids_in_code()
    assert len(ids) >= 15, ids  # the scan finds them
    prefix = "tenant1."
    granted = [b for b in plan(prefix) if b.resource is not Resource.TOPIC]
    missing = []
    for path, kind, template in ids:
        if path.endswith(RUN_AS_ADMIN[0]) or template.startswith(RUN_AS_ADMIN[1]):
            continue
        if template.startswith(PARTICIPANT_GROUP[0]):
            template = PARTICIPANT_GROUP[1] + template[len(PARTICIPANT_GROUP[0]) :]
        literal = template.replace("{prefix}", prefix)
        fixed = literal.split("{", 1)[0]  # up to the first part the code fills in
        resource = Resource.GROUP if kind == "group_id" else Resource.TRANSACTIONAL_ID
        ok = any(
            b.resource is resource
            and (
                fixed.startswith(b.name)
                if b.pattern is Pattern.PREFIXED
                else ("{" not in literal and literal == b.name)
            )
            for b in granted
        )
        if not ok:
            missing.append((path, template))
    assert missing == []


def test_only_the_engine_holds_a_transactional_id() -> None:
    holders = {b.principal for b in plan() if b.resource is Resource.TRANSACTIONAL_ID}
    assert holders == {"User:engine"}


prefixes = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-", max_size=12)


@given(prefix=prefixes)
def test_the_plan_is_a_pure_function_of_the_prefix(prefix: str) -> None:
    once, again = plan(prefix), plan(prefix)
    assert once == again == sorted(set(once))
    catalogue = {f"{prefix}{t.value}" for t in Topic}
    for b in once:
        assert isinstance(b, Binding)
        assert b.operation in {"READ", "WRITE", "DESCRIBE", "CREATE"}
        if b.resource is Resource.TOPIC and b.pattern is Pattern.LITERAL:
            assert b.name in catalogue or b.name == f"{prefix}surveillance.sequenced"
        if b.operation == "CREATE":  # only the surveillance app's own topics
            assert b.principal == "User:surveillance"
            assert not any(b.name.startswith(name) or name.startswith(b.name) for name in catalogue)
    written = {(b.principal, b.name) for b in once if b.operation == "WRITE"}
    for topic in Topic:
        assert {p for p, n in written if n == f"{prefix}{topic.value}"} == {
            f"User:{r.value}" for r in WRITERS[topic]
        }


def test_principals_can_be_renamed() -> None:
    got = principals(["engine=eng-prod", "strategy=User:alpha"])
    assert got[Role.ENGINE] == "User:eng-prod" and got[Role.STRATEGY] == "User:alpha"
    assert {
        b.principal for b in plan("", got) if b.operation == "WRITE" and "intents" in b.name
    } == {"User:alpha"}


@pytest.mark.parametrize(
    "bad", [["enigne=x"], ["engine"], ["engine="], ["engine=a", "engine=b"]], ids=str
)
def test_a_wrong_principal_mapping_is_refused(bad: list[str]) -> None:
    with pytest.raises(PlanError):
        principals(bad)
