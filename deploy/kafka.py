"""Kafka client configuration and topic administration shared by every component."""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from deploy.settings import Settings
from schemas.topics import TOPICS, Topic


def producer_config(
    settings: Settings, *, transactional_id: str | None = None, **extra: Any
) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 2,
        "compression.type": "lz4",
        # Java's partitioner: the same key lands on the same partition number on every
        # topic and from every client (librdkafka's default is CRC32-based).
        "partitioner": "murmur2_random",
    }
    if transactional_id is not None:
        conf["transactional.id"] = transactional_id
        conf["transaction.timeout.ms"] = 60_000
    conf.update(extra)
    return conf


def consumer_config(settings: Settings, *, group_id: str, **extra: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap,
        "group.id": group_id,
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
    }
    conf.update(extra)
    return conf


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient({"bootstrap.servers": settings.bootstrap})


def create_topics(
    settings: Settings, topics: list[Topic] | None = None, timeout: float = 30.0
) -> list[str]:
    """Create catalogue topics that do not exist yet. Returns the names it created."""
    admin = admin_client(settings)
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = [TOPICS[t] for t in (topics or list(TOPICS))]
    new = [
        NewTopic(
            spec.full_name(settings.topic_prefix),
            num_partitions=settings.default_partitions or spec.partitions,
            replication_factor=spec.replication_factor,
            config=dict(spec.config),
        )
        for spec in wanted
        if spec.full_name(settings.topic_prefix) not in existing
    ]
    if not new:
        return []
    created: list[str] = []
    for name, fut in admin.create_topics(new, operation_timeout=timeout).items():
        try:
            fut.result()
            created.append(name)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    return sorted(created)
