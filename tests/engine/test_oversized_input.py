"""An input record near the broker's size limit: its dead letter must still fit, or the
worker's transaction fails on every retry of the same record (a poison pill)."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import Producer

from deploy.kafka import producer_config
from deploy.settings import Settings
from schemas import Envelope
from schemas.topics import Topic
from tests.engine.helpers import intent, produce, quote, running_worker, wait_for, world

pytestmark = pytest.mark.integration

BIG = 950_000
"""Under the producer's default `message.max.bytes` (1,000,000); its base64 alone is
~1.27 MB, over that limit."""


def _decided(events: list[Envelope[Any]], coid: str) -> bool:
    return any(
        e.event_type in ("RiskDecision", "IntentRejected") and e.payload.client_order_id == coid
        for e in events
    )


def test_an_oversized_garbage_intent_is_dead_lettered_and_the_worker_goes_on(
    env: Settings,
) -> None:
    with running_worker(env) as worker:
        key = world(env, ["ACC1"])
        produce(env, [quote()])
        p = Producer(producer_config(env))
        p.produce(env.topic(Topic.INTENTS), key=b"ACC1", value=b"{" + b"x" * (BIG - 1))
        assert p.flush(30) == 0
        produce(env, [intent(key, "ACC1", "after-big")])
        decisions = wait_for(env, Topic.DECISIONS, lambda ev: _decided(ev, "after-big"), 60)
        dls = wait_for(env, Topic.DEADLETTER, lambda ev: len(ev) >= 1)
        assert worker.stats["dead_letters"] == 1
    assert _decided(decisions, "after-big"), "the worker stopped at the oversized record"
    (dl,) = dls
    assert dl.payload.source_topic == env.topic(Topic.INTENTS)
    assert dl.payload.error_type == "MalformedEventError"
