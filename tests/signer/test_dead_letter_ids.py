"""A signer participant's dead letter of a record it cannot read is the same event each
time that record is read: its id and time come from the record (topic, partition, offset,
its timestamp on the log) and the participant. Before, each had a new random id and the
wall clock's time, so the dead-letter browser (one row per event id) listed the one bad
record once per delivery."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME

import signer_ffi.participant as participant
from deploy.settings import Settings
from schemas import decode_message
from schemas.topics import Topic

from .fakekafka import Broker, Record, serve_from
from .test_coordinator_loop import Network


class Logged(Record):
    def timestamp(self) -> tuple[int, int]:
        return (TIMESTAMP_LOG_APPEND_TIME, 1_767_621_600_123)


def test_a_record_read_twice_is_one_dead_letter(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings()
    broker = Broker()
    net = Network(broker, settings)
    requests = settings.topic(Topic.SIGNING_REQUESTS)
    queue: list[Any] = [Logged(requests, 5, b"k", b"\xff junk", []) for _ in range(2)]
    queue.append(Logged(requests, 6, b"k", b"\xff other junk", []))

    serve_from(monkeypatch, queue, broker.producer_class())
    stop = threading.Event()
    thread = threading.Thread(target=participant.serve, args=(settings, net.states[1], stop))
    thread.start()
    dead = settings.topic(Topic.DEADLETTER)
    for _ in range(500):
        if len(broker.records(dead)) >= 3 or not thread.is_alive():
            break
        stop.wait(0.01)
    stop.set()
    thread.join(10)
    letters = [decode_message(r) for r in broker.records(dead)]
    assert [d.payload.source_offset for d in letters] == [5, 5, 6]
    first, again, other = letters
    assert first.event_id == again.event_id and first.occurred_at == again.occurred_at
    assert first.payload == again.payload
    assert other.event_id != first.event_id
