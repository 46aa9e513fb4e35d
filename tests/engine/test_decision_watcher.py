"""What `DecisionWatcher` takes for an intent's answer, whatever order it reads the
engine's topics in (no broker: a stand-in consumer hands over the engine's records)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from decimal import Decimal
from typing import Any

import pytest

from engine.client import DecisionWatcher, intent_key
from schemas import Envelope, encode
from schemas.events import Side
from tests.engine.pure import Harness
from tests.engine.test_rules import LIMITS

D = Decimal


class _Record:
    def __init__(self, event: Envelope[Any]) -> None:
        self._key, self._value, self._headers = encode(event)
        self._topic = event.topic

    def error(self) -> None:
        return None

    def value(self) -> bytes:
        return self._value

    def headers(self) -> Any:
        return self._headers

    def topic(self) -> str:
        return self._topic


class _Consumer:
    def __init__(self, events: list[Envelope[Any]]) -> None:
        self.batches = [[_Record(e)] for e in events]

    def consume(self, num_messages: int, timeout: float) -> list[_Record]:
        return self.batches.pop(0) if self.batches else []


def _watcher(events: list[Envelope[Any]]) -> DecisionWatcher:
    w = DecisionWatcher.__new__(DecisionWatcher)
    w._consumer = _Consumer(events)  # type: ignore[assignment]
    w.by_correlation, w.by_intent, w.by_record = {}, {}, {}
    w._lock = threading.Lock()
    return w


@pytest.mark.parametrize("fact_first", [True, False])
def test_the_brakes_kill_switch_is_not_taken_for_the_intents_decision(fact_first: bool) -> None:
    h = Harness(LIMITS, cash=D("100000"))
    h.quote(D("30000"), D("30001"))
    h.order(Side.BUY, D("1.5"))
    h.order(Side.BUY, D("0.01"))  # the peak is recorded
    h.quote(D("20000"), D("20001"))  # equity falls ~15 %: the brake engages
    out = h.order(Side.BUY, D("0.1"))
    intent = h.last_intent
    assert intent is not None
    (brake,) = [e for e in out if e.event_type == "KillSwitchEngaged"]
    (decided,) = [e for e in out if e.event_type == "RiskDecision"]
    assert brake.correlation_id == decided.correlation_id == intent.correlation_id
    w = _watcher([brake, decided] if fact_first else [decided, brake])
    answer = w.wait(intent.correlation_id, 1.0, intent=intent_key(intent))
    assert answer is not None and answer.event_id == decided.event_id


@pytest.mark.parametrize("copy_first", [True, False])
def test_a_copy_refused_on_another_partition_does_not_answer_the_intent_sent_right(
    copy_first: bool,
) -> None:
    """A copy of a signed intent sent to another partition is refused WRONG_PARTITION in
    the intent's own envelope (its correlation id), not recorded, while the intent sent
    right is decided. Read together, the recorded decision answers, whichever came first.
    Before, the first read held the correlation: the publisher was told WRONG_PARTITION
    while its order stood. (Read in two polls with the copy's first, the copy's still
    answers a wait that looks in between: docs/engine.md.)"""
    _h, intent, decided, copied = _copy_and_decision()
    assert copied.payload.reason == "WRONG_PARTITION"
    assert copied.correlation_id == decided.correlation_id == intent.correlation_id
    w = _watcher([])
    w._consumer.batches = [  # type: ignore[attr-defined]
        [_Record(e) for e in ([copied, decided] if copy_first else [decided, copied])]
    ]
    answer = w.wait(intent.correlation_id, 1.0, intent=intent_key(intent))
    assert answer is not None and answer.event_id == decided.event_id


def _copy_and_decision() -> tuple[Harness, Any, Any, Any]:
    """An intent sent right and decided (its record at partition 0, offset 5), and a copy
    of its envelope sent by someone else to partition 3 (offset 7), refused there."""
    from engine.processor import reject_misrouted

    h = Harness(LIMITS, cash=D("100000"))
    h.quote(D("30000"), D("30001"))
    out = h.order(Side.BUY, D("0.1"), D("29000"))
    intent = h.last_intent
    assert intent is not None
    (decided,) = [e for e in out if e.event_type == "RiskDecision"]
    (copied,) = reject_misrouted(h.state, intent, "on partition 3, not 0", (3, 7))
    assert (copied.payload.intent_partition, copied.payload.intent_offset) == (3, 7)
    return h, intent, decided, copied


def test_a_copys_refusal_read_in_an_earlier_poll_does_not_answer_the_intent() -> None:
    """The race 40fb1b3 left: the copy's refusal read in one poll, the intent's decision in
    the next, and a wait looking in between was answered with the refusal. The refusal
    now names the record it refused (`IntentRejected.intent_partition`/`intent_offset`)
    and the publisher knows where the broker put its own (`IntentPublisher.records_of`),
    so the copy's answers nothing and the wait goes on to the decision. Failed before (no
    record on the refusal: the wait returned WRONG_PARTITION)."""
    _h, intent, decided, copied = _copy_and_decision()
    w = _watcher([copied, decided])  # two polls: the copy's refusal first
    answer = w.wait(
        intent.correlation_id, 1.0, intent=intent_key(intent), records=frozenset({(0, 5)})
    )
    assert answer is not None and answer.event_id == decided.event_id
    # Without its record (the CLI's `publish`, an older engine) the refusal still answers.
    w = _watcher([copied, decided])
    answer = w.wait(intent.correlation_id, 1.0, intent=intent_key(intent))
    assert answer is not None and answer.event_id == copied.event_id


def test_the_publishers_own_record_refused_answers_after_a_copys_refusal() -> None:
    """Its own record refused before any signature (here: the producer revoked, unknown)
    is its answer, whichever refusal was read first."""
    from engine.processor import Context, process
    from schemas import new_event

    _h, intent, _decided, copied = _copy_and_decision()
    fresh = Harness(LIMITS, cash=D("100000"))  # where p1 is another producer's key
    own = process(
        fresh.state,
        new_event(intent.payload.model_copy(update={"producer_id": "nobody"}), producer="x",
                  occurred_at=intent.occurred_at, correlation_id=intent.correlation_id),
        Context(event_time_is_arrival=True),
        None,
        (0, 5),
    )  # fmt: skip
    (refused,) = own
    assert refused.payload.reason == "UNKNOWN_PRODUCER"
    assert (refused.payload.intent_partition, refused.payload.intent_offset) == (0, 5)
    for first, second in ((copied, refused), (refused, copied)):
        w = _watcher([first, second])
        answer = w.wait(
            intent.correlation_id, 1.0, intent=intent_key(intent), records=frozenset({(0, 5)})
        )
        assert answer is not None and answer.event_id == refused.event_id


def test_the_publisher_keeps_where_the_broker_put_its_pending_intents() -> None:
    from uuid import uuid4

    from engine.client import IntentPublisher

    class _Msg:
        def partition(self) -> int:
            return 2

        def offset(self) -> int:
            return 41

    def publisher(watching: bool, keep_records: int = 0) -> IntentPublisher:
        pub = IntentPublisher.__new__(IntentPublisher)
        pub._state_lock = threading.Lock()
        pub._pending = OrderedDict()
        pub._records = OrderedDict()
        pub._watcher = _watcher([]) if watching else None
        pub.keep_records = keep_records
        pub.delivered = 0
        return pub

    pub = publisher(True)
    cid, gone = uuid4(), uuid4()
    pub._pending[cid] = None
    pub._on_delivery(None, _Msg(), cid)  # type: ignore[arg-type]
    pub._on_delivery(None, _Msg(), gone)  # type: ignore[arg-type]  # not pending: not kept
    assert pub.records_of(cid) == frozenset({(2, 41)}) and pub.records_of(gone) is None
    assert pub.delivered == 2
    # Not watching (`tradetape publish`): the last `keep_records` intents' records.
    pub = publisher(False, keep_records=2)
    first, *rest = [uuid4() for _ in range(3)]
    for c in (first, *rest):
        pub._on_delivery(None, _Msg(), c)  # type: ignore[arg-type]
    assert pub.records_of(first) is None
    assert [pub.records_of(c) for c in rest] == [frozenset({(2, 41)})] * 2
