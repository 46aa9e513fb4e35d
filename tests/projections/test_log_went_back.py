"""A projection whose stored offsets the log no longer holds (the topic deleted and
created again, a log truncated, records deleted) is refused, never folded on from the
wrong place: real broker and database."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest
from confluent_kafka import KafkaException, TopicPartition

from deploy.kafka import admin_client, create_topics, end_offsets
from deploy.local.stack import _add_projection_lag, _projection_health
from deploy.settings import Settings
from projections.core import PROJECTIONS
from projections.projector import Projector
from projections.synthetic import generate
from schemas.topics import Topic
from tests.projections.helpers import produce, stored_offsets

pytestmark = pytest.mark.integration


def _recreate(settings: Settings, topic: Topic) -> None:
    """Delete the topic and create it again, empty (its offsets start at 0 again)."""
    admin = admin_client(settings)
    name = settings.topic(topic)
    admin.delete_topics([name], operation_timeout=30)[name].result(30)
    deadline = time.monotonic() + 60
    while True:  # the broker finishes a deletion after answering
        try:
            if create_topics(settings, [topic]):
                break
        except KafkaException:
            pass
        assert time.monotonic() < deadline, "the topic was not created again"
        time.sleep(0.5)
    tps = [TopicPartition(name, p) for p in range(6)]
    while True:
        try:
            if sum(end_offsets(admin, tps, timeout=5).values()) == 0:
                return
        except KafkaException:
            pass
        assert time.monotonic() < deadline, "the new topic did not answer"
        time.sleep(0.5)


def _fill_ids(settings: Settings) -> set[str]:
    with psycopg.connect(settings.dsn) as conn:
        return {r[0] for r in conn.execute("SELECT event_id::text FROM proj_fills.fills")}


def _folded(env: Settings, events: list[Any]) -> dict[tuple[str, int], int]:
    """`events` produced and folded by the fills projector: the offsets it stored."""
    produce(env, events)
    with Projector(env, PROJECTIONS["fills"]) as proj:
        proj.catch_up()
        assert proj.caught_up
    stored = stored_offsets(env, "fills")
    assert sum(stored.values()) == len(events)
    return stored


def _fills_health(env: Settings) -> dict[str, Any]:
    """The fills projection's health as `tradetape status` shows it (its lag included)."""
    health: dict[str, dict[str, Any]] = _projection_health(env.dsn)
    _add_projection_lag(env, health)
    return health["fills"]


def _rebuilt_and_run_on(env: Settings) -> None:
    """`tradetape rebuild fills` reads the log there is now from 0 (and records the topic
    ids it read); the projector then runs on from it, no longer degraded."""
    from projections.rebuild import rebuild

    rebuild(env, PROJECTIONS["fills"])
    with Projector(env, PROJECTIONS["fills"]) as proj:
        proj.catch_up(idle_timeout=5)
        assert proj.caught_up
    fills = _fills_health(env)
    assert "offsets_out_of_range" not in fills, fills


def test_offsets_past_a_recreated_topics_end_are_refused(env: Settings) -> None:
    """Before: the projector was assigned at its stored offsets, past the new log's end;
    the consumer reset to the earliest offset, every record below the stored offset was
    skipped as already applied, and catch_up said caught up: the new topic's fills were
    never folded, with no error, no quarantine and status `ok`, lag 0."""
    topic = env.topic(Topic.ORDERS)
    events = [e for e in generate(31, 1200) if e.topic == Topic.ORDERS]
    before, after = events[:500], events[500:620]
    stored = _folded(env, before)

    _recreate(env, Topic.ORDERS)
    produce(env, after)
    new_fills = {str(e.event_id) for e in after if e.event_type == "Fill"}
    assert new_fills
    ends = end_offsets(admin_client(env), [TopicPartition(topic, p) for p in range(6)])
    behind = sorted(tp for tp, end in ends.items() if stored.get(tp, 0) > end)
    assert behind, (stored, ends)  # the new log is shorter on some partition

    with pytest.raises(RuntimeError, match="tradetape rebuild fills") as refused:
        with Projector(env, PROJECTIONS["fills"]) as proj:
            proj.catch_up(idle_timeout=5)
    for t, p in behind:
        assert f"{t}[{p}]: stored {stored[(t, p)]}" in str(refused.value)
    assert stored_offsets(env, "fills") == stored  # nothing applied from the wrong place

    fills = _fills_health(env)
    assert fills["degraded"] is True, fills
    assert f"{topic}[{behind[0][1]}]" in fills["offsets_out_of_range"]

    # A rebuild reads the log there is now from 0, and the projection runs again.
    _rebuilt_and_run_on(env)
    assert _fill_ids(env) == new_fills


