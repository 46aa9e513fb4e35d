"""Who may do what on the broker: the roles, their Kafka ACL bindings, and applying them.

Signatures and the engine's producer checks make a record's *claims* checkable; they
cannot stop a client from writing a record that claims to be the engine's. A
`RiskDecision`, a `Fill` or a `KillSwitchReleased` on the engine's topics, or a
`ProducerRegistered` on accounts.events, written by any client that can reach the broker,
is read by every consumer. Only the broker can refuse such a write, and only when clients
authenticate (SASL/SCRAM, `deploy.kafka.security_config`) and the topics carry ACLs: this
module says which principal may write and read what (docs/operations.md, *Securing the
broker*).

The model (`ROLES`) is pure and derived from the code: each role lists the catalogue
topics (`schemas.topics`) its components produce to and read, the consumer groups
(`deploy.groups`: every id under the topic prefix, built by `deploy.groups.group_id`,
which the bindings here are derived from too) and transactional ids they use, and
nothing else. `plan` turns it into bindings for a topic prefix and a
principal per role; `apply` creates the missing ones with the admin client and waits
until the broker shows them. Neither removes anything.

Not in the model: `tradetape up`, `topics`, `status`, `acls` and the demos run as the
cluster's administrator (a `super.users` principal), which creates topics and reads
every group's offsets. `IDEMPOTENT_WRITE` on the cluster is not granted: since Kafka 3.0
(KIP-679) an idempotent producer needs only WRITE on a topic, which every producing role
has.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from deploy import groups
from deploy.groups import Group, group_id
from schemas.topics import Topic

if TYPE_CHECKING:
    from confluent_kafka.admin import AclBinding, AdminClient  # type: ignore[attr-defined]


class Role(StrEnum):
    ENGINE = "engine"
    """`tradetape run engine` and `tradetape run snapshotter` (the snapshots are the
    engine's own state: a forged slice would be folded as the engine's)."""
    STRATEGY = "strategy"
    """A strategy publishing signed intents (`engine.client.Publisher`, `tradetape publish`)."""
    ADMIN = "admin"
    """An administrator's commands (`tradetape admin ...`, the publisher with `admin=True`)."""
    MARKETDATA = "marketdata"
    """`tradetape marketdata load` / `simulate`: the market-data feed, and a capture's
    malformed lines as dead letters."""
    TRANSFERS = "transfers"
    """The transfer service (not in this repository): its `TransferRequested`,
    `TransferReleased` and `TransferSettled` (docs/engine.md, *Withdrawals*). Deposits
    are the engine's (accounts.events): this role cannot write one."""
    TRAVELRULE = "travelrule"
    """`tradetape run travelrule`: the travel-rule processor's `TransferChecked` on
    transfers.checks, in transactions (docs/travel_rule.md). A principal of its own,
    the only one that may write transfers.checks: the broker cannot tell one type from
    another on a topic, so on transfers.events (until session 27) the transfer service's
    principal could write a check claiming `travelrule`; every reader now refuses a
    `TransferChecked` read there (`schemas.admission`). It reads the requests, its own
    answers (its rebuild) and accounts.events, and writes nothing on transfers.events."""
    PROJECTOR = "projector"
    """`tradetape run projections`, `rebuild`, `checksum`, the lag `status` reads."""
    SURVEILLANCE = "surveillance"
    """`tradetape run streams` (the faust app) and `tradetape stor`."""
    SIGNER = "signer"
    """`tradetape run signer` (a FROST participant) and the DKG ceremony."""
    REQUESTER = "requester"
    """`tradetape sign`: the signing coordinator."""
    REPORTER = "reporter"
    """`tradetape export auth016`: reads the orders and accounts topics, writes nothing.
    Its `--sign` is `tradetape sign`, the requester's: give one principal both roles
    (`--principal reporter=U --principal requester=U`) or sign apart as the requester."""


