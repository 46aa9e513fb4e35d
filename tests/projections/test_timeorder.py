"""`TimeOrder`: a rebuild's records merged by timestamp across partitions, bounded."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from projections import timeorder
from projections.store import RawRecord
from projections.timeorder import TimeOrder


class Positions:
    """What `TimeOrder` asks of a consumer: positions, pause and resume (recorded)."""

    def __init__(self) -> None:
        self.at: dict[tuple[str, int], int] = {}
        self.paused: list[tuple[str, int]] = []
        self.resumed: list[tuple[str, int]] = []

    def position(self, tps: list[TopicPartition]) -> list[TopicPartition]:
        return [
            TopicPartition(t.topic, t.partition, self.at.get((t.topic, t.partition), -1001))
            for t in tps
        ]

    def pause(self, tps: list[TopicPartition]) -> None:
        self.paused += [(t.topic, t.partition) for t in tps]

    def resume(self, tps: list[TopicPartition]) -> None:
        self.resumed += [(t.topic, t.partition) for t in tps]


def _feed(
    order: TimeOrder, c: Positions, topic: str, stamps: list[int], first: int = 0
) -> list[RawRecord]:
    recs = [RawRecord(topic, 0, first + i, b"", None) for i in range(len(stamps))]
    c.at[(topic, 0)] = first + len(stamps)
    return order.take(recs, stamps)


def _ts(out: list[RawRecord], stamps: dict[str, list[int]]) -> list[int]:
    return [stamps[r.topic][r.offset] for r in out]


def test_records_come_in_time_order_once_every_partition_has_shown_as_late() -> None:
    c = Positions()
    order = TimeOrder(c, {("big", 0): 3, ("small", 0): 3})
    # the small topic is read to its end first: nothing goes while big has shown nothing
    assert _feed(order, c, "small", [1, 5, 9]) == []
    assert order.positions() == {("small", 0): 0}
    out = _feed(order, c, "big", [2, 3, 10])
    assert [(r.topic, r.offset) for r in out] == [
        ("small", 0), ("big", 0), ("big", 1), ("small", 1), ("small", 2), ("big", 2),
    ]  # fmt: skip
    assert order.positions() == {("small", 0): 3, ("big", 0): 3}


def test_a_partition_behind_holds_back_only_what_is_later_than_it_has_shown() -> None:
    c = Positions()
    order = TimeOrder(c, {("a", 0): 4, ("b", 0): 4})
    assert _feed(order, c, "a", [10, 20, 30, 40]) == []
    out = _feed(order, c, "b", [15, 25])  # b is at 25 and not at its end
    assert [(r.topic, r.offset) for r in out] == [("a", 0), ("b", 0), ("a", 1), ("b", 1)]
    assert order.positions() == {("a", 0): 2, ("b", 0): 2}  # a's 30 and 40 wait


def test_a_partition_far_ahead_is_paused_and_resumed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timeorder, "PAUSE_AT", 4)
    c = Positions()
    order = TimeOrder(c, {("a", 0): 6, ("b", 0): 2})
    _feed(order, c, "a", [10, 11, 12, 13, 14, 15])
    assert c.paused == [("a", 0)] and c.resumed == []
    _feed(order, c, "b", [13, 20])
    assert c.resumed == [("a", 0)]


@given(st.lists(st.lists(st.integers(0, 50), max_size=8), min_size=1, max_size=4), st.data())
def test_every_record_comes_once_in_each_partitions_order(
    parts: list[list[int]], data: Any
) -> None:
    """Fed in any interleaving of polls, all of them come out, each partition's in
    offset order, and in time order wherever timestamps do not step back."""
    c = Positions()
    names = [f"t{i}" for i in range(len(parts))]
    order = TimeOrder(c, {(n, 0): len(p) for n, p in zip(names, parts, strict=True)})
    fed = dict.fromkeys(names, 0)
    out: list[RawRecord] = []
    while any(fed[n] < len(p) for n, p in zip(names, parts, strict=True)):
        n = data.draw(
            st.sampled_from([n for n, p in zip(names, parts, strict=True) if fed[n] < len(p)])
        )
        i = names.index(n)
        k = data.draw(st.integers(1, len(parts[i]) - fed[n]))
        out += _feed(order, c, n, parts[i][fed[n] : fed[n] + k], fed[n])
        fed[n] += k
    assert sorted((r.topic, r.offset) for r in out) == sorted(
        (n, o) for n, p in zip(names, parts, strict=True) for o in range(len(p))
    )
    for n in names:
        assert [r.offset for r in out if r.topic == n] == sorted(
            r.offset for r in out if r.topic == n
        )
    if all(p == sorted(p) for p in parts):
        stamps = dict(zip(names, parts, strict=True))
        assert _ts(out, stamps) == sorted(_ts(out, stamps))
