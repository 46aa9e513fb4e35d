"""A partition added to a reference topic while a worker runs is read without a restart.

The worker assigns its reference consumer by hand, so without the periodic check a kill
switch landing on a new `risk.config` partition would never reach a running worker, and
it would go on approving orders: the fail-open case this test guards.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    NewPartitions,
)

from deploy.kafka import producer_config
from deploy.settings import Settings
from engine.processor import ENGINE_PRODUCER
from schemas import Envelope, encode, new_event
from schemas.events import KillSwitchEngaged
from schemas.topics import Topic
from tests.engine.helpers import (
    intent,
    produce,
    quote,
    running_worker,
    wait_for,
    world,
)

pytestmark = pytest.mark.integration


def _decision(events: list[Envelope[Any]], coid: str) -> Any:
    for e in events:
        if e.event_type == "RiskDecision" and e.payload.client_order_id == coid:
            return e.payload
    return None


def test_a_kill_switch_on_an_added_risk_config_partition_stops_trading(env: Settings) -> None:
    settings = env.model_copy(update={"engine_partition_check_seconds": 0.5})
    name = settings.topic(Topic.RISK_CONFIG)
    admin_client = AdminClient({"bootstrap.servers": settings.bootstrap})
    with running_worker(settings) as worker:
        key = world(settings, ["ACC1"])
        produce(settings, [quote()])
        produce(settings, [intent(key, "ACC1", "before")])
        decs = wait_for(settings, Topic.DECISIONS, lambda ev: _decision(ev, "before") is not None)
        assert _decision(decs, "before").outcome == "APPROVED"

        before = len(admin_client.list_topics(name, timeout=10).topics[name].partitions)
        admin_client.create_partitions([NewPartitions(name, before + 1)])[name].result(30)
        # As the engine writes an accepted kill switch (risk.config takes only the engine's
        # facts: engine.replay.Intake).
        k, v, h = encode(
            new_event(
                KillSwitchEngaged(scope="*", engaged_by="admin", reason="added partition"),
                producer=ENGINE_PRODUCER,
            )
        )
        p = Producer(producer_config(settings))
        p.produce(name, key=k, value=v, headers=h, partition=before)  # the new partition
        assert p.flush(30) == 0

        deadline = time.monotonic() + 60
        while "*" not in worker.state.kill_switches and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "*" in worker.state.kill_switches, "the worker never read the added partition"
        assert worker.read_in_full[name] == before + 1

        produce(settings, [quote()])
        produce(settings, [intent(key, "ACC1", "after")])
        decs = wait_for(settings, Topic.DECISIONS, lambda ev: _decision(ev, "after") is not None)
        # risk.config has a declared partition count like every keyed topic: the kill switch
        # engaged and released for one scope on two partitions would be folded in no fixed
        # order by a rebuild. So the worker reads the added partition (the kill switch on
        # it counts) and also decides every intent as STALE_STATE until the topic is
        # migrated (docs/operations.md, Adding partitions).
        assert name in worker.topology
    after = _decision(decs, "after")
    assert after.outcome == "REJECTED" and "KILL_SWITCH_ENGAGED" in after.reason_codes
    assert "STALE_STATE" in after.reason_codes
