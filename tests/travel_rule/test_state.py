"""The processor's state, without Kafka: an answer's id is the request's derivation (the
same on a replay), a request answered already is not answered again, a second request
of one transfer id is refused, an unknown account is rejected."""

from __future__ import annotations

from decimal import Decimal

import pytest

from schemas import Envelope, new_event
from schemas.events import TransferRequested
from schemas.events.transfers import TransferCheckOutcome
from streams.travel_rule.processor import PRODUCER, DuplicateTransfer, TravelRuleState
from tests.travel_rule.helpers import account_opened

OPENED = account_opened()


def _request(transfer_id: str = "t1", amount: str = "2999.99") -> Envelope[TransferRequested]:
    return new_event(
        TransferRequested(
            transfer_id=transfer_id,
            account="A1",
            asset="USDC",
            amount=Decimal(amount),
            destination_address="0xabc",
        ),
        producer="transfer-service",
    )


def test_the_answer_is_derived_from_the_request_and_the_same_on_a_replay() -> None:
    request = _request()
    state = TravelRuleState()
    state.fold_account(OPENED)
    first = state.decide(request)
    again = TravelRuleState()
    again.fold_account(OPENED)
    replayed = again.decide(request)
    assert first is not None and replayed is not None
    assert first == replayed
    assert first.causation_id == request.event_id
    assert first.producer == PRODUCER and first.payload.outcome is TransferCheckOutcome.PASS
    assert first.occurred_at == request.occurred_at


def test_a_request_answered_on_the_log_is_not_answered_again() -> None:
    request = _request()
    state = TravelRuleState()
    state.fold_account(OPENED)
    answer = state.decide(request)
    assert answer is not None
    rebuilt = TravelRuleState()
    rebuilt.fold_account(OPENED)
    rebuilt.fold_transfer(request)
    rebuilt.fold_transfer(answer)
    assert rebuilt.decide(request) is None


def test_a_second_request_of_one_transfer_id_is_refused() -> None:
    state = TravelRuleState()
    state.fold_account(OPENED)
    assert state.decide(_request()) is not None
    with pytest.raises(DuplicateTransfer, match="requested already"):
        state.decide(_request())
    assert state.decide(_request("t2")) is not None


def test_an_unknown_account_is_rejected() -> None:
    answer = TravelRuleState().decide(_request())
    assert answer is not None and answer.payload.outcome is TransferCheckOutcome.REJECT
    assert answer.payload.jurisdiction == ""


def test_a_failure_inside_a_batch_aborts_its_transaction() -> None:
    """An unexpected error between begin and commit is not left as an open transaction
    (it would hold the engine's read_committed reads of transfers.events until the
    coordinator's timeout): aborted, then raised."""
    from unittest.mock import MagicMock

    from streams.travel_rule.processor import TravelRuleProcessor

    processor = TravelRuleProcessor.__new__(TravelRuleProcessor)
    processor.producer = MagicMock()
    processor.consumer = MagicMock()
    msg = MagicMock()
    msg.error.return_value = None
    processor.outputs = MagicMock(side_effect=ZeroDivisionError("a bug"))  # type: ignore[method-assign]
    with pytest.raises(ZeroDivisionError):
        processor.step([msg])
    processor.producer.begin_transaction.assert_called_once()
    processor.producer.abort_transaction.assert_called_once()
    processor.producer.commit_transaction.assert_not_called()


def test_a_transaction_failure_without_a_kafka_error_is_rewound_not_a_crash() -> None:
    """A `KafkaException` carrying no `KafkaError` (no arguments) at the commit is not
    fatal: the transaction is aborted and the batch rewound. The fatal check read
    `exc.args[0]` unguarded, and the process died of an IndexError."""
    from unittest.mock import MagicMock

    from confluent_kafka import KafkaException

    from streams.travel_rule.processor import TravelRuleProcessor

    processor = TravelRuleProcessor.__new__(TravelRuleProcessor)
    processor.producer = MagicMock()
    processor.producer.commit_transaction.side_effect = KafkaException()
    processor.consumer = MagicMock()
    processor._rewind = MagicMock()  # type: ignore[method-assign]
    processor._produce = MagicMock()  # type: ignore[method-assign]
    msg = MagicMock()
    msg.error.return_value = None
    msg.topic.return_value, msg.partition.return_value, msg.offset.return_value = "t", 0, 5
    processor.outputs = MagicMock(return_value=[])  # type: ignore[method-assign]
    assert processor.step([msg]) == 0
    processor.producer.abort_transaction.assert_called_once()
    processor._rewind.assert_called_once()
