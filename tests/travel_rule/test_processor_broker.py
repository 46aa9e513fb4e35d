"""The travel-rule processor on the real broker: a request in, exactly one answer out with
the id derived from the request, also after a restart (the state rebuilt from the log);
a garbage record dead-lettered with the reason, the processor still running."""

from __future__ import annotations

import json
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer

from deploy.kafka import consumer_config
from deploy.settings import Settings
from schemas import Envelope, MalformedEventError, decode, derive_event, new_event
from schemas.events import DeadLetter, TransferChecked, TransferRequested
from schemas.events.transfers import TransferCheckOutcome
from schemas.topics import Topic
from streams.travel_rule.processor import PRODUCER, STAGE, TravelRuleProcessor
from tests.streams.helpers import consume, produce, produce_raw
from tests.travel_rule.helpers import account_opened


def _checked(
    settings: Settings,
    want: int,
    timeout: float = 60,  # seconds, not money
) -> list[Envelope[Any]]:
    """The `TransferChecked` events on transfers.checks (where the processor writes
    them, session 27) once `want` are there (or the timeout passed)."""
    c = Consumer(consumer_config(settings, group_id=f"probe-{uuid.uuid4().hex}"))
    c.subscribe([settings.topic(Topic.TRANSFER_CHECKS)])
    out: list[Envelope[Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None:
                if len(out) >= want:
                    break
                continue
            if msg.error():
                continue
            try:
                event = decode(msg.value(), msg.headers())
            except MalformedEventError:
                continue
            if isinstance(event.payload, TransferChecked):
                out.append(event)
    finally:
        c.close()
    return out


def _run(settings: Settings) -> tuple[TravelRuleProcessor, threading.Thread]:
    processor = TravelRuleProcessor(settings)
    thread = threading.Thread(target=processor.run, daemon=True)
    thread.start()
    return processor, thread


def _stop(processor: TravelRuleProcessor, thread: threading.Thread) -> None:
    processor.stopping = True
    thread.join(60)
    assert not thread.is_alive()


def test_one_request_one_answer_and_garbage_is_dead_lettered(
    env: Settings, reference_dir: Path
) -> None:
    opened = account_opened()
    payload = json.loads((reference_dir / "ivms101/identity_payload.json").read_text())
    request = new_event(
        TransferRequested(
            transfer_id="w-1",
            account="A1",
            asset="BTC",
            amount=Decimal("2.5"),
            destination_address="14WU745djqecaJ1gmtWQGeMCFim1W5MNp3",
            ivms101=payload,
        ),
        producer="transfer-service",
    )
    produce(env, [opened, request])
    produce_raw(env, Topic.TRANSFERS, b"\x00 not an event")

    processor, thread = _run(env)
    try:
        dead = consume(env, Topic.DEADLETTER, want=1, timeout=60)
        checked = _checked(env, want=1)
        assert thread.is_alive()
    finally:
        _stop(processor, thread)
    expected = derive_event(checked[0].payload, producer=PRODUCER, causation=request)
    assert [e.event_id for e in checked] == [expected.event_id]
    assert checked[0].payload.outcome is TransferCheckOutcome.PASS
    assert checked[0].payload.jurisdiction == "US"
    assert checked[0].causation_id == request.event_id
    assert [(d.producer, d.payload.stage) for d in dead] == [(PRODUCER, STAGE)]
    assert isinstance(dead[0].payload, DeadLetter) and "not JSON" in dead[0].payload.error

    # A restart rebuilds from the log and answers nothing twice; a new request is answered.
    second = new_event(
        request.payload.model_copy(update={"transfer_id": "w-2", "ivms101": None}),
        producer="transfer-service",
    )
    produce(env, [second])
    processor, thread = _run(env)
    try:
        checked = _checked(env, want=2)
    finally:
        _stop(processor, thread)
    assert [e.causation_id for e in checked] == [request.event_id, second.event_id]
    # BTC without a price and no payload: the US rule cannot tell, so it holds
    assert checked[1].payload.outcome is TransferCheckOutcome.HOLD
    assert len(consume(env, Topic.DEADLETTER, want=2, timeout=3)) == 1
