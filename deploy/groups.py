"""Every consumer-group id the code uses, each under the deployment's topic prefix.

`Settings.topic_prefix` namespaces the topics so deployments (tests, tenants) can share a
broker; a group id outside it is shared by all of them. Until session 22 most ids were
not prefixed: two deployments with different prefixes on one broker joined one
`tradetape.projection.orders` group (whose rebalances then moved partitions of either
deployment's topics between both deployments' projectors), and the ACL role model
(`deploy.acls`) had to grant unprefixed names that any tenant's principal could use. Now
every consumer takes its id from `group_id` with one of the `Group`s below, and the role
model derives its group bindings from the same function, so the code and the ACLs
cannot name different ids (`tests/deploy/test_acls_model.py` scans the code for it).
Pure: no Kafka import.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Group:
    """A consumer-group id as the code builds it: the prefix, `stem`, then, if `unique`,
    a suffix the consumer adds (a uuid, a pid, a projection's name) to make it its own.
    A unique group is granted by a PREFIXED ACL on prefix + stem, another by a LITERAL
    one on its whole id."""

    stem: str
    unique: bool = True


ENGINE = Group("engine", unique=False)
"""The engine workers' group (engine/worker.py): the one they join to share partitions."""
ENGINE_REF = Group("engine-ref-")
"""A worker's market-data consumer (assigned, never joined)."""
ENGINE_CTL = Group("engine-ctl-")
"""A worker's control-topic consumer (engine/control.py)."""
ENGINE_FOLD = Group("engine-fold-")
"""A rebuild's fold of the reference and own topics (engine/replay.py)."""
ENGINE_REBUILD = Group("engine-rebuild-")
"""A hand-over's read of the partitions gained (engine/replay.py)."""
ENGINE_SNAPSHOTTER = Group("engine-snapshotter-")
"""The snapshotter's consumer (engine/snapshotter.py)."""
ENGINE_SNAPSHOTS = Group("engine-snapshots-")
"""Reading snapshot slices (engine/snapshot_io.py)."""
SNAPSHOT_STATUS = Group("snapshot-status-")
"""`tradetape status`'s look at the snapshots (engine/snapshot_io.py; the administrator)."""
WATCH = Group("watch-")
"""A publisher waiting for its answers (engine/client.py)."""
PROJECTION = Group("tradetape.projection.")
"""A projector; the suffix is its projection's name (projections/projector.py)."""
STATUS_LAG = Group("tradetape.status.lag", unique=False)
"""The lag check's consumer, never joined (projections/lag.py)."""
SURVEILLANCE = Group("tradetape-surveillance")
"""The faust app's id, its group id (streams/app.py); faust names its own topics and
clients after it, so its ACLs are prefixed on it (it is called without a suffix)."""
STOR = Group("stor-")
"""`tradetape stor` (streams/cli.py)."""
SIGNER = Group("signer-")
"""A FROST participant; the suffix names it and its process (signer_ffi/participant.py)."""
DKG = Group("dkg-")
"""A participant in the key-generation ceremony (signer_ffi/ceremony.py)."""
COORDINATOR = Group("coordinator-")
"""`tradetape sign`'s coordinator (signer_ffi/coordinator.py)."""
DEMO = Group("demo-")
"""The demos' readers (deploy/demo.py, signer_ffi/demo.py; the administrator)."""
TRAVELRULE = Group("travelrule", unique=False)
"""The travel-rule processor's group on transfers.events (streams/travel_rule/processor.py):
its offsets are committed in its transactions."""
TRAVELRULE_FACTS = Group("travelrule-facts-")
"""Its readers of accounts.events and transfers.events at start (assigned, never committed)."""
REPORTER = Group("reporter-")
"""`tradetape export`'s reads of the orders and accounts topics (projections/reports/cli.py;
assigned, never committed): the reporter role's, not `stor`'s (the surveillance role)."""

ALL: tuple[Group, ...] = (
    ENGINE,
    ENGINE_REF,
    ENGINE_CTL,
    ENGINE_FOLD,
    ENGINE_REBUILD,
    ENGINE_SNAPSHOTTER,
    ENGINE_SNAPSHOTS,
    SNAPSHOT_STATUS,
    WATCH,
    PROJECTION,
    STATUS_LAG,
    SURVEILLANCE,
    STOR,
    SIGNER,
    DKG,
    COORDINATOR,
    DEMO,
    TRAVELRULE,
    TRAVELRULE_FACTS,
    REPORTER,
)

RUN_AS_ADMIN: frozenset[Group] = frozenset({SNAPSHOT_STATUS, DEMO})
"""Groups of what runs as the cluster's administrator (a super user: `tradetape status`,
the demos), outside the ACL role model."""


def group_id(prefix: str, group: Group, suffix: str = "") -> str:
    """The consumer-group id of `group` under the topic prefix `prefix`, with the
    consumer's own `suffix` (a unique group's). Without a suffix: the name its ACL
    grants (`deploy.acls`), the whole id for a group that is not unique. The one place
    a group id is built."""
    if suffix and not group.unique:
        raise ValueError(f"group {group.stem!r} takes no suffix")
    return f"{prefix}{group.stem}{suffix}"
