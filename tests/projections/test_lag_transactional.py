"""`tradetape status` lag behind transactional producers: a commit marker (or an aborted
transaction) after the last applied record is not a record behind, so a caught-up
projection shows lag 0; committed records not yet applied are counted exactly."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import psycopg
import pytest
from confluent_kafka import Producer

from deploy.kafka import producer_config
from deploy.settings import Settings
from projections.core import PROJECTIONS
from projections.lag import status_lag
from projections.projector import Projector
from projections.synthetic import generate
from schemas import encode
from schemas.topics import Topic

pytestmark = pytest.mark.integration


def _txn(prod: Producer, settings: Settings, events: Sequence[Any], *, commit: bool) -> None:
    prod.begin_transaction()
    for e in events:
        k, v, h = encode(e)
        prod.produce(settings.topic(Topic.ORDERS), v, k, headers=h)
    if commit:
        prod.commit_transaction(30)
    else:
        prod.flush(30)
        prod.abort_transaction(30)


def _stored(settings: Settings) -> dict[tuple[str, int], int]:
    with psycopg.connect(settings.dsn) as conn:
        rows = conn.execute(
            "SELECT topic, partition, next_offset FROM projection_offsets "
            "WHERE projection = 'fills'"
        ).fetchall()
    return {(t, p): o for t, p, o in rows}


def test_lag_is_zero_behind_commit_markers_and_counts_committed_records(env: Settings) -> None:
    events = [e for e in generate(1, 200) if e.topic == Topic.ORDERS]
    first, aborted, later = events[:20], events[20:30], events[30:45]
    prod = Producer(producer_config(env, transactional_id=f"{env.topic_prefix}lag"))
    prod.init_transactions(30)
    _txn(prod, env, first, commit=True)
    _txn(prod, env, aborted, commit=False)
    with Projector(env, PROJECTIONS["fills"]) as proj:
        proj.catch_up(idle_timeout=5)
        assert proj.caught_up
    lag = status_lag(env)["fills"]
    assert lag["lag"] == 0, (lag, _stored(env))
    # committed records not applied yet: exactly that many, markers not counted
    _txn(prod, env, later, commit=True)
    # commit_transaction returns once the coordinator decided; it writes the partitions'
    # markers just after, so for a moment a read_committed reader sees only some of the
    # records. The count climbs to exactly len(later), never past it (markers not counted).
    deadline = time.monotonic() + 15  # seconds, not money
    while True:
        t0 = time.monotonic()
        lags = status_lag(env)
        print(f"status_lag: {time.monotonic() - t0:.2f}s")  # not money
        assert lags["fills"]["lag"] <= len(later), lags["fills"]
        if lags["fills"]["lag"] == len(later) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert lags["fills"]["lag"] == len(later)
    # a projection never run: every committed record from offset 0, aborted ones not
    assert lags["orders"]["lag"] == len(first) + len(later)
    with Projector(env, PROJECTIONS["fills"]) as proj:
        proj.catch_up(idle_timeout=5)
    assert status_lag(env)["fills"]["lag"] == 0
    # every committed fill applied once, none of the aborted ones
    fills = {str(e.event_id) for e in first + later if e.event_type == "Fill"}
    assert fills
    with psycopg.connect(env.dsn) as conn:
        got = {r[0] for r in conn.execute("SELECT event_id::text FROM proj_fills.fills")}
    assert got == fills
