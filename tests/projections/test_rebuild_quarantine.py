"""A rebuild's swap makes the projection's quarantine exactly what the rebuild refused
(real broker and database): entries whose cause is gone do not outlive it."""

from __future__ import annotations

import psycopg
import pytest
from confluent_kafka import Producer

from deploy.kafka import producer_config
from deploy.settings import Settings
from projections.core import PROJECTIONS
from projections.projector import Projector
from projections.rebuild import rebuild, rebuild_parallel
from projections.synthetic import generate
from schemas.topics import Topic
from tests.projections.helpers import produce

pytestmark = pytest.mark.integration

QUARANTINE = (
    'SELECT projection, topic, partition, "offset", error, raw_value FROM projection_quarantine '
    "ORDER BY 1, 2, 3, 4"
)


@pytest.mark.parametrize("path", ["split", "one-consumer", "no-bulk", "parallel"])
def test_rebuild_replaces_the_projections_quarantine(env: Settings, path: str) -> None:
    """An entry the rebuild does not produce (here a stale one: its cause since fixed) is
    gone after the swap, the real refusals are kept, other projections' entries are
    untouched, and a live projector after the swap quarantines what it refuses as before."""
    events = generate(43, 1200)
    produce(env, events[:1000])
    producer = Producer(producer_config(env))
    producer.produce(env.topic(Topic.ORDERS), b"\x00not json", b"k")  # refused
    assert producer.flush(30) == 0
    produce(env, events[1000:])
    orders = PROJECTIONS["orders"]
    with Projector(env, orders) as proj:
        proj.catch_up()
    stale = [
        # An offset the rebuild folds (or never reads): its entry is stale.
        ("orders", env.topic(Topic.ORDERS), 0, 0, "an error a newer version understands"),
        # Another projection's entry: not the orders rebuild's to touch.
        ("fills", env.topic(Topic.ORDERS), 0, 0, "not orders"),
    ]
    with psycopg.connect(env.dsn) as conn:
        live_bad = conn.execute(QUARANTINE).fetchall()
        assert [(r[0], r[5]) for r in live_bad] == [("orders", b"\x00not json")]
        conn.execute("DELETE FROM projection_quarantine")  # replaced by the stale ones...
        for row in stale:
            conn.execute(
                "INSERT INTO projection_quarantine "
                '(projection, topic, partition, "offset", error) VALUES (%s, %s, %s, %s, %s)',
                row,
            )
        conn.execute(  # ...and the real one, as the live projector wrote it
            "INSERT INTO projection_quarantine "
            '(projection, topic, partition, "offset", error, raw_value) '
            "VALUES (%s, %s, %s, %s, %s, %s)",
            live_bad[0],
        )

    if path == "parallel":
        rebuild_parallel(env, [orders])
    else:
        rebuild(env, orders, split=path == "split", bulk=path != "no-bulk")

    fills = [("fills", *stale[1][1:], None)]
    with psycopg.connect(env.dsn) as conn:
        got = conn.execute(QUARANTINE).fetchall()
        assert got == sorted(fills + live_bad)  # the stale orders entry is gone
        left = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_name = '_quarantine' OR table_schema LIKE '%%\\_\\_rebuild'"
        ).fetchall()
        assert left == []

    # The live projector resumes from the rebuild's offsets and refuses what comes next.
    producer.produce(env.topic(Topic.ORDERS), b"\x00again", b"k")
    assert producer.flush(30) == 0
    with Projector(env, orders) as proj:
        proj.catch_up()
    with psycopg.connect(env.dsn) as conn:
        got = conn.execute(QUARANTINE).fetchall()
    assert [r[5] for r in got if r[0] == "orders"] == [b"\x00not json", b"\x00again"]
    assert [r for r in got if r[0] == "fills"] == fills
