"""TRADETAPE_DEFAULT_PARTITIONS and the topics the catalogue declares single-partition."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

import pytest

from deploy import kafka
from deploy.settings import Settings
from schemas.topics import TOPICS, Topic


class _Metadata:
    topics: dict[str, Any] = {}


class _FakeAdmin:
    """Records the NewTopics `create_topics` asks for; no topic exists yet."""

    def __init__(self) -> None:
        self.asked: dict[str, int] = {}

    def list_topics(self, timeout: float = 0) -> _Metadata:
        return _Metadata()

    def create_topics(
        self, new: list[Any], operation_timeout: float = 0
    ) -> dict[str, Future[None]]:
        done: dict[str, Future[None]] = {}
        for topic in new:
            self.asked[topic.topic] = topic.num_partitions
            done[topic.topic] = Future()
            done[topic.topic].set_result(None)
        return done


def test_default_partitions_leaves_the_single_partition_topics_at_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before: TRADETAPE_DEFAULT_PARTITIONS=3 created signing.*, deadletter and
    surveillance.config with 3 partitions too."""
    admin = _FakeAdmin()
    monkeypatch.setattr(kafka, "admin_client", lambda _s: admin)
    settings = Settings(default_partitions=3, topic_prefix="p.")
    kafka.create_topics(settings)
    single = {t for t, spec in TOPICS.items() if spec.partitions == 1}
    assert single >= {
        Topic.SIGNING,
        Topic.SIGNING_REQUESTS,
        Topic.SIGNING_MESSAGES,
        Topic.DEADLETTER,
        Topic.SURVEILLANCE_CONFIG,
    }
    assert admin.asked == {
        spec.full_name("p."): 1 if topic in single else 3 for topic, spec in TOPICS.items()
    }


def test_without_the_setting_the_catalogue_counts_are_used(monkeypatch: pytest.MonkeyPatch) -> None:
    admin = _FakeAdmin()
    monkeypatch.setattr(kafka, "admin_client", lambda _s: admin)
    kafka.create_topics(Settings(topic_prefix="q."))
    assert admin.asked == {spec.full_name("q."): spec.partitions for spec in TOPICS.values()}


def test_partition_changes_names_every_keyed_topic_off_its_declared_count() -> None:
    """The declared count is the one `create_topics` uses; the snapshot cache may differ."""
    settings = Settings(topic_prefix="p.")
    declared = {
        spec.full_name("p."): kafka.partition_count(settings, spec) for spec in TOPICS.values()
    }
    assert kafka.partition_changes(settings, declared) == {}
    assert kafka.partition_changes(settings, {}) == {}  # nothing created yet
    grown = dict(declared)
    grown["p.orders.lifecycle"] = 12
    grown["p.risk.config"] = 7
    grown["p.deadletter"] = 2
    grown["p.engine.snapshots"] = 12
    grown["other.orders.lifecycle"] = 12  # another namespace's topic
    changed = kafka.partition_changes(settings, grown)
    assert changed == {
        "p.orders.lifecycle": (6, 12),
        "p.risk.config": (6, 7),
        "p.deadletter": (1, 2),
    }
    assert kafka.describe_partition_changes(changed) == (
        "p.deadletter has 2 partitions, declared 1; p.orders.lifecycle has 12 partitions, "
        "declared 6; p.risk.config has 7 partitions, declared 6"
    )
    # TRADETAPE_DEFAULT_PARTITIONS is the declaration for the partitioned topics.
    twelve = Settings(topic_prefix="p.", default_partitions=12)
    assert "p.orders.lifecycle" not in kafka.partition_changes(twelve, grown)
    assert kafka.partition_changes(twelve, declared)["p.orders.lifecycle"] == (12, 6)
