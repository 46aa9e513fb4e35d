"""The control facts every worker reads in full, read to their end before a batch is decided.

The control topics (`CONTROL_TOPICS`: accounts, transfers, risk config — every topic the
worker reads in full except market data) hold what decides whether an intent may pass at
all: kill switches, AML flags, KYC, limits, balances, producer keys. Any worker may write
them (a global kill switch is decided by the owner of the `'*'` admin partition, not by
the owner of the intent's account), and every worker folds them.

They have a consumer of their own (`read_committed`), apart from market data: before a
batch with inputs is decided, `ControlFeed.drain` asks the broker for the control
partitions' last stable offsets — after the batch was polled, so every control fact
committed before the worker received the batch is included — and reads the consumer up to
them. If the offsets cannot be measured (a broker error, an unknown leader) or are not
reached within `CONTROL_DRAIN_SECONDS`, the drain reports why and the worker decides the
batch's intents as `STALE_STATE` (fail closed). Before, the control facts shared one
consumer with market data, at most 5,000 records a step: a kill switch written by another
worker waited behind a market-data backlog for as many steps as the backlog took, and
intents were decided meanwhile (review helper-50).

One batched `ListOffsets` request per step that decides something (none while idle); it
is sent when the batch has been polled and answered while the worker decodes the batch,
checks its signatures and reads market data (measured cost: docs/engine.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from confluent_kafka import Consumer, IsolationLevel, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from engine.replay import REFERENCE_TOPICS

log = logging.getLogger("tradetape.engine")

CONTROL_TOPICS = REFERENCE_TOPICS
"""Every topic the worker reads in full except market data (`schemas.topics`)."""
CONTROL_DRAIN_SECONDS = 2.0
"""How long (seconds, not money) a step reads the control consumer towards the offsets it
measured before it gives up and decides the batch's intents as STALE_STATE."""
CONTROL_QUERY_SECONDS = 5.0
"""The broker's deadline (seconds, not money) for one end-offset request."""
CONTROL_POLL_SECONDS = 0.005
"""One wait for the next control record while short of the measured end (seconds)."""

PartitionKey = tuple[str, int]


@dataclass
class EndQuery:
    """An end-offset request in flight: one future per control partition."""

    futures: Mapping[TopicPartition, Future[object]]
    sent_at: float


@dataclass
class Drained:
    """What a drain read (to be folded before the batch, whether it succeeded or not) and,
    if the end was not reached or not known, why (the batch's intents are then stale)."""

    records: list[Message]
    failure: str | None
    measured: bool = True
    """False if the end offsets could not be measured (the admin client is renewed)."""


class ControlFeed:
    """The control consumer and what it is assigned (by `assign`, after each rebuild)."""

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        self.partitions: list[TopicPartition] = []
        self.floor: dict[PartitionKey, int] = {}
        """The offset each partition was assigned at: librdkafka reports no position (-1001)
        for a partition until it has delivered something from it."""
        self.stats = {"queries": 0, "drains": 0, "failed": 0}

    def assign(self, positions: list[TopicPartition]) -> None:
        """Read `positions` (topic, partition, next offset) live from here on."""
        self.consumer.assign(positions)
        self.partitions = [TopicPartition(tp.topic, tp.partition) for tp in positions]
        self.floor = {(tp.topic, tp.partition): max(tp.offset, 0) for tp in positions}

    def take(self, timeout: float = 0.0) -> list[Message]:
        """Whatever the control consumer holds now, or within `timeout` (a grace): between
        drains the control facts are folded as they come."""
        if not self.partitions:
            return []
        msgs: list[Message] = self.consumer.consume(num_messages=5000, timeout=timeout)
        return msgs

    def ask_ends(self, admin: AdminClient) -> EndQuery | KafkaException:
        """Send the end-offset (last stable offset) request for every control partition;
        its answer is waited for in `drain`. A request that cannot be sent is returned as
        the error (the drain then fails)."""
        if not self.partitions:
            return EndQuery(futures={}, sent_at=time.monotonic())
        self.stats["queries"] += 1
        try:
            futures = admin.list_offsets(
                {tp: OffsetSpec.latest() for tp in self.partitions},  # type: ignore[no-untyped-call]
                isolation_level=IsolationLevel.READ_COMMITTED,
                request_timeout=CONTROL_QUERY_SECONDS,
            )
        except KafkaException as exc:
            return exc
        return EndQuery(futures=futures, sent_at=time.monotonic())

    def drain(
        self,
        query: EndQuery | KafkaException | None,
        *,
        bound: float | None = None,  # seconds, not money
    ) -> Drained:
        """Read the control consumer until each partition's position reaches the end
        `query` measured. Returns what was read, and why the end was not reached (None if
        it was): the offsets unknown, or not reached within `bound` seconds
        (`CONTROL_DRAIN_SECONDS`)."""
        records: list[Message] = []
        if bound is None:
            bound = CONTROL_DRAIN_SECONDS
        if query is None:
            return self._failed(records, "no end-offset request", measured=False)
        self.stats["drains"] += 1
        if isinstance(query, KafkaException):
            return self._failed(records, f"end offsets not requested: {query}", measured=False)
        deadline = query.sent_at + bound
        try:
            targets = ends_of(query, deadline)
        except (KafkaException, FutureTimeout) as exc:
            return self._failed(records, f"end offsets unknown: {exc!r}", measured=False)
        consumer, floor = self.consumer, self.floor
        todo = list(self.partitions)
        while True:
            short = [
                tp
                for tp in consumer.position(todo)
                if max(tp.offset, floor.get((tp.topic, tp.partition), 0))
                < targets[(tp.topic, tp.partition)]
            ]
            if not short:
                return Drained(records, None)
            if time.monotonic() > deadline:
                behind = {
                    f"{tp.topic}:{tp.partition}": (tp.offset, targets[(tp.topic, tp.partition)])
                    for tp in short
                }
                return self._failed(
                    records, f"not read to the end within {bound}s (position, end): {behind}"
                )
            todo = [TopicPartition(tp.topic, tp.partition) for tp in short]
            got = consumer.consume(num_messages=5000, timeout=0)
            if not got:
                first = consumer.poll(CONTROL_POLL_SECONDS)
                got = [] if first is None else [first]
            records.extend(got)

    def _failed(self, records: list[Message], why: str, *, measured: bool = True) -> Drained:
        self.stats["failed"] += 1
        return Drained(records, why, measured)


def ends_of(query: EndQuery, deadline: float) -> dict[PartitionKey, int]:
    """The measured end offset of each partition; KafkaException if one is unknown."""
    out: dict[PartitionKey, int] = {}
    for tp, fut in query.futures.items():
        res = fut.result(timeout=max(0.0, deadline - time.monotonic()))
        offset = int(getattr(res, "offset", -1))
        if offset < 0:
            raise KafkaException(f"no end offset for {tp.topic}:{tp.partition}")
        out[(tp.topic, tp.partition)] = offset
    return out