class Pattern(StrEnum):
    LITERAL = "literal"
    PREFIXED = "prefixed"


class Resource(StrEnum):
    TOPIC = "topic"
    GROUP = "group"
    TRANSACTIONAL_ID = "transactional_id"


@dataclass(frozen=True)
class Name:
    """A resource name as the code builds it: `{prefix}` stands for the topic prefix
    (`TRADETAPE_TOPIC_PREFIX`), absent where the code does not add it."""

    template: str
    pattern: Pattern = Pattern.PREFIXED

    def resolve(self, prefix: str) -> str:
        return self.template.replace("{prefix}", prefix)


@dataclass(frozen=True)
class RoleSpec:
    writes: frozenset[Topic]
    reads: frozenset[Topic]
    groups: tuple[Group, ...] = ()
    """Consumer groups (READ): every consumer names one, even one that only assigns."""
    transactional_ids: tuple[Name, ...] = ()
    """Transactional ids (WRITE, DESCRIBE)."""
    internal_topics: tuple[Name, ...] = ()
    """Topics a component creates for itself outside the catalogue (CREATE, READ, WRITE)."""
    where: str = ""
    """Where the code that the lists above are read from lives."""


_ANSWERS = frozenset({Topic.DECISIONS, Topic.ACCOUNTS, Topic.RISK_CONFIG})
"""What a publisher that waits for its answers reads (`engine.client.ANSWER_TOPICS`)."""
_ADMIN_ANSWERS = _ANSWERS | {Topic.SURVEILLANCE_CONFIG}
"""What an admin's watcher reads (`engine.client.ADMIN_ANSWER_TOPICS`): the answers, and
surveillance.config, where an accepted `DetectorConfigChanged` is (a strategy is not
given the detectors' thresholds)."""

