"""The role model of `deploy.acls` (no broker): every catalogue topic has exactly the
writers the table below says, the engine alone writes what only the engine writes
(`schemas.registry.engine_written`), each role reads what its code reads, every
consumer group the code uses carries the topic prefix and is exactly what the roles are
granted, every transactional id the code builds is one a role may use, and the plan
is a pure function of the prefix and the principals. The real broker's refusals are in
test_kafka_acls.py."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deploy import groups
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
from deploy.groups import Group, group_id
from schemas.registry import engine_written, event_types_for
from schemas.topics import ENGINE_OUTPUT_TOPICS, TOPICS, Topic

E, S, A, M, T = Role.ENGINE, Role.STRATEGY, Role.ADMIN, Role.MARKETDATA, Role.TRANSFERS
SV, SG, RQ = Role.SURVEILLANCE, Role.SIGNER, Role.REQUESTER
TR = Role.TRAVELRULE

WRITERS: dict[Topic, set[Role]] = {
    Topic.INTENTS: {S},
    Topic.ADMIN: {A},
    Topic.DECISIONS: {E},
    Topic.ORDERS: {E},
    Topic.ACCOUNTS: {E},
    # the transfer service's request, release and settlement (deposits: accounts.events)
    Topic.TRANSFERS: {T},
    # the travel rule's checks: only its principal (session 27; transfers.events until then,
    # where the transfer service's principal could write one claiming the travel rule)
    Topic.TRANSFER_CHECKS: {TR},
    Topic.RISK_CONFIG: {E},
    Topic.MARKETDATA: {M},
    Topic.SURVEILLANCE_CONFIG: {E},  # an accepted DetectorConfigChanged
    Topic.SURVEILLANCE_ALERTS: {SV},
    Topic.SIGNING: {SG, RQ},  # DkgCompleted; outcomes and refusals
    Topic.SIGNING_REQUESTS: {RQ},
    Topic.SIGNING_MESSAGES: {SG, RQ},  # commitments, shares, DKG rounds; signing packages
    Topic.DEADLETTER: {E, M, SV, SG, TR},
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
    from engine.client import ADMIN_ANSWER_TOPICS, ANSWER_TOPICS
    from engine.replay import OWN_TOPICS, REFERENCE_TOPICS
    from engine.snapshotter import Snapshotter  # noqa: F401  (its topics: own + reference)
    from engine.worker import INPUT_TOPICS, READ_TOPICS
    from projections.core import PROJECTIONS
    from projections.reports.cli import REPORT_TOPICS
    from streams.app import SOURCES, WRITTEN

    engine = {*INPUT_TOPICS, *READ_TOPICS, *OWN_TOPICS, *REFERENCE_TOPICS, Topic.ENGINE_SNAPSHOTS}
    assert ROLES[Role.ENGINE].reads == engine
    assert ROLES[Role.PROJECTOR].reads == {t for p in PROJECTIONS.values() for t in p.topics}
    assert set(SOURCES) <= ROLES[Role.SURVEILLANCE].reads
    assert set(WRITTEN) == ROLES[Role.SURVEILLANCE].writes
    assert ROLES[Role.STRATEGY].reads == set(ANSWER_TOPICS)
    # an accepted DetectorConfigChanged answers on surveillance.config: the admin reads it
    assert ROLES[Role.ADMIN].reads == set(ADMIN_ANSWER_TOPICS)
    assert Topic.SURVEILLANCE_CONFIG not in ROLES[Role.STRATEGY].reads
    # the export reads these two topics, no more: not as the surveillance role (stor-)
    assert ROLES[Role.REPORTER].reads == set(REPORT_TOPICS) == {Topic.ORDERS, Topic.ACCOUNTS}
    assert ROLES[Role.REPORTER].writes == set()
    from streams.travel_rule import processor

    assert ROLES[Role.TRAVELRULE].reads == set(processor.READ_TOPICS)
    assert ROLES[Role.TRAVELRULE].writes == set(processor.WRITTEN)


_TXN = re.compile(r'transactional_id=f?"([^"]*)"')
_PACKAGES = ("engine", "projections", "streams", "signer_ffi", "deploy")


def _sources() -> list[tuple[str, str]]:
    return [
        (str(path.relative_to(ROOT)), path.read_text())
        for package in _PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    ]


PASSED_ON = {("streams/cli.py", "group")}
"""`read_topic(..., group=)`: an id its caller built with `group_id` (found at the call),
used as `group_id=group or group_id(..., groups.STOR, ...)`."""


def _groups_in_code() -> dict[str, set[str]]:
    """Per file, the `deploy.groups` constants its consumers take their group ids from.
    Fails on a `group_id=` that is not `group_id(<settings>.topic_prefix | prefix,
    groups.X[, suffix])`: an id built any other way escapes the prefix and the ACLs."""
    found: dict[str, set[str]] = {}
    wrong: list[str] = []
    for path, text in _sources():
        if path in ("deploy/groups.py", "deploy/kafka.py", "deploy/acls.py"):
            continue  # the helper; consumer_config's parameter; the bindings (tested below)
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.Call):
                continue
            for kw in node.keywords:
                value = kw.value
                if (
                    isinstance(value, ast.BoolOp)
                    and isinstance(value.op, ast.Or)
                    and len(value.values) == 2
                    and isinstance(value.values[0], ast.Name)
                    and (path, value.values[0].id) in PASSED_ON
                ):
                    value = value.values[1]  # the default, scanned as any other
                if kw.arg == "group_id" and not (
                    isinstance(value, ast.Call)
                    and isinstance(value.func, ast.Name)
                    and value.func.id == "group_id"
                ):
                    wrong.append(f"{path}:{node.lineno}: group_id={ast.unparse(kw.value)}")
            if isinstance(node.func, ast.Name) and node.func.id == "group_id":
                prefix, group = node.args[0], node.args[1]
                ok_prefix = (
                    isinstance(prefix, ast.Attribute) and prefix.attr == "topic_prefix"
                ) or (isinstance(prefix, ast.Name) and prefix.id in ("prefix", "topic_prefix"))
                if not ok_prefix or not (
                    isinstance(group, ast.Attribute) and ast.unparse(group.value) == "groups"
                ):
                    wrong.append(f"{path}:{node.lineno}: {ast.unparse(node)}")
                    continue
                assert isinstance(group, ast.Attribute)
                found.setdefault(path, set()).add(group.attr)
    assert wrong == []
    return found


def _named(names: set[str]) -> set[Group]:
    return {getattr(groups, n) for n in names}


def test_every_consumer_group_id_carries_the_topic_prefix() -> None:
    """Until session 22 most ids did not: two deployments sharing a broker with
    different prefixes shared `tradetape.projection.orders`, `watch-...`, the engine's
    fold and rebuild groups, and their ACLs."""
    used = _groups_in_code()
    assert sum(len(v) for v in used.values()) >= 15, used  # the scan finds them
    assert set().union(*map(_named, used.values())) == set(groups.ALL)


def test_the_acls_grant_exactly_the_groups_the_code_uses() -> None:
    """Each role's groups are those of the code its `where` names (the administrator's
    aside), and the plan's group bindings are `group_id`'s names for them."""
    used = _groups_in_code()
    for role, spec in ROLES.items():
        files = re.findall(r"[\w/]+\.py", spec.where)
        assert files, role
        code = set().union(*(_named(used.get(f, set())) for f in files))
        assert code - groups.RUN_AS_ADMIN == set(spec.groups), role
    granted = {g for spec in ROLES.values() for g in spec.groups}
    assert granted == set(groups.ALL) - groups.RUN_AS_ADMIN
    prefix = "tenant1."
    bound = {(b.name, b.pattern) for b in plan(prefix) if b.resource is Resource.GROUP}
    assert bound == {
        (group_id(prefix, g), Pattern.PREFIXED if g.unique else Pattern.LITERAL) for g in granted
    }


@given(one=st.text(min_size=1, max_size=8), other=st.text(min_size=1, max_size=8))
def test_two_prefixes_share_no_group(one: str, other: str) -> None:
    """Deployments with different prefixes on one broker: no group id, and no group
    the ACLs grant, in common."""
    if one == other or one.startswith(other) or other.startswith(one):
        return  # a prefix of the other: the longer one's names are under the shorter's
    ids = [{group_id(p, g, "x" if g.unique else "") for g in groups.ALL} for p in (one, other)]
    assert ids[0].isdisjoint(ids[1])
    bound = [{b.name for b in plan(p) if b.resource is Resource.GROUP} for p in (one, other)]
    assert bound[0].isdisjoint(bound[1])
    assert all(n.startswith(one) for n in bound[0]) and all(n.startswith(other) for n in bound[1])


def test_every_transactional_id_in_the_code_is_granted() -> None:
    ids = [(path, t) for path, text in _sources() for t in _TXN.findall(text)]
    assert ids, "the scan finds them"
    prefix = "tenant1."
    granted = [b for b in plan(prefix) if b.resource is Resource.TRANSACTIONAL_ID]
    missing = []
    for path, template in ids:
        if path.endswith("demo.py"):  # the demos run as the administrator
            continue
        fixed = template.replace("{prefix}", prefix).split("{", 1)[0]
        if not any(fixed.startswith(b.name) for b in granted):
            missing.append((path, template))
    assert missing == []


def test_only_the_engine_and_the_travel_rule_hold_transactional_ids() -> None:
    """The two consume-and-produce components (session 25: the travel rule's answers
    and their requests' offsets in one transaction)."""
    holders = {b.principal for b in plan() if b.resource is Resource.TRANSACTIONAL_ID}
    assert holders == {"User:engine", "User:travelrule"}


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


def test_the_plan_commands_help_names_every_role() -> None:
    """`tradetape acls plan --help` lists the roles by hand: it missed travelrule and
    reporter when they were added."""
    from deploy.cli import acls_plan

    listed = (acls_plan.__doc__ or "").split("Roles:", 1)[1].split(".", 1)[0]
    assert {r.value for r in Role} <= set(re.findall(r"[a-z]+", listed))


def test_the_marketdata_role_may_write_what_marketdata_load_sends() -> None:
    """`marketdata load` publishes a capture's trades and quotes and each malformed line
    as a `DeadLetter` (engine/marketdata/loader.py); the role could not write
    `deadletter`, so under ACLs such a line was refused by the broker and the load exited
    1 with it not delivered (helper s27-docs)."""
    from engine.marketdata import loader
    from schemas.events import DeadLetter, MarketTrade, QuoteUpdated

    assert "DeadLetter(" in Path(loader.__file__).read_text()
    sent = {Topic(cls.TOPIC) for cls in (MarketTrade, QuoteUpdated, DeadLetter)}
    assert ROLES[Role.MARKETDATA].writes == sent
