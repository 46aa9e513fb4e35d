"""The control facts every worker reads in full, read to their end before a batch is decided.

The control topics (`CONTROL_TOPICS`: accounts, transfers, risk config — every topic the
worker reads in full except market data) hold what decides whether an intent may pass at
all: kill switches, AML flags, KYC, limits, balances, producer keys. Any worker may write
them (a global kill switch is decided by the owner of the `'*'` admin partition, not by
the owner of the intent's account), and every worker folds them.

They have a consumer of their own (`read_committed`), apart from market data: before a
batch with inputs is decided, `ControlFeed.drain` reads the consumer up to the control
partitions' last stable offsets, measured by a request sent after the batch was polled.
What that guarantees, precisely: every control fact whose transaction's commit markers
were written on its partition before the broker measured those offsets is folded before
the batch is decided. It does not guarantee a fact whose commit returned to its writer
just before the batch was polled: `commit_transaction()` returns before the markers are
written on the partitions (librdkafka 2.16: an end offset read right after the commit
returned still excluded it), so such a fact — a kill switch just engaged by another
worker — can miss the next batch by milliseconds (it is in force for the batches whose
end offsets are measured after its markers are written). A transaction still open is not
waited for. If the offsets cannot be measured (a broker error, an unknown leader, no
answer) or are not reached within `CONTROL_DRAIN_SECONDS` of the drain being entered, the
drain reports why and the worker decides the batch's intents as `STALE_STATE` (fail
closed). Records already in the consumer's local queue are read whatever the clock says
(the budget bounds only the waits for more), so a drain entered late — the work before it
took long — still moves the control consumer on: under a sustained backlog every step has
inputs and drains, and nothing else reads the control consumer (review helper-60).
Before, the control facts shared one consumer with market data, at most 5,000 records a
step: a kill switch written by another worker waited behind a market-data backlog for as
many steps as the backlog took, and intents were decided meanwhile (review helper-50).

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
"""How long (seconds, not money) a drain, from when it is entered, waits for the end
offsets' answer and for control records towards them before it gives up and the batch's
intents are decided as STALE_STATE. Records already in the local queue are read even
after it."""
CONTROL_QUERY_SECONDS = 5.0
"""The broker's deadline (seconds, not money) for one end-offset request."""
CONTROL_POLL_SECONDS = 0.005
"""One wait for the next control record while short of the measured end (seconds)."""

TIGHTENING_ADMIN_COMMANDS = frozenset({"KillSwitchEngaged", "AmlFlagRaised", "ProducerRevoked"})
"""The admin commands that can only stop trading (engage a kill switch, raise an AML
flag, revoke a producer's key): decided even when the control topics could not be read
to their end, since a stale view can only make them stop more (a switch engaged twice, a
flag raised on an account a newer fact closed, a key revoked that a newer rotation
replaced: all still stop, never allow; a revocation of a producer this worker has not
seen registered yet is refused, its reason saying the view is stale, to be sent again),
and refusing a kill switch or a revocation while the broker is in trouble is the failure
an operator can least afford. Every other admin command loosens a control or depends on
facts another worker may have written (a kill switch released, an AML flag cleared, KYC,
a deposit, limits, a producer's key registered or rotated, an account opened, a
surveillance detector's config, and the admin-key check and the replay check of every
command): on such a view it is rejected `STALE_STATE` (`stale_admin_reason`), as the
batch's intents are."""


STALE_ADMIN_PREFIX = "STALE_STATE: "
"""How an `AdminCommandRejected` reason refusing a command only for a possibly stale view
begins: the command took no effect and may be sent again (the CLI does, `engine.cli`)."""


def stale_admin_reason(event_type: str, why: str) -> str | None:
    """The `AdminCommandRejected` reason for a command of `event_type` decided while the
    control topics are not known to be read to their end (`why`), or None if it may be
    decided anyway (`TIGHTENING_ADMIN_COMMANDS`)."""
    if event_type in TIGHTENING_ADMIN_COMMANDS:
        return None
    return (
        f"{STALE_ADMIN_PREFIX}{why}; a {event_type} is not decided on a view of the control "
        "topics that may be stale (send it again)"
    )


HOLD_BUFFER = 20_000
"""Control records a holding worker reads ahead and keeps for its next drain, at most
(`ControlFeed.hold`)."""

PartitionKey = tuple[str, int]


