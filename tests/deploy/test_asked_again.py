"""`deploy.kafka.asked_again`, the one retry loop of the admin requests (end offsets,
topic ids, the status's group descriptions), without a broker: which errors it asks
again on and which it raises at once."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from confluent_kafka import KafkaError, KafkaException

from deploy.kafka import COORDINATOR_NOT_READY, asked_again, error_code


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
