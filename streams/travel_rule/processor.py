"""`tradetape run travelrule`: answers each `TransferRequested` with one `TransferChecked`.

Consumes transfers.events (read_committed, its own group) and produces the answer to
transfers.checks (which only its principal may write, session 27) in a Kafka transaction
with the consumed offsets (`send_offsets_to_transaction`): an answer is written exactly
when its request is marked consumed. The answer's id is derived from the request's
(`schemas.envelope.derive_event`), so a replay or a retry after a crash gives the same
id. Its state (the accounts' jurisdictions from accounts.events, the requests on
transfers.events, its answers on transfers.checks) is rebuilt from the log at start;
what it decides is the pure `TravelRuleCheck`'s. A record it cannot read (undecodable,
schema-invalid) or a second request of a transfer id is dead-lettered with the reason, in
the same transaction; never a crash.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from deploy import groups
from deploy.deadletter import redelivered_dead_letter
from deploy.groups import group_id
from deploy.kafka import (
    StopAsked,
    admin_client,
    consumer_config,
    end_offsets,
    kafka_error,
    partitions_of,
    producer_config,
    transaction_call_again,
)
from deploy.settings import Settings
from deploy.signals import handling_stop
from schemas import Envelope, MalformedEventError, decode, derive_event, encode
from schemas.admission import refusal
from schemas.events import AccountOpened, TransferChecked, TransferRequested
from schemas.registry import TRAVELRULE_PRODUCER
from schemas.topics import Topic
from streams.travel_rule.rules import PAR_ONLY, AccountFacts, TravelRuleCheck, Valuation

log = logging.getLogger(__name__)

PRODUCER = TRAVELRULE_PRODUCER
"""The producer id of its answers and dead letters: the only one every reader admits a
`TransferChecked` from (`schemas.admission`)."""
STAGE = "travelrule"
INPUT_TOPICS = (Topic.TRANSFERS,)
READ_TOPICS = (Topic.TRANSFERS, Topic.TRANSFER_CHECKS, Topic.ACCOUNTS)
"""Every topic it reads (the ACL model's `Role.TRAVELRULE` reads exactly these)."""
WRITTEN = (Topic.TRANSFER_CHECKS, Topic.DEADLETTER)
"""Every topic it writes: its answers only on transfers.checks, which no other principal
may write (`deploy.acls`)."""
TXN_TIMEOUT_S = 30.0  # seconds, not money
CATCH_UP_S = 30.0  # seconds, not money: reading accounts.events to its end
INIT_SLICE_S = 0.5  # seconds, not money
"""The longest one `init_transactions` call waits before the processor looks at
`stopping` (seconds, not money). librdkafka lets a call that timed out be made again to
resume it, and the call does not return for a signal: until session 26 one 30 s call
against a broker that cannot be reached held a SIGTERM for 30 s, and the processor then
exited 1 (the engine slices its calls alike: `engine.worker.TXN_CALL_SLICE`)."""


class DuplicateTransfer(ValueError):
    """A second `TransferRequested` of a transfer id its account already requested."""


class CatchUpTimeout(RuntimeError):
    """accounts.events was not read to its committed end in time: nothing is decided."""


class Stopped(Exception):
    """Asked to stop while waiting on the broker (initialising its transactions, reading a
    topic to its end): a clean stop, exit 0 (a transaction in flight is aborted first)."""


@dataclass
class TravelRuleState:
    """What the check needs, folded from the log: pure, no I/O."""

    accounts: dict[str, AccountFacts] = field(default_factory=dict)
    requested: dict[tuple[str, str], str] = field(default_factory=dict)
    """(account, transfer id) -> the event id of its first request."""
    checked: set[str] = field(default_factory=set)
    """Request event ids this processor's answers on the log name as their cause."""

    def fold_account(self, event: Envelope[Any]) -> None:
        p = event.payload
        if isinstance(p, AccountOpened) and p.account not in self.accounts:
            self.accounts[p.account] = AccountFacts(p.account, p.jurisdiction)

    def fold_transfer(self, event: Envelope[Any]) -> None:
        p = event.payload
        if isinstance(p, TransferRequested):
            self.requested.setdefault((p.account, p.transfer_id), str(event.event_id))
        elif (
            isinstance(p, TransferChecked)
            and event.producer == PRODUCER
            and event.causation_id is not None
        ):
            self.checked.add(str(event.causation_id))

    def decide(
        self, event: Envelope[Any], valuation: Valuation = PAR_ONLY
    ) -> Envelope[TransferChecked] | None:
        """The answer to a request (folded first), None if it was answered already.
        Raises `DuplicateTransfer` for a second request of one transfer id: answering it
        would also answer the first (the engine and the books key a withdrawal by its
        account and transfer id, and fold only the first request)."""
        p = event.payload
        assert isinstance(p, TransferRequested)
        self.fold_transfer(event)
        first = self.requested[(p.account, p.transfer_id)]
        if first != str(event.event_id):
            raise DuplicateTransfer(
                f"transfer {p.transfer_id} of account {p.account} was requested already"
                f" (event {first}); this request is not checked"
            )
        if str(event.event_id) in self.checked:
            return None
        checked = TravelRuleCheck().check(
            p, event.occurred_at, self.accounts.get(p.account), valuation
        )
        return derive_event(checked, producer=PRODUCER, causation=event)


class LogReader:
    """Every partition of one topic, assigned from its start, read to its committed end
    on demand (`catch_up`): transaction markers and aborted records are passed by the
    partition-EOF positions, as `streams.cli.read_topic` does."""

    def __init__(
        self,
        settings: Settings,
        topic: Topic,
        fold: Callable[[Envelope[Any]], None],
        stopping: Callable[[], bool] = lambda: False,
    ):
        self.name = settings.topic(topic)
        self.fold = fold
        self.stopping = stopping
        """Looked at between polls: a stop asked for during a catch-up ends it (`Stopped`)."""
        self.settings = settings
        self.consumer = Consumer(
            consumer_config(
                settings,
                group_id=group_id(settings.topic_prefix, groups.TRAVELRULE_FACTS, uuid.uuid4().hex),
                **{"enable.partition.eof": True},
            )
        )
        parts = partitions_of(self.consumer, settings, topic)
        self.tps = [TopicPartition(self.name, p) for p in parts]
        self.reached = {p: 0 for p in parts}
        self.consumer.assign([TopicPartition(self.name, p, 0) for p in parts])
        self.admin = admin_client(settings)

    def catch_up(self, timeout: float = CATCH_UP_S) -> None:  # seconds, not money
        """Fold every committed record up to each partition's end as of now. A stop is
        looked at also while the ends are asked for (a request waits up to 10 s on a
        broker that does not answer, and is asked again for up to `timeout`)."""
        try:
            ends = end_offsets(self.admin, self.tps, timeout=timeout, stopping=self.stopping)
        except StopAsked:
            raise Stopped(f"while asking {self.name}'s end offsets") from None
        wanted = {tp.partition: ends[(self.name, tp.partition)] for tp in self.tps}
        deadline = time.monotonic() + timeout
        while any(self.reached[p] < wanted[p] for p in wanted):
            if self.stopping():
                raise Stopped(f"while reading {self.name}")
            if time.monotonic() >= deadline:
                raise CatchUpTimeout(f"{self.name} not read to its end in {timeout:g} s")
            msg = self.consumer.poll(0.2)
            if msg is None:
                continue
            part, off, err = msg.partition(), msg.offset(), msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF and part is not None and off is not None:
                    self.reached[part] = max(self.reached[part], off)
                elif err.fatal():
                    raise KafkaException(err)
                continue
            if part is None or off is None:
                continue
            self.reached[part] = max(self.reached[part], off + 1)
            try:
                event = decode(msg.value(), msg.headers())
            except MalformedEventError:
                continue  # the readers of this topic dead-letter it (the engine)
            if refusal(self.name, event.event_type, event.producer) is None:
                self.fold(event)

    def close(self) -> None:
        self.consumer.close()


class TravelRuleProcessor:
    """The component. One per deployment: `instance` names its transactional id, so a
    restarted process fences the one before it (a second one running at once is fenced
    in turn)."""

    def __init__(
        self, settings: Settings, *, instance: str = "0", valuation: Valuation = PAR_ONLY
    ) -> None:
        self.settings = settings
        self.valuation = valuation
        self.state = TravelRuleState()
        self.stopping = False
        self.transfers = settings.topic(Topic.TRANSFERS)
        self.checks = settings.topic(Topic.TRANSFER_CHECKS)
        self.deadletter = settings.topic(Topic.DEADLETTER)
        prefix = settings.topic_prefix
        self.producer = Producer(
            producer_config(settings, transactional_id=f"{prefix}travelrule-{instance}")
        )
        self.consumer = Consumer(
            consumer_config(settings, group_id=group_id(settings.topic_prefix, groups.TRAVELRULE))
        )
        self.accounts: LogReader | None = None

    # -- start -----------------------------------------------------------------------

    def rebuild(self) -> None:
        """The state from the log: accounts.events, transfers.events and its answers on
        transfers.checks to their ends (a check read on transfers.events, an old log's
        answer, is refused there and does not count: its request is answered again)."""
        stopping = self._stopping
        self.accounts = LogReader(self.settings, Topic.ACCOUNTS, self.state.fold_account, stopping)
        self.accounts.catch_up()
        for topic in (Topic.TRANSFERS, Topic.TRANSFER_CHECKS):
            reader = LogReader(self.settings, topic, self.state.fold_transfer, stopping)
            try:
                reader.catch_up()
            finally:
                reader.close()
        log.info(
            "travel rule: %d accounts, %d transfers requested, %d answered",
            len(self.state.accounts),
            len(self.state.requested),
            len(self.state.checked),
        )

    # -- one record ------------------------------------------------------------------

    def outputs(self, msg: Message) -> list[Envelope[Any]]:
        """What one consumed record makes this processor write (pure but for reading
        accounts.events up to its end before a request of an account not seen yet)."""
        try:
            event = decode(
                msg.value(),
                msg.headers(),
                topic=msg.topic(),
                partition=msg.partition(),
                offset=msg.offset(),
            )
        except MalformedEventError as exc:
            log.warning("dead-lettering %s", exc)
            return [redelivered_dead_letter(msg, exc, stage=STAGE, producer=PRODUCER)]
        why = refusal(self.transfers, event.event_type, event.producer)
        if why is not None:
            log.warning("skipped (the engine dead-letters it): %s", why)
            return []
        if not isinstance(event.payload, TransferRequested):
            self.state.fold_transfer(event)
            return []
        account = event.payload.account
        if account not in self.state.accounts and self.accounts is not None:
            # The engine wrote its AccountOpened before the request was made, usually:
            # read what accounts.events holds now, so the answer is the log's, not the
            # race's. Still unknown: rejected (`ACCOUNT_KNOWN`).
            self.accounts.catch_up()
        try:
            answer = self.state.decide(event, self.valuation)
        except DuplicateTransfer as exc:
            log.warning("dead-lettering %s", exc)
            return [redelivered_dead_letter(msg, exc, stage=STAGE, producer=PRODUCER)]
        return [] if answer is None else [answer]

    # -- the loop --------------------------------------------------------------------

    def _produce(self, events: Iterable[Envelope[Any]]) -> None:
        for event in events:
            key, value, headers = encode(event)
            topic = self.deadletter if event.event_type == "DeadLetter" else self.checks
            while True:
                try:
                    self.producer.produce(topic, key=key, value=value, headers=headers)
                    break
                except BufferError:
                    self.producer.poll(0.05)

    def step(self, msgs: list[Message]) -> int:
        """One transaction: the answers to `msgs` and their offsets. Returns how many
        events it wrote. On a failure the transaction is aborted and the consumer rewound
        to the committed offsets: the same records are read and answered again (the
        state's folds are idempotent, and nothing is marked answered before the commit)."""
        good = [m for m in msgs if m.error() is None]
        for m in msgs:
            err = m.error()
            if err is not None and err.code() != KafkaError._PARTITION_EOF:
                if err.fatal():
                    raise KafkaException(err)
                log.warning("consumer: %s", err)
        if not good:
            return 0
        self.producer.begin_transaction()
        try:
            out: list[Envelope[Any]] = []
            for m in good:
                out.extend(self.outputs(m))
            self._produce(out)
            ends: dict[tuple[str, int], int] = {}
            for m in good:
                k = (str(m.topic()), int(m.partition() or 0))
                ends[k] = max(ends.get(k, 0), int(m.offset() or 0) + 1)
            offsets = [TopicPartition(t, p, o) for (t, p), o in sorted(ends.items())]
            self.producer.send_offsets_to_transaction(
                offsets, self.consumer.consumer_group_metadata(), TXN_TIMEOUT_S
            )
            self.producer.commit_transaction(TXN_TIMEOUT_S)
        except (KafkaException, CatchUpTimeout) as exc:
            err = kafka_error(exc)  # None for a CatchUpTimeout (it carries no KafkaError)
            if err is not None and err.fatal():
                raise
            log.warning("transaction failed, rewinding: %s", exc)
            self.producer.abort_transaction(TXN_TIMEOUT_S)
            self._rewind()
            return 0
        except BaseException:
            # Not left open: until its coordinator's timeout an open transaction holds
            # every read_committed reader of transfers.checks (the engine's) at its start.
            with contextlib.suppress(KafkaException):
                self.producer.abort_transaction(5)
            raise
        for e in out:
            if isinstance(e.payload, TransferChecked) and e.causation_id is not None:
                self.state.checked.add(str(e.causation_id))
        return len(out)

    def _rewind(self) -> None:
        assigned = self.consumer.assignment()
        if not assigned:
            return
        for tp in self.consumer.committed(assigned, timeout=TXN_TIMEOUT_S):
            self.consumer.seek(
                TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else 0)
            )

    def _stopping(self) -> bool:
        return self.stopping

    def _init_transactions(self) -> None:
        """The producer's `init_transactions` for up to `TXN_TIMEOUT_S`, in calls of
        `INIT_SLICE_S` (each one that timed out is made again: librdkafka resumes it), so
        that a stop is seen within a slice (`Stopped`); past the timeout, or on an error
        that cannot be retried, the error goes up (exit 1, `tradetape run` restarts it)."""
        deadline = time.monotonic() + TXN_TIMEOUT_S
        while True:
            if self.stopping:
                raise Stopped("while initialising the producer's transactions")
            began = time.monotonic()
            left = deadline - began  # seconds, not money
            try:
                self.producer.init_transactions(max(0.01, min(INIT_SLICE_S, left)))  # s, not money
                return
            except KafkaException as exc:
                if self.stopping:
                    raise Stopped("while initialising the producer's transactions") from None
                if not transaction_call_again(exc) or time.monotonic() >= deadline:
                    raise
                if time.monotonic() - began < 0.05:  # seconds, not money: no busy loop
                    time.sleep(0.05)  # seconds, not money

    def run(self) -> int:
        """Answer requests until `stopping`; 0 also when stopped before the first answer
        (a SIGTERM while the broker cannot be reached, or during the rebuild)."""
        try:
            self._init_transactions()
            self.rebuild()
            self.consumer.subscribe([self.transfers])
            log.info("travel rule: answering %s", self.transfers)
            while not self.stopping:
                msgs = self.consumer.consume(500, timeout=0.5)
                if msgs:
                    self.step(msgs)
        except Stopped as exc:
            log.info("travel rule: stopped %s", exc)
        finally:
            self.close()
        return 0

    def close(self) -> None:
        self.consumer.close()
        if self.accounts is not None:
            self.accounts.close()
        self.producer.flush(5)


def main(settings: Settings) -> int:
    """`tradetape run travelrule`: the processor in the foreground until SIGTERM/SIGINT."""
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    processor = TravelRuleProcessor(settings)

    def _stop(signum: int, _frame: Any) -> None:
        processor.stopping = True

    with handling_stop(_stop):
        # Said once the handlers are in place: from this line on a SIGTERM stops it cleanly.
        log.info("travel rule starting (pid %d; SIGTERM or Ctrl-C stops it)", os.getpid())
        try:
            return processor.run()
        except (KafkaException, CatchUpTimeout) as exc:
            # one line, not a traceback: the broker is gone or fenced us (a second
            # instance); `tradetape run` restarts it after its backoff
            log.error("travel rule stopped: %s", exc)
            return 1