def test_a_running_projector_stops_when_its_topic_is_recreated(env: Settings) -> None:
    """Before: the running consumer's fetch past the new log's end was reset to the
    earliest offset and the records it then read were skipped as already applied."""
    events = [e for e in generate(32, 1200) if e.topic == Topic.ORDERS]
    before, after = events[:500], events[500:620]
    produce(env, before)
    proj = Projector(env, PROJECTIONS["fills"], batch_size=100)
    proj.open()
    try:
        proj.catch_up()
        stored = stored_offsets(env, "fills")
        _recreate(env, Topic.ORDERS)
        produce(env, after)
        deadline = time.monotonic() + 60
        with pytest.raises(RuntimeError, match="tradetape rebuild fills"):
            while time.monotonic() < deadline:  # a bound on a wait, not a speed claim
                proj.step(0.2)
    finally:
        proj.close()
    assert stored_offsets(env, "fills") == stored
    assert not _fill_ids(env) & {str(e.event_id) for e in after}


def _produce_past(
    settings: Settings, events: list[Any], stored: dict[tuple[str, int], int]
) -> None:
    """Produce `events` until every partition's end is at or past its stored offset: the
    new log is in range by offsets alone."""
    admin = admin_client(settings)
    name = settings.topic(Topic.ORDERS)
    tps = [TopicPartition(name, p) for p in range(6)]
    for i in range(0, len(events), 200):
        produce(settings, events[i : i + 200])
        ends = end_offsets(admin, tps)
        if all(stored.get(tp, 0) <= end for tp, end in ends.items()):
            return
    raise AssertionError(f"the new log did not grow past the stored offsets: {stored}")


def test_a_recreated_topic_grown_past_the_stored_offsets_is_refused(env: Settings) -> None:
    """The topic deleted and created again, and its new log grown past every stored
    offset: before, the projector was assigned at its stored offsets (all in range), the
    new log's records below them skipped as already applied, the old log's rows kept,
    with no error and status `ok`. Now the topic id stored with the offsets (migration
    0124) is not the topic's: refused, DEGRADED in status, until `tradetape rebuild`."""
    topic = env.topic(Topic.ORDERS)
    events = [e for e in generate(33, 3000) if e.topic == Topic.ORDERS]
    before, after = events[:150], events[150:]
    stored = _folded(env, before)

    _recreate(env, Topic.ORDERS)
    _produce_past(env, after, stored)

    with pytest.raises(RuntimeError, match="tradetape rebuild fills") as refused:
        with Projector(env, PROJECTIONS["fills"]) as proj:
            proj.catch_up(idle_timeout=5)
    assert "created again" in str(refused.value)
    assert f"{topic}[" in str(refused.value)
    assert stored_offsets(env, "fills") == stored  # nothing applied from the wrong place

    fills = _fills_health(env)
    assert fills["degraded"] is True, fills
    assert "created again" in fills["offsets_out_of_range"]
    _rebuilt_and_run_on(env)


def test_offsets_stored_before_topic_ids_take_the_topics_id_on_first_sight(env: Settings) -> None:
    """A row stored before migration 0124 (no topic id) is given the topic's id of now by
    the projector's next (re)assignment, and a recreation after that is caught."""
    events = [e for e in generate(34, 3000) if e.topic == Topic.ORDERS]
    produce(env, events[:150])
    with Projector(env, PROJECTIONS["fills"]) as proj:
        proj.catch_up()
    with psycopg.connect(env.dsn) as conn:
        conn.execute("UPDATE projection_offsets SET topic_id = NULL")
    with Projector(env, PROJECTIONS["fills"]) as proj:
        proj.catch_up(idle_timeout=1)
        assert proj.caught_up
    with psycopg.connect(env.dsn) as conn:
        ids = {r[0] for r in conn.execute("SELECT topic_id FROM projection_offsets")}
    assert len(ids) == 1 and None not in ids, ids
    stored = stored_offsets(env, "fills")
    _recreate(env, Topic.ORDERS)
    _produce_past(env, events[150:], stored)
    with pytest.raises(RuntimeError, match="created again"):
        with Projector(env, PROJECTIONS["fills"]) as proj:
            proj.catch_up(idle_timeout=5)


def test_a_running_projectors_partition_check_sees_its_topic_created_again(env: Settings) -> None:
    """A live projector looks at its topics' ids at each partition check: a topic created
    again under it whose new log has grown past its position (no out-of-range fetch to
    refuse) is refused there. Before, nothing looked."""
    events = [e for e in generate(35, 3000) if e.topic == Topic.ORDERS]
    produce(env, events[:150])
    proj = Projector(env, PROJECTIONS["fills"], batch_size=100)
    proj.open()
    try:
        proj.catch_up()
        stored = stored_offsets(env, "fills")
        _recreate(env, Topic.ORDERS)
        _produce_past(env, events[150:], stored)
        with pytest.raises(RuntimeError, match="created again") as refused:
            proj.check_partitions(force=True)
        assert "tradetape rebuild fills" in str(refused.value)
    finally:
        proj.close()