@dataclass
class EndQuery:
    """An end-offset request in flight: one future per control partition."""

    futures: Mapping[TopicPartition, Future[object]]
    sent_at: float  # time.monotonic() seconds, not money


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
        self.held: list[Message] = []
        """Records read while the worker held (`hold`): the next `take` or `drain` returns
        them first. Dropped by `assign` (a rebuild reads from where it assigns)."""

    def hold(self) -> None:
        """While the worker decides nothing: read what the consumer has now (up to
        `HOLD_BUFFER` records, kept for the next drain), for its librdkafka logs, which
        confluent-kafka delivers only from a read: unread, a broker outage's lines came
        in a burst when it was over."""
        if len(self.held) < HOLD_BUFFER:
            self.held.extend(self.consumer.consume(num_messages=500, timeout=0))

    def _take_held(self) -> list[Message]:
        held, self.held = self.held, []
        return held

    def assign(self, positions: list[TopicPartition]) -> None:
        """Read `positions` (topic, partition, next offset) live from here on."""
        self.consumer.assign(positions)
        self.held = []
        self.partitions = [TopicPartition(tp.topic, tp.partition) for tp in positions]
        self.floor = {(tp.topic, tp.partition): max(tp.offset, 0) for tp in positions}

    def take(self, timeout: float = 0.0) -> list[Message]:  # seconds, not money
        """Whatever the control consumer holds now, or within `timeout` (a grace): between
        drains the control facts are folded as they come."""
        held = self._take_held()
        if not self.partitions:
            return held
        msgs: list[Message] = self.consumer.consume(num_messages=5000, timeout=timeout)
        return held + msgs if held else msgs

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
        (`CONTROL_DRAIN_SECONDS`) of this call.

        The budget starts here, not when the query was sent: the work between the two
        (decoding, signatures, market data, the lag query) must not spend it. It bounds
        the waits only: what the local queue already holds is read before the clock is
        looked at, and so is every further local batch that brings a partition nearer its
        end (bounded: the ends are fixed). Even a drain that fails returns the records it
        read, to be folded: the control consumer moves on every step."""
        if bound is None:
            bound = CONTROL_DRAIN_SECONDS
        deadline = time.monotonic() + bound
        if query is None:
            return self._failed(self.take(), "no end-offset request", measured=False)
        self.stats["drains"] += 1
        if isinstance(query, KafkaException):
            why = f"end offsets not requested: {query}"
            return self._failed(self.take(), why, measured=False)
        try:
            targets = ends_of(query, deadline)
        except (KafkaException, FutureTimeout) as exc:
            return self._failed(self.take(), f"end offsets unknown: {exc!r}", measured=False)
        consumer = self.consumer
        records = self._take_held()
        short = self._short(targets, self.partitions)
        while short:
            got = consumer.consume(num_messages=5000, timeout=0)
            if got:
                records.extend(got)
                was, short = short, self._short(targets, list(short.values()))
                if not short:
                    break
                if len(short) < len(was) or any(
                    tp.offset > was[key].offset for key, tp in short.items()
                ):
                    continue  # local records that brought an end nearer: no wait, no clock
            if time.monotonic() > deadline:
                behind = {
                    f"{tp.topic}:{tp.partition}": (tp.offset, targets[key])
                    for key, tp in short.items()
                }
                return self._failed(
                    records,
                    f"not read to the end within {bound}s of the drain (position, end): "
                    f"{behind}; records read: {len(records)}",
                )
            first = consumer.poll(CONTROL_POLL_SECONDS)
            if first is not None:
                records.append(first)
                short = self._short(targets, list(short.values()))
        return Drained(records, None)

    def _short(
        self, targets: Mapping[PartitionKey, int], partitions: list[TopicPartition]
    ) -> dict[PartitionKey, TopicPartition]:
        """Those of `partitions` whose position is short of its measured end, with it."""
        floor = self.floor
        out: dict[PartitionKey, TopicPartition] = {}
        for tp in self.consumer.position(
            [TopicPartition(p.topic, p.partition) for p in partitions]
        ):
            key = (tp.topic, tp.partition)
            pos = max(tp.offset, floor.get(key, 0))
            if pos < targets[key]:
                out[key] = TopicPartition(tp.topic, tp.partition, pos)
        return out

    def _failed(self, records: list[Message], why: str, *, measured: bool = True) -> Drained:
        self.stats["failed"] += 1
        return Drained(records, why, measured)


def ends_of(
    query: EndQuery,
    deadline: float,  # time.monotonic() seconds, not money
) -> dict[PartitionKey, int]:
    """The measured end offset of each partition; KafkaException if one is unknown."""
    out: dict[PartitionKey, int] = {}
    for tp, fut in query.futures.items():
        res = fut.result(timeout=max(0.0, deadline - time.monotonic()))
        offset = int(getattr(res, "offset", -1))
        if offset < 0:
            raise KafkaException(f"no end offset for {tp.topic}:{tp.partition}")
        out[(tp.topic, tp.partition)] = offset
    return out
