"""The engine's dead letter of a record is the same event each time the record is
dead-lettered: its id and time come from the record (topic, partition, offset, its
timestamp on the log). Before, each had a new random id and the wall clock's time, so a
record dead-lettered again (a reference record's partition handed to a worker that had
not read it yet, a transaction whose outcome was retried) was two rows in the
dead-letter browser, which dedupes on the event id (surveillance's were fixed in c9a32d0).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast

from confluent_kafka import (
    TIMESTAMP_CREATE_TIME,
    TIMESTAMP_LOG_APPEND_TIME,
    TIMESTAMP_NOT_AVAILABLE,
)

from deploy.deadletter import record_time
from engine.worker import EngineWorker
from schemas import MalformedEventError, encode


class Rec:
    """What the worker reads of a confluent_kafka Message."""

    def __init__(self, offset: int, ts: tuple[int, int], topic: str = "t.trading.intents") -> None:
        self._offset, self._ts, self._topic = offset, ts, topic

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return 3

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return b"acct"

    def value(self) -> bytes:
        return b"\xff not json"

    def headers(self) -> list[Any]:
        return []

    def timestamp(self) -> tuple[int, int]:
        return self._ts


def letter(rec: Rec, why: str = "bad bytes") -> Any:
    worker = cast(EngineWorker, SimpleNamespace(stats=Counter()))
    exc = MalformedEventError(
        why, topic=rec.topic(), partition=rec.partition(), offset=rec.offset()
    )
    return EngineWorker._dead_letter(worker, cast(Any, rec), exc)


APPEND = (TIMESTAMP_LOG_APPEND_TIME, 1_767_621_600_123)


def test_a_record_dead_lettered_again_is_the_same_dead_letter() -> None:
    first, again = letter(Rec(7, APPEND)), letter(Rec(7, APPEND))
    assert encode(first) == encode(again)
    assert first.occurred_at == datetime(2026, 1, 5, 14, 0, 0, 123000, tzinfo=UTC)
    assert first.payload.source_offset == 7


def test_other_records_get_other_dead_letters() -> None:
    ids = {
        letter(Rec(7, APPEND)).event_id,
        letter(Rec(8, APPEND)).event_id,
        letter(Rec(7, APPEND, topic="t.marketdata.events")).event_id,
    }
    assert len(ids) == 3


def test_a_record_without_a_usable_time_still_gets_a_dead_letter() -> None:
    assert record_time(Rec(7, (TIMESTAMP_CREATE_TIME, 1_767_621_600_123))) is not None
    for ts in [
        (TIMESTAMP_NOT_AVAILABLE, -1),
        (TIMESTAMP_CREATE_TIME, -5),
        (TIMESTAMP_CREATE_TIME, 10**18),
    ]:
        rec = Rec(7, ts)
        assert record_time(rec) is None
        assert letter(rec).payload.source_offset == 7  # a new id, now: never a crash
