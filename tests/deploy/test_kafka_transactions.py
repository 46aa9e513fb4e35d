"""The transport guarantees everything else relies on, proven on the real broker."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from deploy.kafka import consumer_config, producer_config
from deploy.settings import Settings
from schemas import Envelope, decode, encode, new_event
from schemas.events import KycVerified
from schemas.topics import Topic

pytestmark = pytest.mark.integration


def _produce(settings: Settings, events: list[Envelope[KycVerified]], *, commit: bool) -> None:
    producer = Producer(producer_config(settings, transactional_id=f"test-{uuid.uuid4().hex}"))
    producer.init_transactions(30)
    producer.begin_transaction()
    for ev in events:
        key, value, headers = encode(ev)
        producer.produce(settings.topic(Topic.ACCOUNTS), key=key, value=value, headers=headers)
    producer.flush(30)
    if commit:
        producer.commit_transaction(30)
    else:
        producer.abort_transaction(30)


def _read_all(
    settings: Settings, expect: int, timeout: float = 20.0
) -> list[tuple[int | None, Envelope[Any]]]:
    consumer = Consumer(consumer_config(settings, group_id=f"reader-{uuid.uuid4().hex}"))
    topic = settings.topic(Topic.ACCOUNTS)
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    out: list[tuple[int | None, Envelope[Any]]] = []
    deadline = time.monotonic() + timeout
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is None:
            if len(out) >= expect and time.monotonic() - quiet_since > 1.5:
                break
            continue
        if msg.error():
            continue
        quiet_since = time.monotonic()
        out.append(
            (
                msg.partition(),
                decode(
                    msg.value(),
                    msg.headers(),
                    topic=msg.topic(),
                    partition=msg.partition(),
                    offset=msg.offset(),
                ),
            )
        )
    consumer.close()
    return out


def _kyc(account: str, ref: str) -> Envelope[KycVerified]:
    return new_event(
        KycVerified(account=account, verified_by="test", reference=ref), producer="test"
    )


def test_committed_visible_aborted_never_and_per_key_order(env: Settings) -> None:
    accounts = [f"ACC{i}" for i in range(8)]
    committed = [_kyc(a, f"{a}-{n}") for n in range(25) for a in accounts]
    aborted = [_kyc(a, f"{a}-aborted") for a in accounts]
    _produce(env, committed[:100], commit=True)
    _produce(env, aborted, commit=False)
    _produce(env, committed[100:], commit=True)

    seen = _read_all(env, expect=len(committed))
    ids = [str(ev.event_id) for _p, ev in seen]
    assert sorted(ids) == sorted(str(e.event_id) for e in committed)
    assert not {str(e.event_id) for e in aborted} & set(ids)
    for account in accounts:
        refs = [ev.payload.reference for _p, ev in seen if ev.key == account]
        assert refs == [f"{account}-{n}" for n in range(25)], "per-key order was not kept"
        assert len({p for p, ev in seen if ev.key == account}) == 1, "one key, one partition"


def test_decimal_and_headers_survive_the_broker(env: Settings) -> None:
    from schemas.events import DepositReceived

    ev = new_event(
        DepositReceived(
            deposit_id="d1", account="A1", asset="USDC", amount=Decimal("0.000000000000000001")
        ),
        producer="test",
    )
    producer = Producer(producer_config(env))
    key, value, headers = encode(ev)
    producer.produce(env.topic(Topic.TRANSFERS), key=key, value=value, headers=headers)
    producer.flush(10)
    consumer = Consumer(consumer_config(env, group_id=f"r-{uuid.uuid4().hex}"))
    topic = env.topic(Topic.TRANSFERS)
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    deadline = time.monotonic() + 15
    msg = None
    while time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            break
    consumer.close()
    assert msg is not None
    hdr = dict(msg.headers() or [])
    assert hdr["event_type"] == b"DepositReceived" and hdr["schema_version"] == b"1"
    traceparent = hdr["traceparent"]
    assert isinstance(traceparent, bytes)
    assert traceparent.decode().split("-")[1] == ev.correlation_id.hex
    back = decode(msg.value(), msg.headers())
    assert back.payload.amount == Decimal("0.000000000000000001")