ROLES: dict[Role, RoleSpec] = {
    Role.ENGINE: RoleSpec(
        writes=frozenset(
            {
                Topic.DECISIONS,
                Topic.ORDERS,
                # The admin facts it accepts (schemas.events.admin.ADMIN_COMMAND_TYPES)
                # go to their own topics: accounts (deposits too), risk config,
                # detectors. Not transfers.events: the transfer service writes there, so
                # a fact of the engine's on it could be forged (a DepositReceived was,
                # until session 22).
                Topic.ACCOUNTS,
                Topic.RISK_CONFIG,
                Topic.SURVEILLANCE_CONFIG,
                Topic.DEADLETTER,
                Topic.ENGINE_SNAPSHOTS,
            }
        ),
        reads=frozenset(
            {
                Topic.INTENTS,
                Topic.ADMIN,
                Topic.DECISIONS,
                Topic.ORDERS,
                Topic.ACCOUNTS,
                Topic.TRANSFERS,
                Topic.TRANSFER_CHECKS,
                Topic.RISK_CONFIG,
                Topic.MARKETDATA,
                Topic.ENGINE_SNAPSHOTS,
            }
        ),
        groups=(
            groups.ENGINE,
            groups.ENGINE_REF,
            groups.ENGINE_CTL,
            groups.ENGINE_FOLD,
            groups.ENGINE_REBUILD,
            groups.ENGINE_SNAPSHOTTER,
            groups.ENGINE_SNAPSHOTS,
        ),
        transactional_ids=(Name("{prefix}engine-"),),  # engine/worker.py: {prefix}engine-<id>
        where="engine/worker.py, engine/replay.py, engine/snapshotter.py, engine/snapshot_io.py",
    ),
    Role.STRATEGY: RoleSpec(
        writes=frozenset({Topic.INTENTS}),
        reads=_ANSWERS,
        groups=(groups.WATCH,),
        where="engine/client.py",
    ),
    Role.ADMIN: RoleSpec(
        writes=frozenset({Topic.ADMIN}),
        reads=_ADMIN_ANSWERS,
        groups=(groups.WATCH,),
        where="engine/client.py",
    ),
    Role.MARKETDATA: RoleSpec(
        # a malformed capture line is a DeadLetter (engine/marketdata/loader.py)
        writes=frozenset({Topic.MARKETDATA, Topic.DEADLETTER}),
        reads=frozenset(),
        where="engine/marketdata/loader.py",
    ),
    Role.TRANSFERS: RoleSpec(
        writes=frozenset({Topic.TRANSFERS}),
        reads=frozenset(),
        where="schemas/events/transfers.py (the service is not in this repository)",
    ),
    Role.TRAVELRULE: RoleSpec(
        writes=frozenset({Topic.TRANSFER_CHECKS, Topic.DEADLETTER}),
        reads=frozenset({Topic.TRANSFERS, Topic.TRANSFER_CHECKS, Topic.ACCOUNTS}),
        groups=(groups.TRAVELRULE, groups.TRAVELRULE_FACTS),
        transactional_ids=(Name("{prefix}travelrule-"),),  # {prefix}travelrule-<instance>
        where="streams/travel_rule/processor.py",
    ),
    Role.PROJECTOR: RoleSpec(
        writes=frozenset(),
        reads=frozenset(
            {
                Topic.ORDERS,
                Topic.MARKETDATA,
                Topic.TRANSFERS,
                Topic.TRANSFER_CHECKS,
                Topic.DECISIONS,
                Topic.RISK_CONFIG,
                Topic.DEADLETTER,
                Topic.ACCOUNTS,
                Topic.SURVEILLANCE_ALERTS,
            }
        ),
        groups=(groups.PROJECTION, groups.STATUS_LAG),
        where="projections/core.py PROJECTIONS, projections/projector.py, projections/lag.py",
    ),
    Role.SURVEILLANCE: RoleSpec(
        writes=frozenset({Topic.SURVEILLANCE_ALERTS, Topic.DEADLETTER}),
        reads=frozenset(
            {
                # streams/app.py SOURCES, and `tradetape stor` (streams/cli.py)
                Topic.ORDERS,
                Topic.ACCOUNTS,
                Topic.MARKETDATA,
                Topic.SURVEILLANCE_CONFIG,
                Topic.SURVEILLANCE_ALERTS,
            }
        ),
        groups=(groups.SURVEILLANCE, groups.STOR),
        internal_topics=(
            # faust's table changelogs ({app id}-{table}-changelog) and the sequencer's topic
            Name("{prefix}" + groups.SURVEILLANCE.stem),
            Name("{prefix}surveillance.sequenced", Pattern.LITERAL),
        ),
        where="streams/app.py, streams/cli.py",
    ),
    Role.SIGNER: RoleSpec(
        # commitments and shares; the ceremony's rounds and DkgCompleted; dead letters
        writes=frozenset({Topic.SIGNING_MESSAGES, Topic.SIGNING, Topic.DEADLETTER}),
        reads=frozenset({Topic.ACCOUNTS, Topic.SIGNING_REQUESTS, Topic.SIGNING_MESSAGES}),
        groups=(groups.SIGNER, groups.DKG),
        where="signer_ffi/participant.py, signer_ffi/ceremony.py",
    ),
    Role.REQUESTER: RoleSpec(
        # requests, signing packages, outcomes and refusals
        writes=frozenset({Topic.SIGNING_REQUESTS, Topic.SIGNING_MESSAGES, Topic.SIGNING}),
        reads=frozenset({Topic.SIGNING_MESSAGES, Topic.SIGNING}),
        groups=(groups.COORDINATOR,),
        where="signer_ffi/coordinator.py",
    ),
    Role.REPORTER: RoleSpec(
        writes=frozenset(),
        reads=frozenset({Topic.ORDERS, Topic.ACCOUNTS}),  # the Fills; AccountOpened
        groups=(groups.REPORTER,),
        where="projections/reports/cli.py",
    ),
}


