"""`engine.replay.fold_until` against a scripted consumer (no broker): it folds exactly
[start, target) per partition, whatever the consumer delivers beyond, and says whether
every target was reached."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import TopicPartition

from deploy.settings import Settings
from engine import replay

T = "own"


class _Msg:
    def __init__(self, partition: int, offset: int) -> None:
        self._p, self._o = partition, offset

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return T

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o


class _Consumer:
    """Delivers the scripted offsets of each partition from its assigned start (gaps are
    transaction markers or aborted records), then reports the scripted end position."""

    script: dict[int, tuple[list[int], int]] = {}
    """partition -> (offsets with a record, position once everything is delivered)"""

    def __init__(self, _config: Any) -> None:
        self.start: dict[int, int] = {}
        self.sent: set[int] = set()
        self.closed = False

    def assign(self, tps: list[TopicPartition]) -> None:
        self.start = {tp.partition: tp.offset for tp in tps}

    def consume(self, num_messages: int, timeout: float) -> list[_Msg]:
        out = []
        for p, start in self.start.items():
            if p in self.sent:
                continue
            self.sent.add(p)
            out += [_Msg(p, o) for o in self.script[p][0] if o >= start]
        return out

    def position(self, tps: list[TopicPartition]) -> list[TopicPartition]:
        return [
            TopicPartition(T, tp.partition, self.script[tp.partition][1])
            if tp.partition in self.sent
            else TopicPartition(T, tp.partition, -1001)
            for tp in tps
        ]

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> type[_Consumer]:
    monkeypatch.setattr(replay, "Consumer", _Consumer)
    return _Consumer


def _fold(
    starts: dict[int, int], targets: dict[int, int], **kw: Any
) -> tuple[bool, dict[int, int], list[tuple[int, int]]]:
    seen: list[tuple[int, int]] = []
    ok, folded = replay.fold_until(
        Settings(kafka_port=1),
        {(T, p): o for p, o in starts.items()},
        {(T, p): o for p, o in targets.items()},
        lambda m: seen.append((m.partition() or 0, m.offset() or 0)),
        **kw,
    )
    return ok, {p: o for (_t, p), o in folded.items()}, seen


def test_folds_exactly_up_to_the_target_and_not_beyond(scripted: type[_Consumer]) -> None:
    # Partition 0: records 0-2, a marker at 3, records 4-5 then more committed (6-8);
    # the target is 6, the consumer delivers everything.
    scripted.script = {0: ([0, 1, 2, 4, 5, 6, 7, 8], 9), 1: ([3, 4], 6)}
    ok, folded, seen = _fold({0: 1, 1: 3}, {0: 6, 1: 6})
    assert ok
    assert folded == {0: 6, 1: 6}  # past the markers: the targets
    assert seen == [(0, 1), (0, 2), (0, 4), (0, 5), (1, 3), (1, 4)]


def test_a_partition_stuck_short_is_reported_and_stays_exact(
    scripted: type[_Consumer],
) -> None:
    # Records 0-4 delivered; the position never passes 5 (target 6).
    scripted.script = {0: ([0, 1, 2, 3, 4], 5)}
    ok, folded, seen = _fold({0: 0}, {0: 6}, settle=0.0)
    assert not ok
    assert folded == {0: 5}  # the offset after the last record folded, not the target
    assert [o for _p, o in seen] == [0, 1, 2, 3, 4]


def test_nothing_to_do_opens_no_consumer(scripted: type[_Consumer]) -> None:
    scripted.script = {}
    ok, folded, seen = _fold({0: 7}, {0: 7})
    assert ok and folded == {0: 7} and seen == []


def test_stop_ends_the_fold_unfinished(scripted: type[_Consumer]) -> None:
    scripted.script = {0: ([0, 1], 5)}
    ok, folded, seen = _fold({0: 0}, {0: 9}, stop=lambda: True)
    assert not ok and folded == {0: 0} and seen == []
