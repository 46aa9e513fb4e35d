"""A worker whose rebuild, or the snapshotter whose fold, would start or go on where the
log no longer holds (records deleted from a topic it reads in full) holds instead of
folding what is left: real broker."""

from __future__ import annotations

import logging
import time

import pytest
from confluent_kafka import TopicPartition

from deploy.kafka import admin_client, create_topics, end_offsets
from deploy.settings import Settings
from engine.replay import LogCut
from engine.snapshotter import Snapshotter
from engine.worker import EngineWorker
from schemas.topics import Topic
from tests.engine.helpers import (
    RecordCounter,
    produce,
    quote,
    running_snapshotter,
    running_worker,
    world,
)
from tests.engine.test_crash import ACCOUNTS, _intents
from tests.engine.workers import generous_limits

pytestmark = pytest.mark.integration


def _delete_all_records(settings: Settings, topic: Topic) -> list[str]:
    """`kafka-delete-records` up to the end of every partition of `topic` holding records:
    the partitions cut (their first offset is now past 0)."""
    admin = admin_client(settings)
    name = settings.topic(topic)
    md = admin.list_topics(name, timeout=10).topics[name]
    ends = end_offsets(admin, [TopicPartition(name, p) for p in md.partitions])
    cut = [TopicPartition(t, p, e) for (t, p), e in sorted(ends.items()) if e > 0]
    for fut in admin.delete_records(cut).values():
        fut.result(timeout=30)
    return [f"{tp.topic}[{tp.partition}]" for tp in cut]


def test_a_control_topic_cut_at_its_start_holds_the_rebuild(
    env: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: the rebuild read the accounts topic from what was left (librdkafka's
    beginning is the log's first offset), completed, and the worker decided on a state
    without the accounts opened and funded there (complete, no error)."""
    with running_worker(env, wid="cut0"):
        world(env, ["ACC1"])  # AccountOpened, KycVerified, DepositReceived: accounts
    cut = _delete_all_records(env, Topic.ACCOUNTS)
    assert cut
    worker = EngineWorker(env, wid="cut1")
    try:
        with caplog.at_level(logging.ERROR, logger="tradetape.engine"):
            worker.rebuild([0])
        assert not worker.complete, "a state without the deleted records was taken as whole"
        errors = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
        for part in cut:
            assert f"{part}: from its beginning, the log holds" in errors, errors
    finally:
        worker.close()


def test_the_snapshotter_does_not_fold_a_log_cut_at_its_start(env: Settings) -> None:
    """Before: `start` folded the accounts topic from its first offset and went on to
    write slices of a state without the deleted accounts (no error)."""
    with running_worker(env, wid="cut2"):
        world(env, ["ACC1"])
    _delete_all_records(env, Topic.ACCOUNTS)
    snap = Snapshotter(env)
    try:
        with pytest.raises(LogCut, match="accounts"):
            snap.start()
    finally:
        snap.reader.close()


def test_the_snapshotter_does_not_skip_records_deleted_past_where_it_is(env: Settings) -> None:
    """Before: its next round's fold, from an offset below the log's new first offset,
    was moved to that first offset by `auto.offset.reset=earliest`, and the records in
    between (ACC2's account, KYC and deposit) were never folded, silently."""
    with running_worker(env, wid="cut3"):
        world(env, ["ACC1"])
        snap = Snapshotter(env)
        try:
            snap.start()
            world(env, ["ACC2"], producer_id="strat2")
            _delete_all_records(env, Topic.ACCOUNTS)
            with pytest.raises(LogCut, match="outside the log"):
                snap.round()
        finally:
            snap.reader.close()


def test_inputs_cut_past_the_committed_offset_hold_the_worker(
    env: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Admin commands produced while no worker ran, then deleted (kafka-delete-records) up
    to the end: before, a fresh worker's rebuild completed and its group consumer would
    resume at the log's new first offset (`auto.offset.reset=earliest`), the commands in
    between never answered, silently."""
    with running_worker(env, wid="cut4"):
        world(env, ["ACC1"])  # decided: the group's offsets on the admin topic committed
    world(env, ["ACC2"], producer_id="strat2", wait=False)  # never decided
    cut = _delete_all_records(env, Topic.ADMIN)
    worker = EngineWorker(env, wid="cut5")
    try:
        n = len(
            worker.ref_consumer.list_topics(env.topic(Topic.INTENTS), timeout=10)
            .topics[env.topic(Topic.INTENTS)]
            .partitions
        )
        with caplog.at_level(logging.ERROR, logger="tradetape.engine"):
            worker.rebuild(range(n))
        assert not worker.complete, "a worker would resume past undecided admin commands"
        errors = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
        assert "where the engine group resumes its inputs" in errors, errors
        assert any(part in errors for part in cut), errors
    finally:
        worker.close()


def test_an_own_topic_created_again_under_a_slice_holds_the_worker(
    env: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """risk.decisions deleted and created again after the snapshotter sliced it: its offsets
    restart at 0, below the slices'. Before, the slices were refused with a WARNING
    ('offset N beyond the committed end') and the worker replayed the new, empty log in
    full: complete, its decisions, orders and fills forgotten without an error."""
    settings = env.with_overrides(engine_snapshot_every=20, engine_snapshot_seconds=1.0)
    counter = RecordCounter(settings, Topic.DECISIONS)
    try:
        with running_worker(settings, "gone0"), running_snapshotter(settings) as snap:
            key = world(settings, ACCOUNTS)
            generous_limits(settings)
            produce(settings, [quote(qty="100")])
            produce(settings, _intents(key, 60, seed=7))
            assert counter.wait(60, 90) >= 60
            deadline = time.monotonic() + 30
            while snap.stats["slices"] < 1 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert snap.stats["slices"] >= 1, snap.stats
    finally:
        counter.close()
    admin = admin_client(settings)
    name = settings.topic(Topic.DECISIONS)
    admin.delete_topics([name], operation_timeout=30)[name].result(30)
    deadline = time.monotonic() + 30
    while name in admin.list_topics(timeout=10).topics and time.monotonic() < deadline:
        time.sleep(0.2)
    deadline = time.monotonic() + 30
    while name not in create_topics(settings, [Topic.DECISIONS]) and time.monotonic() < deadline:
        time.sleep(0.5)  # the deletion may still be under way on the broker
    worker = EngineWorker(settings, wid="gone1")
    try:
        with caplog.at_level(logging.ERROR, logger="tradetape.engine"):
            worker.rebuild(range(6))
        assert not worker.complete, "a new log below the slices was taken as the whole log"
        errors = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
        assert f"{name}[" in errors and "beyond the committed end" in errors, errors
        assert settings.topic(Topic.ENGINE_SNAPSHOTS) in errors, errors
    finally:
        worker.close()
