"""`engine.replay.read_until_caught_up`, the rebuild's read: it gives up on a stalled read,
never on a long one (no broker: a stand-in consumer and a simulated clock)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from engine import replay

RECORDS = 1_000_000
PER_SECOND = 5_000
"""A healthy rebuild folding 5,000 records a second: 200 s for the whole log, more than
the read's 90 s stall limit."""


class _TP:
    def __init__(self, topic: str, partition: int, offset: int = -2) -> None:
        self.topic, self.partition, self.offset = topic, partition, offset


class _Msg:
    def error(self) -> None:
        return None


class _Consumer:
    def __init__(self, clock: list[float], stall_after: int | None = None) -> None:
        self.clock, self.stall_after, self.pos = clock, stall_after, 0

    def assign(self, _start: Any) -> None:
        self.pos = 0

    def consume(self, num_messages: int, timeout: float) -> list[_Msg]:
        self.clock[0] += 1.0
        if self.stall_after is not None and self.pos >= self.stall_after:
            return []  # the broker stopped answering
        n = min(PER_SECOND, num_messages, RECORDS - self.pos)
        self.pos += n
        return [_Msg()] * n

    def position(self, tps: list[Any]) -> list[_TP]:
        return [_TP(t.topic, t.partition, self.pos) for t in tps]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [0.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])  # what replay reads
    monkeypatch.setattr(
        replay,
        "end_offsets",
        lambda _admin, _start, earliest=False: {("ref", 0): 0 if earliest else RECORDS},
    )
    return now


def test_a_rebuild_longer_than_the_limit_completes(clock: list[float]) -> None:
    """Before: it stopped at 90 s every time (450,000 of 1,000,000 records), and the worker,
    which holds until a rebuild completes, retried from scratch for ever."""
    consumer = _Consumer(clock)
    ok = replay.read_until_caught_up(consumer, None, [_TP("ref", 0)], lambda _m: None)  # type: ignore[arg-type,list-item]
    assert ok and consumer.pos == RECORDS


def test_a_stalled_read_still_gives_up(clock: list[float]) -> None:
    consumer = _Consumer(clock, stall_after=300_000)
    ok = replay.read_until_caught_up(consumer, None, [_TP("ref", 0)], lambda _m: None)  # type: ignore[arg-type,list-item]
    assert not ok and consumer.pos == 300_000
    assert clock[0] < 60 + 90 + 2  # 60 s of reading, then the 90 s without a record
