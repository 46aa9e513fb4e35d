"""`deploy.kafka.asked_again`, the one retry loop of the admin requests (end offsets,
topic ids, the status's group descriptions), without a broker: which errors it asks
again on and which it raises at once, and that a stop ends it (`stopping`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from deploy.kafka import (
    COORDINATOR_NOT_READY,
    StopAsked,
    asked_again,
    end_offsets,
    error_code,
    error_detail,
    kafka_error,
)


def _failing(codes: list[int], answer: str = "ok") -> tuple[list[int], Callable[[], str]]:
    """A call that raises a `KafkaException` of each of `codes` in turn, then answers."""
    calls: list[int] = []

    def call() -> str:
        calls.append(len(calls))
        if len(calls) <= len(codes):
            raise KafkaException(KafkaError(codes[len(calls) - 1]))
        return answer

    return calls, call


def test_any_kafka_error_is_asked_again_when_no_codes_are_named() -> None:
    calls, call = _failing([KafkaError._TIMED_OUT, KafkaError.UNKNOWN_TOPIC_OR_PART])
    assert asked_again(call, 30) == "ok"
    assert len(calls) == 3


def test_a_code_not_waited_for_is_raised_at_once() -> None:
    calls, call = _failing([KafkaError.GROUP_AUTHORIZATION_FAILED])
    with pytest.raises(KafkaException) as raised:
        asked_again(call, 30, waiting=COORDINATOR_NOT_READY)
    assert error_code(raised.value) == KafkaError.GROUP_AUTHORIZATION_FAILED
    assert len(calls) == 1


def test_the_coordinator_not_ready_is_asked_again() -> None:
    calls, call = _failing(sorted(COORDINATOR_NOT_READY))
    assert asked_again(call, 30, waiting=COORDINATOR_NOT_READY) == "ok"
    assert len(calls) == len(COORDINATOR_NOT_READY) + 1


def test_past_the_timeout_the_error_is_raised() -> None:
    calls, call = _failing([KafkaError._TIMED_OUT] * 5)
    with pytest.raises(KafkaException):
        asked_again(call, -1)
    assert len(calls) == 1


def test_an_error_other_than_a_kafka_one_is_not_asked_again() -> None:
    calls: list[int] = []

    def call() -> None:
        calls.append(1)
        raise ValueError("not Kafka's")

    with pytest.raises(ValueError):
        asked_again(call, 30)
    assert calls == [1]


class _SilentAdmin:
    """An admin client whose broker never answers: its futures are never done."""

    def __init__(self) -> None:
        self.asked = 0

    def list_offsets(self, wanted: dict[Any, Any], **_: Any) -> dict[Any, Future[Any]]:
        self.asked += 1
        return {tp: Future() for tp in wanted}


def test_end_offsets_ends_at_a_stop_while_the_broker_does_not_answer() -> None:
    """Without `stopping` the request's `result()` waits out its 10 s (for ever here);
    with it, a stop asked for while it waits ends it (`StopAsked`). Run on a thread and
    joined with a bound far above `STOP_LOOK_SECONDS`: a hang, not a timing, fails it."""
    admin = _SilentAdmin()
    stop = threading.Event()
    raised: list[BaseException] = []

    def ask() -> None:
        try:
            end_offsets(admin, [TopicPartition("t", 0)], stopping=stop.is_set)  # type: ignore[arg-type]
        except BaseException as exc:  # what ended it is the assertion
            raised.append(exc)

    asker = threading.Thread(target=ask, daemon=True)
    asker.start()
    while admin.asked == 0 and asker.is_alive():
        time.sleep(0.01)
    stop.set()
    asker.join(timeout=10)
    assert not asker.is_alive(), "end_offsets did not end at the stop"
    assert [type(e) for e in raised] == [StopAsked]
    assert admin.asked == 1


def test_a_stop_between_tries_ends_the_asking_again() -> None:
    calls, call = _failing([KafkaError._TIMED_OUT] * 5)
    with pytest.raises(StopAsked):
        asked_again(call, 30, stopping=lambda: True)
    assert len(calls) == 1


def test_the_error_an_exception_carries() -> None:
    """`kafka_error` and `error_detail`: the one reading of a `KafkaException`'s argument."""
    timed_out = KafkaException(KafkaError(KafkaError._TIMED_OUT))
    carried = kafka_error(timed_out)
    assert carried is not None and carried.code() == KafkaError._TIMED_OUT
    assert error_detail(timed_out) == carried.str() != str(timed_out)
    for other in (KafkaException(), ValueError("x"), RuntimeError()):
        assert kafka_error(other) is None
    assert (
        error_detail(RuntimeError("No Authorizer is configured")) == "No Authorizer is configured"
    )
    assert error_detail(KafkaException()) == ""
