"""The topic catalogue: names, partitioning, configs and which events go where.

Nobody hard-codes a topic name; they use `Topic.X` and resolve it with the deployment's
prefix through `TopicSpec.full_name` (tests and tenants get isolated namespaces).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Topic(StrEnum):
    INTENTS = "orders.intents"
    ADMIN = "admin.commands"
    DECISIONS = "risk.decisions"
    ORDERS = "orders.lifecycle"
    ACCOUNTS = "accounts.events"
    TRANSFERS = "transfers.events"
    TRANSFER_CHECKS = "transfers.checks"
    RISK_CONFIG = "risk.config"
    MARKETDATA = "marketdata.events"
    SURVEILLANCE_CONFIG = "surveillance.config"
    SURVEILLANCE_ALERTS = "surveillance.alerts"
    SIGNING = "signing.events"
    SIGNING_REQUESTS = "signing.requests"
    SIGNING_MESSAGES = "signing.messages"
    DEADLETTER = "deadletter"
    ENGINE_SNAPSHOTS = "engine.snapshots"


ENGINE_OUTPUT_TOPICS: frozenset[Topic] = frozenset((Topic.DECISIONS, Topic.ORDERS))
"""The engine's own output topics: it is the only writer of every event on them
(decisions and rejections, orders, venue acknowledgements, cancels and fills). On the
domain topics it is the only writer of the admin facts it accepts
(`schemas.events.admin.ADMIN_COMMAND_TYPES`); `schemas.registry.engine_written` has both."""


EVENT_LOG_CONFIG: dict[str, str] = {
    "retention.ms": "-1",
    "retention.bytes": "-1",
    "cleanup.policy": "delete",
    "min.insync.replicas": "1",
    "message.timestamp.type": "CreateTime",
}
"""Event topics are the system of record: kept forever, never compacted."""

INTENT_LOG_CONFIG: dict[str, str] = {**EVENT_LOG_CONFIG, "message.timestamp.type": "LogAppendTime"}
"""Intents carry the broker's append time as the record timestamp: the engine bounds an
intent's producer-set `occurred_at` against it and counts order rates in it, a time the
producer does not control (`deploy.kafka.create_topics` also sets it on existing topics)."""

SNAPSHOT_CONFIG: dict[str, str] = {
    "cleanup.policy": "compact",
    "min.insync.replicas": "1",
    # Roll segments hourly so compaction (which skips the active segment) drops old slices.
    "segment.ms": "3600000",
}


@dataclass(frozen=True)
class TopicSpec:
    topic: Topic
    partitions: int
    key: str
    description: str
    config: dict[str, str] = field(default_factory=lambda: dict(EVENT_LOG_CONFIG))
    replication_factor: int = 1
    fixed_partitions: bool = True
    """The partition count may never change once the topic exists: events of one key
    share a partition, and adding partitions moves keys (murmur2 modulo the count), so a
    key's events before and after would be read in no fixed order and an engine worker
    would miss an account's history (`deploy.kafka.partition_changes`). False only for a
    cache whose records are keyed by what they hold (`engine.snapshots`)."""

    def full_name(self, prefix: str = "") -> str:
        return f"{prefix}{self.topic.value}"


TOPICS: dict[Topic, TopicSpec] = {
    spec.topic: spec
    for spec in (
        TopicSpec(
            Topic.INTENTS,
            6,
            "account",
            "Signed order and cancel intents from strategies",
            dict(INTENT_LOG_CONFIG),
        ),
        TopicSpec(
            Topic.ADMIN, 6, "account", "Admin commands: accounts, KYC, AML, limits, kill switch"
        ),
        TopicSpec(
            Topic.DECISIONS,
            6,
            "account",
            "Risk decisions, intent rejections, drawdown peaks found at prints, units, "
            "and the passes over resting orders that holds and limits changes ran",
        ),
        TopicSpec(Topic.ORDERS, 6, "account", "Order lifecycle and fills"),
        TopicSpec(
            Topic.ACCOUNTS, 6, "account", "Account facts: opening, KYC, AML, producers, deposits"
        ),
        TopicSpec(
            Topic.TRANSFERS,
            6,
            "account",
            "Withdrawals: requests, releases and settlements (the transfer service)",
        ),
        TopicSpec(
            Topic.TRANSFER_CHECKS,
            6,
            "account",
            "Travel-rule checks of withdrawal requests (the travel rule alone writes it)",
        ),
        TopicSpec(Topic.RISK_CONFIG, 6, "account or '*'", "Risk limits and kill switch"),
        TopicSpec(Topic.MARKETDATA, 6, "instrument", "Trades and top-of-book quotes"),
        TopicSpec(Topic.SURVEILLANCE_CONFIG, 1, "detector", "Detector configuration"),
        TopicSpec(Topic.SURVEILLANCE_ALERTS, 6, "account", "Market-abuse alerts"),
        TopicSpec(
            Topic.SIGNING,
            1,
            "request id",
            "Completed and failed threshold signings, refused round messages",
        ),
        TopicSpec(Topic.SIGNING_REQUESTS, 1, "request id", "Signing requests to participants"),
        TopicSpec(Topic.SIGNING_MESSAGES, 1, "request id", "FROST commitments and shares"),
        TopicSpec(
            Topic.DEADLETTER, 1, "source topic", "Undecodable or invalid input, with the reason"
        ),
        TopicSpec(
            Topic.ENGINE_SNAPSHOTS,
            6,
            "engine partition / chunk",
            "Engine state slices per partition: a cache of the fold, not events",
            dict(SNAPSHOT_CONFIG),
            fixed_partitions=False,
        ),
    )
}
