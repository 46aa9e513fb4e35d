"""Intent times on the real broker: the intents topic stamps LogAppendTime, the worker
bounds each intent's producer-set `occurred_at` against it and records it in the decision.

Before, a producer choosing `occurred_at` chose the time the order-rate window and the
price age were measured at: six intents sent at once, stamped 2 s apart, all passed a 2/s
limit, and an intent stamped at an hour-old price's time was approved.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)

from deploy.kafka import admin_client, create_topics
from deploy.settings import Settings
from engine import auth
from schemas import Envelope, new_event
from schemas.events import CancelIntent
from schemas.topics import Topic
from tests.engine.helpers import intent, produce, quote, running_worker, wait_for, world

pytestmark = pytest.mark.integration


def _timestamp_type(settings: Settings, expect: str) -> str:
    """The intents topic's timestamp type once it is `expect` (or after 30 s): a topic just
    created, or a config just altered, reaches the broker's answers a moment later."""
    name = settings.topic(Topic.INTENTS)
    res = ConfigResource(ResourceType.TOPIC, name)
    admin = admin_client(settings)  # kept alive until the futures resolve
    deadline = time.monotonic() + 30
    value = ""
    while time.monotonic() < deadline:
        try:
            found = admin.describe_configs([res])[res].result()
            value = str(found["message.timestamp.type"].value)
        except KafkaException:
            value = ""
        if value == expect:
            break
        time.sleep(0.3)
    return value


def test_the_intents_topic_uses_the_brokers_time_even_if_created_before(env: Settings) -> None:
    assert _timestamp_type(env, "LogAppendTime") == "LogAppendTime"
    name = env.topic(Topic.INTENTS)
    old = ConfigResource(
        ResourceType.TOPIC,
        name,
        incremental_configs=[
            ConfigEntry(
                "message.timestamp.type",
                "CreateTime",
                incremental_operation=AlterConfigOpType.SET,
            )
        ],
    )
    admin = admin_client(env)
    for fut in admin.incremental_alter_configs([old]).values():
        fut.result()
    assert _timestamp_type(env, "CreateTime") == "CreateTime"  # a stack from before
    create_topics(env)  # what `tradetape up` / the local stack run
    assert _timestamp_type(env, "LogAppendTime") == "LogAppendTime"


def _decisions(events: list[Envelope[Any]]) -> list[Any]:
    return [e.payload for e in events if e.event_type in ("RiskDecision", "IntentRejected")]


def test_the_worker_bounds_intent_time_by_the_brokers(env: Settings) -> None:
    with running_worker(env):
        key = world(env, ["ACC1"])
        produce(env, [quote()])
        honest = intent(key, "ACC1", "honest")
        ahead = intent(key, "ACC1", "ahead")
        ahead = new_event(
            ahead.payload, producer="strat1", occurred_at=datetime.now(UTC) + timedelta(minutes=1)
        )
        signed = auth.sign(
            ahead.payload.model_copy(update={"client_order_id": "behind", "signature": None}), key
        )
        behind = new_event(
            signed, producer="strat1", occurred_at=datetime.now(UTC) - timedelta(minutes=1)
        )
        sent = datetime.now(UTC)
        produce(env, [honest, ahead, behind])
        decs = wait_for(env, Topic.DECISIONS, lambda ev: len(_decisions(ev)) >= 3)
    by_id = {d.client_order_id: d for d in _decisions(decs)}
    assert by_id["honest"].outcome == "APPROVED"
    for coid in ("ahead", "behind"):
        assert by_id[coid].outcome == "REJECTED"
        assert by_id[coid].reason_codes == ("CLOCK_SKEW",)
    for d in by_id.values():  # the broker's time, recorded for the fold
        assert d.received_at is not None
        assert abs(d.received_at - sent) < timedelta(seconds=30)


def _cancel(key: Any, coid: str, target: str, at: datetime) -> Envelope[Any]:
    payload = CancelIntent(
        producer_id="strat1",
        strategy_id="s",
        account="ACC1",
        client_order_id=coid,
        target_client_order_id=target,
    )
    return new_event(auth.sign(payload, key), producer="strat1", occurred_at=at)


def test_an_orders_events_are_stamped_at_the_brokers_time_not_the_producers(
    env: Settings,
) -> None:
    """A cancel intent's `occurred_at` was not bounded, and its `OrderCanceled` carried it:
    a spoofer stamping its cancels early (or late) moved them in surveillance's event
    time. Now an intent's order events lie at its append time (session 23: at most
    `max_intent_ahead_ms`, 1 s, after it for a stamp ahead; session 24: at it, unless the
    limits' `order_events_ahead_ms` allow more); its decision keeps the producer's stamp.
    A cancel is not refused for its clock (it only takes risk away)."""
    with running_worker(env):
        key = world(env, ["ACC1"])
        produce(env, [quote()])
        early, late = (
            intent(key, "ACC1", "early", limit="59000"),
            intent(key, "ACC1", "late", limit="59000"),
        )
        early = new_event(
            early.payload, producer="strat1", occurred_at=datetime.now(UTC) - timedelta(seconds=3)
        )  # backdated within FRESHNESS's 5 s
        produce(env, [early, late])
        wait_for(
            env, Topic.ORDERS, lambda ev: sum(e.event_type == "OrderAccepted" for e in ev) >= 2
        )
        now = datetime.now(UTC)
        produce(
            env,
            [
                _cancel(key, "x-early", "early", now - timedelta(minutes=10)),
                _cancel(key, "x-late", "late", now + timedelta(minutes=10)),
            ],
        )
        orders = wait_for(
            env, Topic.ORDERS, lambda ev: sum(e.event_type == "OrderCanceled" for e in ev) >= 2
        )
        decs = wait_for(env, Topic.DECISIONS, lambda ev: len(_decisions(ev)) >= 4)
    decisions = {e.payload.client_order_id: e for e in decs if e.event_type == "RiskDecision"}
    assert {c: d.payload.outcome for c, d in decisions.items()} == {
        c: "APPROVED" for c in ("early", "late", "x-early", "x-late")
    }
    caused = {e.causation_id: e for e in decs}
    by_order = {
        d.payload.order_id: d for d in decisions.values() if d.payload.intent_kind == "ORDER"
    }
    assert decisions["early"].occurred_at < decisions["early"].payload.received_at - timedelta(
        seconds=2
    )  # the producer's stamp stays on the decision
    stamps = {d.payload.client_order_id: d.occurred_at for d in decisions.values()}
    seen = 0
    for e in orders:
        if e.event_type not in ("OrderSubmitted", "OrderCanceled"):
            continue
        cause = caused.get(e.causation_id)  # the intent's decision, same cause
        assert cause is not None, e
        coid, received = cause.payload.client_order_id, cause.payload.received_at
        if e.event_type == "OrderSubmitted":
            assert by_order[e.payload.order_id] is cause
        # At the append time: not 3 s, not 10 minutes before it, not 10 minutes (or, as
        # in session 23, 1 s) after it.
        assert e.occurred_at == received, (coid, e.event_type, stamps[coid])
        seen += 1
    assert seen == 4
