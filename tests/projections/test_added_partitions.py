"""A partition added to a topic while a projector runs is read without a restart, and
`tradetape status` counts it in the lag (real broker and database)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import NewPartitions  # type: ignore[attr-defined]

from deploy.kafka import admin_client, end_offsets, producer_config
from deploy.local.stack import _add_projection_lag, _projection_health
from deploy.settings import Settings
from projections.checksum import checksum
from projections.cli import partitions_changed
from projections.core import PROJECTIONS
from projections.lag import partition_lag, status_lag
from projections.projector import Projector
from projections.rebuild import rebuild_many
from projections.runner import run_group
from projections.synthetic import generate
from schemas import encode
from schemas.topics import Topic
from tests.projections.helpers import produce, stored_offsets

GROUP = ["fills", "orders"]


def test_a_partition_without_a_stored_offset_counts_from_zero() -> None:
    ends = {("t", 0): 10, ("t", 1): 7, ("t", 2): 0}
    assert partition_lag({("t", 0): 10}, ends) == {("t", 0): 0, ("t", 1): 7, ("t", 2): 0}
    assert partition_lag({("t", 0): 4, ("t", 1): 9}, ends) == {
        ("t", 0): 6,
        ("t", 1): 0,
        ("t", 2): 0,
    }


def _wait(what: str, done: Callable[[], bool], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _caught_up(settings: Settings, topic: str) -> Callable[[], bool]:
    admin = admin_client(settings)

    def check() -> bool:
        from confluent_kafka import TopicPartition

        parts = admin.list_topics(topic, timeout=10).topics[topic].partitions
        ends = end_offsets(admin, [TopicPartition(topic, p) for p in parts])
        return all(
            all(stored_offsets(settings, n).get(tp, 0) >= end for tp, end in ends.items())
            for n in GROUP
        )

    return check


@pytest.mark.integration
def test_a_live_projector_reads_a_partition_added_while_it_runs(
    env: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings = env.with_overrides(projection_partition_check_seconds=0.5)
    topic = settings.topic(Topic.ORDERS)
    before = generate(21, 600)
    produce(settings, before)

    stop = threading.Event()
    failures: list[BaseException] = []

    def run() -> None:
        try:
            run_group(settings, [PROJECTIONS[n] for n in GROUP], stop)
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    worker = threading.Thread(target=run, name="projector-under-test", daemon=True)
    worker.start()
    try:
        _wait("the projector to catch up", _caught_up(settings, topic))
        admin = admin_client(settings)
        old = len(admin.list_topics(topic, timeout=10).topics[topic].partitions)
        for fut in admin.create_partitions([NewPartitions(topic, old + 1)]).values():
            fut.result()
        _wait(
            "the broker to list the new partition",
            lambda: len(admin.list_topics(topic, timeout=10).topics[topic].partitions) > old,
        )
        # Whole order flows of their own ids, all on the new partition, so the fold
        # does not depend on how partitions interleave.
        after = [e for e in generate(22, 400, namespace="added") if e.topic == Topic.ORDERS]
        producer = Producer(producer_config(settings))
        for ev in after:
            key, value, headers = encode(ev)
            producer.produce(topic, value, key, partition=old, headers=headers)
        assert producer.flush(30) == 0
        new_fills = {str(e.event_id) for e in after if e.event_type == "Fill"}
        assert new_fills

        # Status, fail closed: a projection that has never read the new partition
        # counts every record on it as lag.
        lag = status_lag(settings)
        assert f"{topic}[{old}]" in lag["positions"]["unread_partitions"]
        # orders.lifecycle is keyed by account: with a partition added, an account's
        # events before and after may lie on two partitions, read in no fixed order. The
        # projections of the topic are DEGRADED (with the reason) and the CLI refuses to
        # rebuild them; the live projector still reads the new partition (its lag counts).
        for name in GROUP:
            assert lag[name]["degraded"] is True
            assert lag[name]["partitions_changed"] == (
                f"{topic} has {old + 1} partitions, declared {old}"
            )
        _wait(
            "the projector's ERROR naming the changed topic",
            lambda: any(
                r.levelno == logging.ERROR and f"{topic} has {old + 1} partitions" in r.getMessage()
                for r in caplog.records
            ),
        )
        why = partitions_changed(settings, GROUP)
        assert why is not None and why.startswith("rebuild refused: ") and topic in why
        assert lag["positions"]["partitions"] > old
        assert lag["positions"]["lag"] >= len(after)

        _wait(
            "the new partition's records in the projections (no restart)",
            lambda: all(stored_offsets(settings, n).get((topic, old)) == len(after) for n in GROUP),
        )
        assert not failures
        with psycopg.connect(settings.dsn) as conn:
            got = {
                r[0]
                for r in conn.execute(
                    "SELECT event_id::text FROM proj_fills.fills WHERE event_id = ANY(%s::uuid[])",
                    (sorted(new_fills),),
                )
            }
        assert got == new_fills
        health: dict[str, dict[str, Any]] = _projection_health(settings.dsn)
        _add_projection_lag(settings, health)
        for name in GROUP:
            assert health[name]["lag"] == 0, health[name]
            assert health[name]["degraded"] is True, health[name]
            assert health[name]["partitions"] == lag[name]["partitions"]
            assert health[name]["unread_partitions"] == []
    finally:
        stop.set()
        worker.join(30)
    assert not worker.is_alive()

    with psycopg.connect(settings.dsn) as conn:
        live = {n: checksum(conn, PROJECTIONS[n]) for n in GROUP}
    # The library still rebuilds (the CLI refuses, above): here the new partition holds
    # whole order flows of their own, so this log's fold does not depend on the order.
    rebuilt = rebuild_many(settings, [PROJECTIONS[n] for n in GROUP], swap=False)
    for r in rebuilt:
        assert (r.checksum, r.counts) == live[r.name], r.name
        assert sum(r.counts.values()) > 0


def test_a_fresh_live_projector_does_not_replay_a_grown_topic(
    env: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """A live projection with nothing stored from a grown topic would replay it from 0,
    old and new partitions interleaved: the rebuild the CLI refuses. Before: it replayed
    (and showed DEGRADED); now its group holds and says why, applying nothing."""
    topic = env.topic(Topic.ORDERS)
    produce(env, generate(23, 200))
    admin = admin_client(env)
    old = len(admin.list_topics(topic, timeout=10).topics[topic].partitions)
    admin.create_partitions([NewPartitions(topic, old + 1)])[topic].result(30)
    stop = threading.Event()
    worker = threading.Thread(
        target=run_group, args=(env, [PROJECTIONS[n] for n in GROUP], stop), daemon=True
    )
    worker.start()
    try:
        _wait(
            "the group's ERROR saying it holds",
            lambda: any(
                r.levelno == logging.ERROR
                and f"holds: {topic} has {old + 1} partitions, declared {old}" in r.getMessage()
                and "nothing of fills, orders applied" in r.getMessage()
                for r in caplog.records
            ),
        )
        time.sleep(1.0)  # a replay would have stored offsets by now
        assert stored_offsets(env, "orders") == {} and stored_offsets(env, "fills") == {}
    finally:
        stop.set()
        worker.join(30)
    assert not worker.is_alive()


def test_live_projectors_look_for_added_partitions_and_rebuilds_do_not() -> None:
    settings = Settings(topic_prefix="t.")
    assert 0 < settings.projection_partition_check_seconds <= 10
    projection = PROJECTIONS["fills"]
    assert Projector(settings, projection).partition_check_seconds == 5.0
    tuned = settings.with_overrides(projection_partition_check_seconds=0.5)
    assert Projector(tuned, projection).partition_check_seconds == 0.5
    # A rebuild reads up to the watermarks of the partitions it saw at its start; a
    # resync mid-build would re-read from its (still empty) build offsets.
    assert Projector(tuned, projection, replay=True).partition_check_seconds == 0
