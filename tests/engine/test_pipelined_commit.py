"""A transaction that fails while the next batch is already being processed loses nothing
and duplicates nothing: the worker aborts it, rewinds to the committed offsets and
rebuilds, and every intent still gets exactly one decision on the log."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from deploy.settings import Settings
from schemas import Envelope
from schemas.events import Side
from schemas.topics import Topic
from tests.engine.helpers import intent, produce, quote, read_topic, running_worker, wait_for, world

pytestmark = pytest.mark.integration


def _decisions(events: list[Envelope[Any]]) -> list[Envelope[Any]]:
    """The intents' decisions among risk.decisions' records (also UnitsChanged, a deposit's
    units under DRAWDOWN_BRAKE v6, and PeakEquityRaised)."""
    return [e for e in events if e.event_type in ("RiskDecision", "IntentRejected")]


class Wrapped:
    """A worker's client with some calls replaced: every other call goes to `_real`."""

    _real: Any

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class FailingCommits(Wrapped):
    """The worker's producer, with chosen `commit_transaction` calls failing as abortable
    errors (the commit never reaches the broker; the transaction stays open)."""

    def __init__(self, real: Any, fail_on: set[int]) -> None:
        self._real, self.fail_on = real, fail_on
        self.calls = self.failed = 0

    def commit_transaction(self, *args: Any) -> Any:
        self.calls += 1
        if self.calls in self.fail_on:
            self.failed += 1
            raise KafkaException(
                KafkaError(
                    KafkaError._STATE,
                    "injected commit failure",
                    fatal=False,
                    retriable=False,
                    txn_requires_abort=True,
                )
            )
        return self._real.commit_transaction(*args)


def test_a_failed_transaction_in_flight_loses_and_duplicates_nothing(env: Settings) -> None:
    n_chunks, per_chunk = 12, 25
    with running_worker(env) as worker:
        key = world(env, ["ACC1", "ACC2"])
        produce(env, [quote()])
        wait_for(env, Topic.ACCOUNTS, lambda ev: len(ev) >= 5)
        failing = FailingCommits(worker.producer, fail_on={2, 5, 6})
        worker.producer = failing  # type: ignore[assignment]
        for c in range(n_chunks):
            produce(
                env,
                [
                    intent(
                        key,
                        "ACC1" if i % 2 else "ACC2",
                        f"c-{c}-{i}",
                        side=Side.BUY,
                        qty="0.001",
                        limit="59990",
                    )
                    for i in range(per_chunk)
                ],
            )
            time.sleep(0.15)  # separate batches, so several transactions are in flight
        total = n_chunks * per_chunk
        decided = wait_for(
            env,
            Topic.DECISIONS,
            lambda ev: len({e.payload.client_order_id for e in _decisions(ev)}) >= total,
            timeout=90,
        )
        orders = read_topic(env, Topic.ORDERS)
    assert failing.failed >= 2, f"the failure path ran only {failing.failed} times"
    decided = _decisions(decided)
    by_coid = Counter(e.payload.client_order_id for e in decided)
    assert len(by_coid) == total
    assert set(by_coid.values()) == {1}, "an intent got more than one decision on the log"
    assert len({e.event_id for e in decided}) == total
    submitted = Counter(e.payload.order_id for e in orders if e.event_type == "OrderSubmitted")
    assert submitted and set(submitted.values()) == {1}, "an order was submitted twice"
    approved = {
        e.payload.order_id for e in decided if getattr(e.payload, "outcome", "") == "APPROVED"
    }
    assert approved == set(submitted)


