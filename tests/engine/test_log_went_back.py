"""A worker whose rebuild, or the snapshotter whose fold, would start or go on where the
log no longer holds (records deleted from a topic it reads in full) holds instead of
folding what is left: real broker."""

from __future__ import annotations

import logging

import pytest
from confluent_kafka import TopicPartition

from deploy.kafka import admin_client, end_offsets
from deploy.settings import Settings
from engine.replay import LogCut
from engine.snapshotter import Snapshotter
from engine.worker import EngineWorker
from schemas.topics import Topic
from tests.engine.helpers import running_worker, world

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