def writers(topic: Topic) -> frozenset[Role]:
    """The roles the model lets write `topic`."""
    return frozenset(r for r, spec in ROLES.items() if topic in spec.writes)


def readers(topic: Topic) -> frozenset[Role]:
    return frozenset(r for r, spec in ROLES.items() if topic in spec.reads)


@dataclass(frozen=True, order=True)
class Binding:
    """One ALLOW ACL: `principal` may do `operation` on the resource, from any host."""

    principal: str
    resource: Resource
    pattern: Pattern
    name: str
    operation: str
    """READ, WRITE, DESCRIBE or CREATE (confluent_kafka's AclOperation names)."""

    def line(self) -> str:
        return (
            f"{self.principal:24} ALLOW {self.operation:8} "
            f"{self.resource}:{self.pattern}:{self.name}"
        )

    def as_dict(self) -> dict[str, str]:
        return {
            "principal": self.principal,
            "permission": "ALLOW",
            "operation": self.operation,
            "resource": str(self.resource),
            "pattern": str(self.pattern),
            "name": self.name,
            "host": "*",
        }


def default_principal(role: Role) -> str:
    return f"User:{role.value}"


class PlanError(ValueError):
    """A principal mapping that cannot be used (the CLI prints it as an `error:` line)."""


def principals(overrides: Iterable[str] = ()) -> dict[Role, str]:
    """Each role's principal: `User:<role>`, or what an override `ROLE=PRINCIPAL` says
    (`User:` is added to a bare name). An unknown role, a malformed or repeated override
    is a `PlanError`, never ignored."""
    out = {role: default_principal(role) for role in Role}
    seen: set[Role] = set()
    for item in overrides:
        name, sep, principal = item.partition("=")
        if not sep or not principal.strip():
            raise PlanError(f"--principal {item!r} is not ROLE=PRINCIPAL")
        try:
            role = Role(name.strip())
        except ValueError:
            roles = ", ".join(r.value for r in Role)
            raise PlanError(f"--principal {item!r}: no role {name!r} (roles: {roles})") from None
        if role in seen:
            raise PlanError(f"--principal names role {role.value} twice")
        seen.add(role)
        principal = principal.strip()
        out[role] = principal if ":" in principal else f"User:{principal}"
    return out


def role_bindings(role: Role, principal: str, topic_prefix: str = "") -> list[Binding]:
    """The bindings one role needs, for topics under `topic_prefix`."""
    spec = ROLES[role]
    out: set[Binding] = set()

    def add(resource: Resource, pattern: Pattern, name: str, *ops: str) -> None:
        out.update(Binding(principal, resource, pattern, name, op) for op in ops)

    for topic in spec.writes:
        # WRITE implies DESCRIBE: a producer's metadata request sees the topic.
        add(Resource.TOPIC, Pattern.LITERAL, f"{topic_prefix}{topic.value}", "WRITE")
    for topic in spec.reads:
        # READ implies DESCRIBE (metadata, list_offsets).
        add(Resource.TOPIC, Pattern.LITERAL, f"{topic_prefix}{topic.value}", "READ")
    for name in spec.internal_topics:
        add(Resource.TOPIC, name.pattern, name.resolve(topic_prefix), "CREATE", "READ", "WRITE")
    for group in spec.groups:
        pattern = Pattern.PREFIXED if group.unique else Pattern.LITERAL
        add(Resource.GROUP, pattern, group_id(topic_prefix, group), "READ")
    for name in spec.transactional_ids:
        add(
            Resource.TRANSACTIONAL_ID, name.pattern, name.resolve(topic_prefix), "WRITE", "DESCRIBE"
        )
    return sorted(out)


def plan(topic_prefix: str = "", principal_of: Mapping[Role, str] | None = None) -> list[Binding]:
    """Every role's bindings, sorted; a pure function of the model, the prefix and the
    principals (`principals`)."""
    names = principal_of or principals()
    out: set[Binding] = set()
    for role in Role:
        out.update(role_bindings(role, names[role], topic_prefix))
    return sorted(out)


