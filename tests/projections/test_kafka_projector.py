"""Projectors against the real broker and database: rebuild parity, quarantine, fencing."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from confluent_kafka import Producer

from deploy.kafka import producer_config
from deploy.settings import Settings
from projections.checksum import checksum
from projections.core import PROJECTIONS
from projections.projector import Projector
from projections.rebuild import rebuild
from projections.synthetic import generate
from schemas import encode
from schemas.topics import Topic
from tests.projections.helpers import produce

pytestmark = pytest.mark.integration


def _live(settings: Settings, name: str) -> tuple[str, dict[str, int]]:
    with Projector(settings, PROJECTIONS[name]) as proj:
        proj.catch_up()
        assert proj.caught_up
    with psycopg.connect(settings.dsn) as conn:
        return checksum(conn, PROJECTIONS[name])


def test_every_projection_live_equals_rebuild(env: Settings) -> None:
    events = generate(11, 2000)
    produce(env, events)
    fed = {e.topic for e in events}
    for name, projection in PROJECTIONS.items():
        live = _live(env, name)
        if fed & {t.value for t in projection.topics}:
            assert sum(live[1].values()) > 0, name
        rebuilt = rebuild(env, PROJECTIONS[name])
        assert (rebuilt.checksum, rebuilt.counts) == live, name
        with psycopg.connect(env.dsn) as conn:
            assert checksum(conn, PROJECTIONS[name]) == live, name


def test_unknown_version_is_quarantined_and_projector_carries_on(env: Settings) -> None:
    events = generate(5, 400)
    fills = [e for e in events if e.event_type == "Fill"]
    produce(env, events[:200])
    # A Fill v2 the projector does not know, and bytes that are not an event at all.
    key, value, _headers = encode(fills[0])
    body: dict[str, Any] = json.loads(value)
    body["schema_version"] = 2
    body["event_id"] = "0190a0a0-0000-7000-8000-000000000001"
    producer = Producer(producer_config(env))
    topic = env.topic(Topic.ORDERS)
    producer.produce(
        topic,
        json.dumps(body).encode(),
        key,
        headers=[("event_type", b"Fill"), ("schema_version", b"2")],
    )
    producer.produce(topic, b"\x00not json", key)
    assert producer.flush(30) == 0
    produce(env, events[200:])

    with Projector(env, PROJECTIONS["fills"]) as proj:
        total = proj.catch_up()
    assert total.quarantined == 2
    with psycopg.connect(env.dsn) as conn:
        rows = conn.execute(
            "SELECT topic, event_type, schema_version, error, raw_value IS NOT NULL "
            "FROM projection_quarantine WHERE projection = 'fills' ORDER BY \"offset\""
        ).fetchall()
        n_fills = conn.execute("SELECT count(*) FROM proj_fills.fills").fetchone()
    assert [(r[0], r[1], r[2], r[4]) for r in rows] == [
        (topic, "Fill", 2, True),
        (topic, None, None, True),
    ]
    assert "unknown event type 'Fill' v2" in rows[0][3]
    assert "not JSON" in rows[1][3]
    # It carried on: every valid fill, before and after the bad records, is projected.
    assert n_fills is not None and n_fills[0] == len(fills)

    from deploy.local.stack import _projection_health

    health = _projection_health(env.dsn)
    assert health["fills"]["degraded"] is True
    assert health["fills"]["quarantined"] == 2


def test_live_projector_resumes_after_rebuild_swap(env: Settings) -> None:
    events = generate(8, 1200)
    produce(env, events[:600])
    proj = Projector(env, PROJECTIONS["orders"], batch_size=100)
    proj.open()
    try:
        proj.catch_up()
        produce(env, events[600:])
        # A rebuild swaps in a schema that already holds everything; the live projector
        # was fenced off by the moved offsets and resumes from them without re-applying.
        rebuilt = rebuild(env, PROJECTIONS["orders"])
        proj.catch_up()
    finally:
        proj.close()
    with psycopg.connect(env.dsn) as conn:
        assert checksum(conn, PROJECTIONS["orders"]) == (rebuilt.checksum, rebuilt.counts)
        n = conn.execute("SELECT count(*) FROM proj_orders.order_events").fetchone()
    expected = sum(1 for e in events if e.topic == Topic.ORDERS)
    assert n is not None and n[0] == expected
