"""Shared helpers: turn envelopes into records, produce them, read projections and their
stored offsets."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import psycopg
from confluent_kafka import Producer

from deploy.kafka import producer_config
from deploy.settings import Settings
from projections.store import RawRecord, load_offsets
from schemas import Envelope, encode
from schemas.topics import TOPICS, Topic


def as_records(settings: Settings, events: Sequence[Envelope[Any]]) -> list[RawRecord]:
    """Records as a broker would number them: per (topic, partition) offsets from 0."""
    next_offset: dict[tuple[str, int], int] = {}
    out = []
    for ev in events:
        key, value, headers = encode(ev)
        topic = settings.topic(Topic(ev.topic))
        partition = zlib.crc32(key) % TOPICS[Topic(ev.topic)].partitions
        off = next_offset.get((topic, partition), 0)
        next_offset[(topic, partition)] = off + 1
        out.append(RawRecord(topic, partition, off, value, headers))
    return out


def produce(settings: Settings, events: Sequence[Envelope[Any]]) -> None:
    producer = Producer(producer_config(settings))
    for i, ev in enumerate(events):
        key, value, headers = encode(ev)
        producer.produce(settings.topic(Topic(ev.topic)), value, key, headers=headers)
        if i % 10_000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0


def stored_offsets(settings: Settings, name: str) -> dict[tuple[str, int], int]:
    """Projection `name`'s stored offsets (the next to read) by (topic, partition)."""
    with psycopg.connect(settings.dsn) as conn:
        return load_offsets(conn, name)
