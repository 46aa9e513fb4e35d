"""A control topic (`risk.config`) deleted and created again, its new log in range of
every stored position: the engine must not fold it onto state decided under the old one
(the kill switch engaged there would be forgotten: fail open). Real broker."""

from __future__ import annotations

import logging
import time

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition

from deploy import groups
from deploy.groups import group_id
from deploy.kafka import admin_client, create_topics, topic_ids
from deploy.settings import Settings
from engine.replay import LogCut
from engine.snapshotter import Snapshotter
from engine.worker import EngineWorker
from schemas import new_event
from schemas.events import KillSwitchEngaged
from schemas.topics import Topic
from tests.engine.helpers import (
    RecordCounter,
    produce,
    running_worker,
    wait_for,
    world,
)
from tests.engine.test_crash import ACCOUNTS, _intents

pytestmark = pytest.mark.integration


def _recreate(settings: Settings, topic: Topic) -> None:
    """Delete `topic` and create it again (a new topic id); polls, no fixed sleep."""
    admin = admin_client(settings)
    name = settings.topic(topic)
    old = topic_ids(admin, [name])[name]
    admin.delete_topics([name], operation_timeout=30)[name].result(30)
    deadline = time.monotonic() + 60
    while True:  # the broker finishes a deletion after answering
        try:
            if name in create_topics(settings, [topic]):
                break
        except KafkaException:
            pass
        assert time.monotonic() < deadline, "the topic was not created again"
        time.sleep(0.3)
    while topic_ids(admin, [name]).get(name) in (None, old):
        assert time.monotonic() < deadline, "the new topic has no new id"
        time.sleep(0.3)


def _engage(settings: Settings, account: str) -> None:
    """`account`'s kill switch, engaged through the engine (it lands on risk.config)."""
    stop = new_event(
        KillSwitchEngaged(scope=account, engaged_by="admin", reason="stop"), producer="admin"
    )
    produce(settings, [stop], admin=True)
    events = wait_for(
        settings,
        Topic.RISK_CONFIG,
        lambda ev: any(e.event_type == "KillSwitchEngaged" for e in ev),
        timeout=60,
    )
    assert any(e.event_type == "KillSwitchEngaged" for e in events), events


def _reset_group_offsets(settings: Settings) -> None:
    """Commit the engine group's offsets again as `kafka-consumer-groups --reset-offsets`
    does: the same offsets, without metadata (no topic ids)."""
    admin = admin_client(settings)
    group = group_id(settings.topic_prefix, groups.ENGINE)
    got = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])
    tps = [
        TopicPartition(tp.topic, tp.partition, tp.offset)
        for tp in got[group].result().topic_partitions
        if tp.offset >= 0
    ]
    assert tps
    done = admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, tps)])
    done[group].result()


def _errors(caplog: pytest.LogCaptureFixture) -> str:
    return " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)


def test_risk_config_created_again_holds_a_workers_rebuild(
    env: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """No snapshot: the engine group's committed offsets carry the ids of the logs the
    state was folded from. Before, a fresh worker read the new, empty risk.config from
    its beginning (in range), completed, and ACC1's kill switch was gone (fail open)."""
    with running_worker(env, wid="rc0"):
        world(env, ["ACC1"])
        _engage(env, "ACC1")
    _recreate(env, Topic.RISK_CONFIG)
    other = new_event(
        KillSwitchEngaged(scope="ACC9", engaged_by="admin", reason="other"), producer="engine"
    )
    produce(env, [other])  # the new log holds records of its own
    worker = EngineWorker(env, wid="rc1")
    try:
        with caplog.at_level(logging.ERROR, logger="tradetape.engine"):
            worker.rebuild(range(6))
        assert not worker.complete, "the new risk.config was folded as the old one's sequel"
        errors = _errors(caplog)
        assert f"{env.topic(Topic.RISK_CONFIG)}: committed while its topic id" in errors, errors
    finally:
        worker.close()


def test_slices_of_an_old_risk_config_hold_the_worker_and_the_snapshotter(
    env: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Slices (format 21) hold the topic ids they were folded from. risk.config created
    again while the snapshotter runs: its round holds (no slice of a state mixing the
    logs), a fresh snapshotter and a fresh worker refuse the old slices. Before, the
    snapshotter went on slicing, and the worker (its group offsets reset, so only the
    slices knew) loaded them onto the new risk.config: the kill switch gone."""
    settings = env.with_overrides(engine_snapshot_every=1, engine_snapshot_seconds=1.0)
    counter = RecordCounter(settings, Topic.DECISIONS)
    snap = Snapshotter(settings)
    try:
        with running_worker(settings, "rs0"):
            key = world(settings, ACCOUNTS)
            _engage(settings, ACCOUNTS[0])
            produce(settings, _intents(key, 4, seed=3))  # own records: decisions to slice
            assert counter.wait(4, 60) >= 4
        snap.start()
        assert snap.round() >= 1, snap.stats
        _recreate(settings, Topic.RISK_CONFIG)
        with pytest.raises(LogCut, match="created again"):
            snap.round()
    finally:
        counter.close()
        snap.reader.close()
    fresh = Snapshotter(settings)
    try:
        with pytest.raises(LogCut, match="another log"):
            fresh.start()
    finally:
        fresh.reader.close()
    worker = EngineWorker(settings, wid="rs1")
    try:
        _reset_group_offsets(settings)  # only the slices know now
        with caplog.at_level(logging.ERROR, logger="tradetape.engine"):
            worker.rebuild(range(6))
        assert not worker.complete, "slices of the old risk.config were loaded onto the new"
        assert "snapshot slices were folded from was deleted and created again" in _errors(caplog)
    finally:
        worker.close()


def test_a_running_worker_holds_when_risk_config_is_created_again(env: Settings) -> None:
    """The worker's partition check (every `engine_partition_check_seconds`) also compares
    the topics' ids with those of its rebuild: risk.config created again under a running
    worker makes it rebuild, and the rebuild holds on the group offsets' ids. Before, the
    worker went on deciding (complete) on a state folded from both logs."""
    with running_worker(env, wid="lv0") as worker:
        world(env, ["ACC1"])
        _engage(env, "ACC1")
        assert worker.complete
        _recreate(env, Topic.RISK_CONFIG)
        deadline = time.monotonic() + 60
        while worker.complete and time.monotonic() < deadline:  # a bound, not a speed claim
            time.sleep(0.2)
        assert not worker.complete, "the worker went on deciding across the recreation"
