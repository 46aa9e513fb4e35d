"""`TimeOrder`: a rebuild's records handed over in time order across its partitions.

A consumer reading several topics from the start fetches each partition as fast as it
can, so a small topic is read to its end while a large one is still at its start: a
fold whose cost grows with how far its events arrive out of time order (`tax_lots`: an
entry older than its book's last is folded again with what followed it) pays for that
drift. Live, the topics are read as they are written and the drift is small. This
buffers each partition's records and hands them over merged by their Kafka timestamp
(CreateTime: when they were produced), a record only once every partition still to be
read has shown one at least as late, each partition's records in offset order. A
partition with much buffered is paused until the others catch up, so the buffers stay
bounded. Only the order changes, never the records: any order is a correct one (every
fold must give the same rows whatever the topics' interleaving), this one is cheaper.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import TopicPartition

from projections.store import RawRecord

TP = tuple[str, int]

PAUSE_AT = 20_000
"""Records buffered for one partition at which its fetching is paused (resumed at half):
bounds the reader's memory when one topic's records are far ahead in time."""


class TimeOrder:
    """Feed it each poll's records with their timestamps (`take`); it returns those that
    can go now, in time order, and where each partition stands (`positions`)."""

    def __init__(self, consumer: Any, ends: Mapping[TP, int]) -> None:
        self._consumer = consumer
        self._ends = dict(ends)
        """The offset each partition is read to (its last stable offset at the start): a
        partition there with nothing buffered holds nothing back."""
        self._buffers: dict[TP, deque[tuple[int, RawRecord]]] = {tp: deque() for tp in ends}
        self._latest: dict[TP, int] = {}
        """The latest timestamp seen per partition (a producer's clock may step back)."""
        self._paused: set[TP] = set()

    def take(self, records: Sequence[RawRecord], stamps: Sequence[int]) -> list[RawRecord]:
        for r, ts in zip(records, stamps, strict=True):
            tp = (r.topic, r.partition)
            buf = self._buffers.get(tp)
            if buf is None:
                buf = self._buffers[tp] = deque()
            latest = max(ts, self._latest.get(tp, ts))
            self._latest[tp] = latest
            buf.append((latest, r))
        out: list[RawRecord] = []
        while got := self._merged(self._frontier()):  # a partition emptied moves it on
            out += got
        self._pace()
        return out

    def positions(self) -> dict[TP, int]:
        """Past the last record handed over, per partition (the consumer's position where
        nothing is buffered: past any transaction marker it stepped over)."""
        tps = list(self._buffers)
        now = {
            (tp.topic, tp.partition): tp.offset
            for tp in self._consumer.position([TopicPartition(t, p) for t, p in tps])
            if tp.offset >= 0
        }
        out: dict[TP, int] = {}
        for tp in tps:
            buf = self._buffers[tp]
            if buf:
                out[tp] = buf[0][1].offset
            elif tp in now:
                out[tp] = now[tp]
        return out

    def _frontier(self) -> float:  # a Kafka timestamp in ms, not money
        """The time up to which every record has been seen: the earliest of the latest
        timestamps of the partitions still to be read (-inf if one has shown nothing)."""
        where = self._where()
        frontier = float("inf")  # a Kafka timestamp in ms, not money
        for tp, buf in self._buffers.items():
            if buf:
                frontier = min(frontier, buf[-1][0])
            elif where.get(tp, 0) < self._ends.get(tp, 0):
                return float("-inf")  # a Kafka timestamp in ms, not money
        return frontier

    def _where(self) -> dict[TP, int]:
        empty = [TopicPartition(t, p) for (t, p), buf in self._buffers.items() if not buf]
        if not empty:
            return {}
        return {
            (tp.topic, tp.partition): tp.offset
            for tp in self._consumer.position(empty)
            if tp.offset >= 0
        }

    def _merged(self, frontier: float) -> list[RawRecord]:  # a Kafka timestamp, not money
        heads = [(buf[0][0], tp) for tp, buf in self._buffers.items() if buf]
        heapq.heapify(heads)
        out: list[RawRecord] = []
        while heads and heads[0][0] <= frontier:
            _ts, tp = heapq.heappop(heads)
            buf = self._buffers[tp]
            out.append(buf.popleft()[1])
            if buf:
                heapq.heappush(heads, (buf[0][0], tp))
        return out

    def _pace(self) -> None:
        stop = [tp for tp, buf in self._buffers.items() if len(buf) >= PAUSE_AT]
        go = [tp for tp in self._paused if len(self._buffers[tp]) < PAUSE_AT // 2]
        if stop := [tp for tp in stop if tp not in self._paused]:
            self._consumer.pause([TopicPartition(t, p) for t, p in stop])
            self._paused.update(stop)
        if go:
            self._consumer.resume([TopicPartition(t, p) for t, p in go])
            self._paused.difference_update(go)
