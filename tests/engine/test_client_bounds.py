"""The producer SDK's memory is bounded, and it releases its Kafka clients on close.

Before (issue #3, h62 items 2 and 5), `IntentPublisher` remembered every intent it ever
published, and its `DecisionWatcher` every answer the engine gave to *any* producer (three
maps, one entry each per decision on the topic), for the life of the process; `close()`
left the producer (and its threads reconnecting to the broker) alive, and `EngineWorker`
had no way to release its producer at all.
"""

from __future__ import annotations

import gc
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from deploy.settings import Settings
from engine.client import DecisionWatcher, IntentPublisher
from schemas import Envelope, new_event
from schemas.events import Side
from tests.engine.helpers import produce
from tests.engine.pure import Harness
from tests.engine.test_decision_watcher import _watcher
from tests.engine.test_rules import LIMITS

D = Decimal
DECISIONS = ("RiskDecision", "IntentRejected")


def _decided(n: int) -> list[tuple[Envelope[Any], Envelope[Any]]]:
    """`n` signed intents of producer p1, each with the engine's decision of it."""
    h = Harness(LIMITS, cash=D("100000000"))
    h.quote(D("30000"), D("30001"))
    out = []
    for _ in range(n):
        emitted = h.order(Side.BUY, D("0.001"), D("29000"))
        assert h.last_intent is not None
        out.append((h.last_intent, next(e for e in emitted if e.event_type in DECISIONS)))
    return out


def _held(*objects: object) -> int:
    """Entries in every dict (maps, counters, caches) these objects hold."""
    return sum(len(v) for o in objects for v in vars(o).values() if isinstance(v, dict))


def _threads() -> int:
    """This process's OS threads, librdkafka's included."""
    return len(os.listdir("/proc/self/task"))


def test_a_watcher_holds_at_most_its_capacity() -> None:
    decided = _decided(50)
    w: DecisionWatcher = _watcher([d for _i, d in decided])
    w.capacity = 10
    while w.pump(0):
        pass
    assert len(w.by_correlation) <= 10 and len(w.by_intent) <= 10
    newest_intent, newest = decided[-1]
    found = w.wait(newest_intent.correlation_id, 0.1)  # the newest are kept
    assert found is not None and found.event_id == newest.event_id


@pytest.mark.integration
def test_a_publisher_holds_only_its_pending_answers(env: Settings) -> None:
    decided = _decided(60)
    mine, others = decided[:5], decided[5:]
    pub = IntentPublisher(env, "p1", watch=True)
    try:
        for intent, _d in mine:
            pub.publish_event(intent)  # no engine runs: the answers are written below
        # the engine's answers to everybody, ours last
        produce(env, [d for _i, d in others] + [d for _i, d in mine])
        for intent, d in mine:
            found = pub.await_decision(intent.correlation_id, 30)
            assert found is not None and found.event_id == d.event_id
        assert pub._watcher is not None
        # Nothing is held for the 55 answers to other intents, nor for ours once awaited
        # but the last answers returned (a repeated await): 5 entries, not 5 + 3 x 60.
        assert _held(pub, pub._watcher) <= len(mine), (
            {k: len(v) for k, v in vars(pub).items() if isinstance(v, dict)},
            {k: len(v) for k, v in vars(pub._watcher).items() if isinstance(v, dict)},
        )
        first, first_decision = mine[0]
        again = pub.await_decision(first.correlation_id, 1)
        assert again is not None and again.event_id == first_decision.event_id
        # A resend (a new envelope of an intent already answered and dropped) is still
        # answered by the original decision, which the engine re-publishes as it was.
        resend = new_event(first.payload, producer="p1")
        pub.publish_event(resend)
        produce(env, [first_decision])
        answer = pub.await_decision(resend.correlation_id, 30)
        assert answer is not None and answer.event_id == first_decision.event_id
        assert _held(pub, pub._watcher) <= len(mine) + 1
    finally:
        pub.close()


@pytest.mark.integration
def test_a_publisher_remembers_at_most_max_pending_events(env: Settings) -> None:
    decided = _decided(20)
    pub = IntentPublisher(env, "p1", watch=True, max_pending=4)
    try:
        for intent, _d in decided:
            pub.publish_event(intent)
        assert _held(pub) <= 2 * 4  # pending events and their intents' keys
        # the newest are still awaited by their intent (a resend of them included)
        produce(env, [d for _i, d in decided])
        last, last_decision = decided[-1]
        resend = new_event(last.payload, producer="p1")
        pub.publish_event(resend)
        answer = pub.await_decision(resend.correlation_id, 30)
        assert answer is not None and answer.event_id == last_decision.event_id
    finally:
        pub.close()


def test_close_releases_the_publishers_and_the_workers_kafka_clients(tmp_path: Path) -> None:
    from engine.worker import EngineWorker

    settings = Settings(data_dir=tmp_path, kafka_port=1, topic_prefix="unit.")
    gc.collect()
    before = _threads()
    pub = IntentPublisher(settings, "p1", watch=False)
    worker = EngineWorker(settings, wid="u")
    assert _threads() > before  # librdkafka's threads, reconnecting to 127.0.0.1:1
    pub.close()
    pub.close()  # idempotent
    worker.close()
    assert _threads() <= before