class ThreadRecordingConsumer:
    """The worker's consumer, recording which thread makes each call."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.threads: Counter[tuple[str, str]] = Counter()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._real, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.threads[(threading.current_thread().name, name)] += 1
            return attr(*args, **kwargs)

        return call


def test_the_committer_thread_never_touches_the_consumer(env: Settings) -> None:
    """confluent-kafka serialises calls on a consumer handle. In a rebalance the main
    thread holds it inside `consume()` while its revoke callback waits for the transaction
    in flight; a committer that then calls the consumer (it used to ask it for the group
    metadata) waits for the handle forever. Seen with two workers under a backlog: one
    worker stopped for good after 3 transactions and the other never got a partition."""
    with running_worker(env) as worker:
        key = world(env, ["ACC1"])
        produce(env, [quote()])
        wait_for(env, Topic.ACCOUNTS, lambda ev: len(ev) >= 3)
        recorder = ThreadRecordingConsumer(worker.consumer)
        worker.consumer = recorder  # type: ignore[assignment]
        for c in range(4):
            produce(
                env,
                [intent(key, "ACC1", f"t-{c}-{i}", side=Side.BUY, qty="0.001", limit="59990")
                 for i in range(10)],
            )  # fmt: skip
            time.sleep(0.15)
        wait_for(env, Topic.DECISIONS, lambda ev: len(ev) >= 40, timeout=60)
    committer_calls = {
        k: n for k, n in recorder.threads.items() if k[0].startswith("engine-commit")
    }
    assert recorder.threads, "the recording consumer saw no calls"
    assert any(name == "consumer_group_metadata" for _t, name in recorder.threads), (
        "no transaction with input offsets ran"
    )
    assert not committer_calls, f"the committer thread called the consumer: {committer_calls}"


class SlowCommits(Wrapped):
    """The worker's producer with a slow `commit_transaction`, recording whether an
    `abort_transaction` ever overlapped a commit (librdkafka's transactional calls must not
    run concurrently on one producer)."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.committing = threading.Event()
        self.overlaps = self.aborts = 0

    def commit_transaction(self, *args: Any) -> Any:
        self.committing.set()
        try:
            time.sleep(0.8)
            return self._real.commit_transaction(*args)
        finally:
            self.committing.clear()

    def abort_transaction(self, *args: Any) -> Any:
        self.aborts += 1
        if self.committing.is_set():
            self.overlaps += 1
        return self._real.abort_transaction(*args)


class GroupMetadataFailsOnce(Wrapped):
    """The worker's consumer, whose `consumer_group_metadata` (asked for a batch's offsets,
    right before the wait for the previous commit) fails once while a commit is in flight."""

    def __init__(self, real: Any, producer: SlowCommits) -> None:
        self._real, self._producer = real, producer
        self.failed = False

    def consumer_group_metadata(self) -> Any:
        if not self.failed and self._producer.committing.is_set():
            self.failed = True
            raise KafkaException(KafkaError(KafkaError._TRANSPORT, "injected failure"))
        return self._real.consumer_group_metadata()


def test_a_recovery_while_a_commit_is_in_flight_waits_for_it_before_aborting(
    env: Settings,
) -> None:
    """A broker error on the main thread while the previous batch's transaction commits on
    the committer thread: the recovery's abort waits for that commit (review helper-74:
    before, `abort_transaction` ran concurrently with `commit_transaction`), and exactly
    once still holds."""
    with running_worker(env) as worker:
        key = world(env, ["ACC1"])
        produce(env, [quote()])
        wait_for(env, Topic.ACCOUNTS, lambda ev: len(ev) >= 3)
        slow = SlowCommits(worker.producer)
        worker.producer = slow  # type: ignore[assignment]
        failing = GroupMetadataFailsOnce(worker.consumer, slow)
        worker.consumer = failing  # type: ignore[assignment]
        total = 0
        for c in range(8):
            batch = [
                intent(key, "ACC1", f"r-{c}-{i}", side=Side.BUY, qty="0.001", limit="59990")
                for i in range(5)
            ]
            produce(env, batch)
            total += len(batch)
            time.sleep(0.3)  # the next batch arrives while the previous one commits
        decided = wait_for(
            env,
            Topic.DECISIONS,
            lambda ev: len({e.payload.client_order_id for e in _decisions(ev)}) >= total,
            timeout=90,
        )
    assert failing.failed, "the injected failure never ran while a commit was in flight"
    assert slow.aborts >= 1, "the recovery did not abort"
    assert slow.overlaps == 0, "abort_transaction ran while a commit was in flight"
    decided = _decisions(decided)
    by_coid = Counter(e.payload.client_order_id for e in decided)
    assert len(by_coid) == total and set(by_coid.values()) == {1}
