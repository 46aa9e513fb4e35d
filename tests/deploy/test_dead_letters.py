"""Garbage on a real topic becomes a typed error and a dead-letter record, not a crash."""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from deploy.deadletter import decode_or_dead_letter
from deploy.kafka import consumer_config, producer_config
from deploy.settings import Settings
from schemas import encode, new_event
from schemas.events import KycVerified
from schemas.topics import Topic

pytestmark = pytest.mark.integration


def test_malformed_records_on_a_topic_are_dead_lettered(env: Settings) -> None:
    topic = env.topic(Topic.ACCOUNTS)
    good = new_event(KycVerified(account="A1", verified_by="t"), producer="t")
    garbage = [b"\x00\x01not json", b'{"event_type":"Nope","schema_version":1}', b"[]"]
    producer = Producer(producer_config(env))
    for raw in garbage:
        producer.produce(topic, key=b"A1", value=raw)
    k, v, h = encode(good)
    producer.produce(topic, key=k, value=v, headers=h)
    producer.flush(10)

    consumer = Consumer(consumer_config(env, group_id=f"dl-{uuid.uuid4().hex}"))
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    events: list[Any] = []
    letters: list[Any] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(events) + len(letters) < 4:
        msg = consumer.poll(0.5)
        if msg is None or msg.error():
            continue
        ev, dl = decode_or_dead_letter(msg, stage="test", producer="test")
        (events if ev else letters).append(ev or dl)
    consumer.close()

    assert [e.event_id for e in events] == [good.event_id]
    assert len(letters) == 3
    originals = sorted(base64.b64decode(d.payload.original_value_b64) for d in letters)
    assert originals == sorted(garbage)
    for d in letters:
        assert d.payload.source_topic == topic and d.payload.source_offset is not None
        assert d.payload.error_type in {"MalformedEventError", "UnknownEventTypeError"}
        assert d.payload.original_key_b64 == base64.b64encode(b"A1").decode()
