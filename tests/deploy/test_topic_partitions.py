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