# --- applying: the broker's I/O ---------------------------------------------------------


def _kafka_binding(b: Binding) -> AclBinding:
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AclBinding,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    return AclBinding(
        ResourceType[b.resource.name],
        b.name,
        ResourcePatternType[b.pattern.name],
        b.principal,
        "*",
        AclOperation[b.operation],
        AclPermissionType.ALLOW,
    )


def _from_kafka(acl: Any) -> Binding | None:
    """A binding the broker lists, in the model's terms; None for what the model never
    grants (a DENY, a host other than `*`, another resource or operation)."""
    try:
        if acl.permission_type.name != "ALLOW" or acl.host != "*":
            return None
        return Binding(
            acl.principal,
            Resource[acl.restype.name],
            Pattern[acl.resource_pattern_type.name],
            acl.name,
            acl.operation.name,
        )
    except KeyError:
        return None


def present(admin: AdminClient, principals_: Iterable[str], timeout: float = 30.0) -> set[Any]:
    """The broker's ACL bindings (confluent_kafka `AclBinding`s) of these principals."""
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    found: set[Any] = set()
    for principal in sorted(set(principals_)):
        any_name: Any = None  # the filter matches any name and host (typed as str)
        flt = AclBindingFilter(
            ResourceType.ANY,
            any_name,
            ResourcePatternType.ANY,
            principal,
            any_name,
            AclOperation.ANY,
            AclPermissionType.ANY,
        )
        found.update(admin.describe_acls(flt, request_timeout=timeout).result())
    return found


@dataclass
class Applied:
    created: list[Binding] = field(default_factory=list)
    already: list[Binding] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    """Bindings the broker holds for the planned principals that the plan does not have
    (shown, never removed: `kafka-acls.sh --remove` takes them away)."""


ACL_WAIT_SECONDS = 30.0
"""How long `apply` waits for the broker to show the ACLs it created (seconds, not
money): a controller commits them to the metadata log, and a broker applies them a moment
later."""


def apply(admin: AdminClient, bindings: list[Binding], *, timeout: float = 30.0) -> Applied:
    """Create the `bindings` the broker does not have yet and wait until it shows them
    all (a client authorised by them is then served). Running it again creates nothing."""
    wanted = {_kafka_binding(b): b for b in bindings}
    held = present(admin, {b.principal for b in bindings}, timeout)
    result = Applied(
        already=sorted(b for k, b in wanted.items() if k in held),
        extra=sorted(
            (m.line() if (m := _from_kafka(acl)) is not None else str(acl))
            for acl in held
            if acl not in wanted
        ),
    )
    missing = [k for k in wanted if k not in held]
    if missing:
        for fut in admin.create_acls(missing, request_timeout=timeout).values():
            fut.result()
        result.created = sorted(wanted[k] for k in missing)
        deadline = time.monotonic() + ACL_WAIT_SECONDS
        while True:
            held = present(admin, {b.principal for b in bindings}, timeout)
            late = [k for k in missing if k not in held]
            if not late:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the broker does not show {len(late)} of the ACLs created after "
                    f"{ACL_WAIT_SECONDS:.0f} s"
                )
            time.sleep(0.2)
    return result


def upsert_scram_user(
    admin: AdminClient,
    user: str,
    password: str,
    *,
    mechanism: str = "SCRAM-SHA-512",
    iterations: int = 8192,
    timeout: float = 30.0,
) -> None:
    """Create (or change the password of) a SCRAM user on a KRaft cluster."""
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialUpsertion,
    )

    info = ScramCredentialInfo(ScramMechanism[mechanism.replace("-", "_")], iterations)
    alteration = UserScramCredentialUpsertion(user, info, password.encode())
    for fut in admin.alter_user_scram_credentials([alteration], request_timeout=timeout).values():
        fut.result()
