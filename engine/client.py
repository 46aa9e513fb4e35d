"""The producer SDK: sign intents, publish them idempotently, await their decisions."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from uuid import UUID

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from deploy import groups
from deploy.groups import group_id
from deploy.kafka import admin_client, consumer_config, end_offsets, partitions_of, producer_config
from deploy.settings import Settings
from engine.auth import intent_digest, key_path, read_private_key, sign, sign_admin
from schemas import Envelope, MalformedEventError, decode, encode, new_event
from schemas.envelope import EventPayload
from schemas.events import CancelIntent, IntentRejected, OrderIntent
from schemas.events.admin import ADMIN_COMMAND_TYPES
from schemas.ids import uuid7
from schemas.registry import payload_class
from schemas.topics import Topic

DECISION_TYPES = frozenset({"RiskDecision", "IntentRejected", "AdminCommandRejected"})
ANSWER_TOPICS = (Topic.DECISIONS, Topic.ACCOUNTS, Topic.RISK_CONFIG)
"""Where the engine answers a strategy: decisions and rejections, and accepted admin facts
(a deposit's on accounts.events since session 22; transfers.events holds no answer). Not
an accepted `DetectorConfigChanged`: it is on surveillance.config, which a strategy does
not read (the detectors' thresholds are not a trader's to know): `admin_answer_topics`."""


def admin_answer_topics(command_types: Iterable[str] = ADMIN_COMMAND_TYPES) -> tuple[Topic, ...]:
    """`ANSWER_TOPICS` and the topics the engine writes these admin commands' accepted
    facts on (each type's `TOPIC`): what a watcher awaiting them reads. An accepted
    `DetectorConfigChanged` is on surveillance.config, which a watcher of `ANSWER_TOPICS`
    never read: `tradetape publish` waited --wait for it and reported no answer (h125)."""
    extra = [Topic(payload_class(t, 1).TOPIC) for t in command_types if t in ADMIN_COMMAND_TYPES]
    return tuple(dict.fromkeys([*ANSWER_TOPICS, *extra]))


ADMIN_ANSWER_TOPICS = admin_answer_topics()
"""What an admin's watcher may read: `ANSWER_TOPICS` and surveillance.config."""
UNAUTHENTICATED_REASONS = frozenset(
    {"UNKNOWN_PRODUCER", "PRODUCER_REVOKED", "BAD_SIGNATURE", "WRONG_PARTITION"}
)
"""Rejections decided before a signature verified (`engine.state.UNAUTHENTICATED`): anyone
can provoke one for any client order id, so they answer only their own envelope."""

IntentKey = tuple[str, str, str, str]
"""(producer_id, account, client_order_id, intent digest): what a resend repeats."""
RecordPos = tuple[int, int]
"""(partition, offset) of a record on the intents topic, as the broker acknowledged it."""

WATCHER_CAPACITY = 10_000
"""The most answers a `DecisionWatcher` holds per index (by correlation id, by intent);
past it the oldest-read are dropped. An `IntentPublisher`'s watcher holds only answers to
its own pending events and drops each once it was awaited."""
MAX_PENDING = 10_000
"""The most published-but-not-yet-awaited events an `IntentPublisher` remembers (what
`await_decision` matches answers and resends by; a few hundred bytes each): past it the
oldest are forgotten, with any answer held for them, and awaiting one of those returns
None after its timeout. Await answers within this many publications (or pass a larger
`max_pending`)."""
RECENT_ANSWERS = 1024
"""Answers `await_decision` returned that it still returns again (a repeated await)."""


def _bounded_put(store: dict[Any, Any], key: Any, value: Any, capacity: int) -> None:
    """`store[key] = value`, then drop the oldest-inserted entries beyond `capacity`."""
    store[key] = value
    while len(store) > capacity:
        del store[next(iter(store))]


def intent_key(event: Envelope[Any]) -> IntentKey | None:
    """The idempotency key and digest of a published intent (None for anything else)."""
    p = event.payload
    if not isinstance(p, OrderIntent | CancelIntent):
        return None
    return (p.producer_id, p.account, p.client_order_id, intent_digest(p))


def _answered_intent(event: Envelope[Any]) -> IntentKey | None:
    """The intent a recorded decision answers, as an `IntentKey`, if it names one."""
    p = event.payload
    if event.event_type not in ("RiskDecision", "IntentRejected"):
        return None
    if isinstance(p, IntentRejected) and str(p.reason) in UNAUTHENTICATED_REASONS:
        return None
    coid, digest = getattr(p, "client_order_id", None), getattr(p, "intent_digest", None)
    if not coid or not digest:
        return None
    return (p.producer_id, p.account, coid, digest)


def _unauthenticated(event: Envelope[Any]) -> bool:
    """A rejection decided before a signature verified (`UNAUTHENTICATED_REASONS`)."""
    p = event.payload
    return isinstance(p, IntentRejected) and str(p.reason) in UNAUTHENTICATED_REASONS


def _refused_record(event: Envelope[Any]) -> RecordPos | None:
    """The intents record a rejection names (`IntentRejected.intent_partition`/`_offset`,
    since session 24), or None."""
    p = event.payload
    if not isinstance(p, IntentRejected):
        return None
    if p.intent_partition is None or p.intent_offset is None:
        return None
    return (p.intent_partition, p.intent_offset)


class DecisionWatcher:
    """Reads the engine's answers (read_committed) from their end, indexed by correlation id
    and, for recorded intent decisions, by the intent they decided (`IntentKey`).

    An answer is a decision or rejection on `risk.decisions`, or, for an admin command,
    the accepted fact the engine re-published on its domain topic. A resent intent in a
    new envelope is answered with the *original* decision (its original correlation id,
    docs/engine.md, *Idempotency*): `wait(..., intent=intent_key(event))` finds it by the
    intent's producer, account, client order id and digest.

    Bounded: each index holds at most `capacity` answers (the oldest-read are dropped).
    `keep(correlation_id, intent)` (None: every answer) says which answers to hold at
    all; `forget` drops answers that were consumed. `topics` are the topics it reads
    (`ANSWER_TOPICS`: a strategy's; an admin command's answer may be on another, see
    `admin_answer_topics`).
    """

    capacity: int = WATCHER_CAPACITY
    keep: Callable[[UUID, IntentKey | None], bool] | None = None

    def __init__(
        self,
        settings: Settings,
        *,
        from_beginning: bool = False,
        capacity: int = WATCHER_CAPACITY,
        keep: Callable[[UUID, IntentKey | None], bool] | None = None,
        topics: Iterable[Topic] = ANSWER_TOPICS,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.keep = keep
        self._consumer = Consumer(
            consumer_config(
                settings, group_id=group_id(settings.topic_prefix, groups.WATCH, uuid.uuid4().hex)
            )
        )
        admin = admin_client(settings)
        every = [
            TopicPartition(settings.topic(t), p)
            for t in dict.fromkeys(topics)
            for p in partitions_of(self._consumer, settings, t)
        ]
        start = end_offsets(admin, every, earliest=from_beginning)
        self._consumer.assign(
            [
                TopicPartition(tp.topic, tp.partition, start[(tp.topic, tp.partition)])
                for tp in every
            ]
        )
        self.by_correlation: dict[UUID, Envelope[Any]] = {}
        self.by_intent: dict[IntentKey, Envelope[Any]] = {}
        self.by_record: dict[RecordPos, Envelope[Any]] = {}
        """Rejections decided before a signature verified, by the intents record they
        name: the publisher's own record's refusal, held apart from a copy's."""
        self._lock = threading.Lock()

    def pump(self, timeout: float = 0.1) -> int:  # seconds, not money
        n = 0
        for msg in self._consumer.consume(num_messages=5000, timeout=timeout):
            if msg.error():
                continue
            try:
                event = decode(msg.value(), msg.headers(), topic=msg.topic())
            except MalformedEventError:
                continue
            decision = event.event_type in DECISION_TYPES
            accepted_admin = event.producer == "engine" and event.event_type in ADMIN_COMMAND_TYPES
            if decision or accepted_admin:
                answered = _answered_intent(event)
                cid = event.correlation_id
                if self.keep is not None and not self.keep(cid, answered):
                    n += 1
                    continue
                with self._lock:
                    held = self.by_correlation.get(cid)
                    # A decision outranks a fact of the same correlation: the drawdown
                    # brake's KillSwitchEngaged carries its intent's correlation, on another
                    # topic, and may be read first. And a recorded decision outranks a
                    # rejection decided before any signature (`UNAUTHENTICATED_REASONS`):
                    # anyone can provoke one under any correlation id (a copy of a signed
                    # intent sent to another partition is refused WRONG_PARTITION with the
                    # intent's own envelope), while the intent sent right is decided.
                    if (
                        held is None
                        or (decision and held.event_type not in DECISION_TYPES)
                        or (answered is not None and _unauthenticated(held))
                    ):
                        _bounded_put(self.by_correlation, cid, event, self.capacity)
                    if answered is not None and answered not in self.by_intent:
                        _bounded_put(self.by_intent, answered, event, self.capacity)
                    refused = _refused_record(event) if _unauthenticated(event) else None
                    if refused is not None:
                        _bounded_put(self.by_record, refused, event, self.capacity)
                n += 1
        return n

    def wait(
        self,
        correlation_id: UUID,
        timeout: float = 30.0,  # seconds, not money
        *,
        intent: IntentKey | None = None,
        records: frozenset[RecordPos] | None = None,
    ) -> Envelope[Any] | None:
        """The answer with this correlation id or, given the published intent's key, the
        recorded decision of that intent (how a resend in a new envelope is answered).

        With `intent`, only a decision answers: a fact the intent caused (the drawdown
        brake's `KillSwitchEngaged`) shares its correlation but is not its answer.

        `records`: where the broker acknowledged the publisher's own records of this
        envelope (`IntentPublisher.records_of`). A rejection decided before a signature
        verified that names another record answers nothing: a copy of the envelope sent
        elsewhere by someone else (refused `WRONG_PARTITION`, or `BAD_SIGNATURE` if
        altered) under the same correlation id, read before the intent's own decision.
        Without `records` (or from an engine that names no record) such a refusal read
        first still answers until the decision is read."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                found = self.by_correlation.get(correlation_id)
                if intent is not None and found is not None:
                    if found.event_type not in DECISION_TYPES:
                        found = None
                if records and found is not None and _unauthenticated(found):
                    refused = _refused_record(found)
                    if refused is not None and refused not in records:
                        found = None  # a copy's refusal, not this publisher's record's
                if intent is not None and (found is None or _unauthenticated(found)):
                    # The intent's recorded decision, if read, before a rejection anyone
                    # could have provoked under its correlation id.
                    found = self.by_intent.get(intent) or found
                if found is None and records:
                    # The publisher's own record refused (its producer unknown, revoked):
                    # held apart if a copy's refusal was read first.
                    found = next(
                        (self.by_record[r] for r in sorted(records) if r in self.by_record),
                        None,
                    )
            if found is not None:
                return found
            if time.monotonic() >= deadline:
                return None
            self.pump(0.1)

    def forget(
        self,
        correlation_id: UUID | None = None,
        intent: IntentKey | None = None,
        records: frozenset[RecordPos] = frozenset(),
    ) -> None:
        """Drop the answer held under `correlation_id`, the one held for `intent` and
        those held for `records`."""
        with self._lock:
            if correlation_id is not None:
                self.by_correlation.pop(correlation_id, None)
            if intent is not None:
                self.by_intent.pop(intent, None)
            for r in records:
                self.by_record.pop(r, None)

    def close(self) -> None:
        self._consumer.close()


class IntentPublisher:
    """Publishes signed intents (and admin commands) with an idempotent producer.

    With `watch` (the default) it remembers each event it published until its answer was
    awaited (`await_decision`): at most `max_pending` of them (`MAX_PENDING`; the oldest
    are forgotten first), and its watcher holds only the answers to those. An answer
    awaited is dropped from both, so a long-lived publisher that awaits its answers holds
    nothing for them; the last `RECENT_ANSWERS` answers are still returned to a repeated
    await. With `watch=False` it remembers nothing. Its watcher reads `answer_topics`
    (`ANSWER_TOPICS`; an admin awaiting a `DetectorConfigChanged` passes
    `ADMIN_ANSWER_TOPICS`, else its accepted fact is never seen). `close()` releases the
    producer and the watcher's consumer (their threads keep reconnecting to a gone broker
    otherwise).
    """

    def __init__(
        self,
        settings: Settings,
        producer_id: str,
        key: Ed25519PrivateKey | None = None,
        *,
        watch: bool = True,
        max_pending: int = MAX_PENDING,
        answer_topics: Iterable[Topic] = ANSWER_TOPICS,
        keep_records: int = 0,
    ) -> None:
        """`keep_records` (with `watch=False`): remember where the broker put the last so
        many intents published (`records_of`), for a watcher of the caller's own."""
        self.settings = settings
        self.keep_records = keep_records
        self.producer_id = producer_id
        if key is None:
            path = key_path(settings.resolved_data_dir, producer_id)
            key = read_private_key(path) if path.exists() else None
        self.key = key
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self.max_pending = max_pending
        self._pending: OrderedDict[UUID, IntentKey | None] = OrderedDict()
        """Correlation ids published and not yet answered, with their intent's key."""
        self._pending_keys: Counter[IntentKey] = Counter()
        """How many pending events repeat each intent (a resend repeats its original)."""
        self._answered: OrderedDict[UUID, Envelope[Any]] = OrderedDict()
        self._records: OrderedDict[UUID, set[RecordPos]] = OrderedDict()
        """Where the broker acknowledged each pending intent's records (partition, offset),
        or with `watch=False` each of the last `keep_records` intents': what tells its own
        refusal from a copy's (`DecisionWatcher.wait`)."""
        self._state_lock = threading.Lock()
        self._closed = False
        self._producer = Producer(producer_config(settings))
        self._watcher: DecisionWatcher | None = None
        if watch:
            try:
                self._watcher = DecisionWatcher(
                    settings, capacity=max_pending, keep=self._awaits, topics=answer_topics
                )
            except BaseException:
                self._producer.close()  # nothing was produced: nothing to wait for
                raise
        self.sent = 0
        self.delivered = 0
        self.delivery_errors: list[str] = []

    def _on_delivery(
        self, err: KafkaError | None, msg: Message, correlation_id: UUID | None = None
    ) -> None:
        if err is None:
            self.delivered += 1
            partition, offset = msg.partition(), msg.offset()
            if correlation_id is not None and partition is not None and offset is not None:
                with self._state_lock:
                    if self._watcher is None or correlation_id in self._pending:
                        self._records.setdefault(correlation_id, set()).add((partition, offset))
                    if self._watcher is None:
                        while len(self._records) > self.keep_records:
                            self._records.popitem(last=False)
        elif len(self.delivery_errors) < 100:
            self.delivery_errors.append(str(err))

    def _produce(self, topic: Topic, event: Envelope[Any]) -> None:
        key, value, headers = encode(event)
        on_delivery: Callable[[KafkaError | None, Message], None] = self._on_delivery
        if topic == Topic.INTENTS and (self._watcher is not None or self.keep_records > 0):
            cid = event.correlation_id

            def with_record(err: KafkaError | None, msg: Message) -> None:
                self._on_delivery(err, msg, cid)  # where its record went, for `wait`

            on_delivery = with_record

        self._producer.produce(
            self.settings.topic(topic),
            key=key,
            value=value,
            headers=headers,
            on_delivery=on_delivery,
        )
        self.sent += 1
        self._producer.poll(0)

    def sign(self, payload: OrderIntent | CancelIntent) -> OrderIntent | CancelIntent:
        if self.key is None:
            path = key_path(self.settings.resolved_data_dir, self.producer_id)
            raise ValueError(
                f"no private key for producer {self.producer_id}: no key file {path} "
                f"(`tradetape producer add {self.producer_id} --accounts ...` creates it; "
                "--data-dir or TRADETAPE_DATA_DIR if it is in another data directory)"
            )
        return sign(payload, self.key)

    def _awaits(self, correlation_id: UUID, intent: IntentKey | None) -> bool:
        """Whether an answer read is one this publisher may be asked for."""
        return correlation_id in self._pending or (
            intent is not None and intent in self._pending_keys
        )

    def _remember(self, event: Envelope[Any]) -> None:
        """Note a published event as pending (before it is produced: its answer may be
        read before `produce` returns)."""
        if self._watcher is None:
            return
        found = intent_key(event)
        with self._state_lock:
            if event.correlation_id in self._pending:
                return  # the same envelope again: pending once
            self._pending[event.correlation_id] = found
            if found is not None:
                self._pending_keys[found] += 1
            while len(self._pending) > self.max_pending:
                old, old_key = self._pending.popitem(last=False)
                self._release(old, old_key)

    def records_of(self, correlation_id: UUID) -> frozenset[RecordPos] | None:
        """Where the broker acknowledged this pending event's records on the intents topic
        (after a `flush`), or None if none is known."""
        with self._state_lock:
            found = self._records.get(correlation_id)
            return frozenset(found) if found else None

    def _release(self, correlation_id: UUID, key: IntentKey | None) -> None:
        """Forget a pending event and drop the answers held only for it (under
        `_state_lock`)."""
        assert self._watcher is not None
        self._watcher.forget(
            correlation_id, records=frozenset(self._records.pop(correlation_id, ()))
        )
        if key is not None:
            self._pending_keys[key] -= 1
            if self._pending_keys[key] <= 0:
                del self._pending_keys[key]
                self._watcher.forget(intent=key)

    def _send(self, topic: Topic, event: Envelope[Any]) -> None:
        self._remember(event)
        try:
            self._produce(topic, event)
        except BaseException:
            if self._watcher is not None:
                with self._state_lock:
                    if event.correlation_id in self._pending:
                        self._release(event.correlation_id, self._pending.pop(event.correlation_id))
            raise

    def publish_event(self, event: Envelope[Any]) -> Envelope[Any]:
        self._send(Topic(event.topic), event)
        return event

    def publish(
        self, payload: EventPayload, *, sign_it: bool = True, admin: bool = False
    ) -> Envelope[Any]:
        """Sign (intents) and publish. Admin commands go to the admin topic as-is."""
        if (
            sign_it
            and isinstance(payload, OrderIntent | CancelIntent)
            and payload.signature is None
        ):
            payload = self.sign(payload)
        if admin and self.key is not None and getattr(payload, "signature", None) is None:
            # Signed by the admin's key file when there is one (see docs/engine.md).
            event_id = uuid7()
            payload = sign_admin(event_id, payload, self.key)
            event = new_event(payload, producer=self.producer_id, event_id=event_id)
        else:
            event = new_event(payload, producer=self.producer_id)
        if admin:
            self._send(Topic.ADMIN, event)
            return event
        return self.publish_event(event)

    def flush(self, timeout: float = 30.0) -> int:  # seconds, not money
        """Wait for the broker's acknowledgements; the number of records still in flight."""
        return int(self._producer.flush(timeout))

    @property
    def undelivered(self) -> int:
        """Records published but not (yet) acknowledged by the broker: after a `flush` that
        returned 0, the ones the broker refused (`delivery_errors` says why)."""
        return self.sent - self.delivered

    def await_decision(
        self,
        correlation_id: UUID,
        timeout: float = 30.0,  # seconds, not money
    ) -> Envelope[Any] | None:
        """The engine's answer to the event that started `correlation_id`, or None on
        timeout. For an intent this publisher published, a resend included, that is the
        decision recorded for it: a resend in a new envelope is answered with the original
        decision, which carries the original's correlation id.

        An answer found is then dropped from what the publisher holds (the last
        `RECENT_ANSWERS` are still returned to a repeated await); on a timeout the event
        stays pending."""
        if self._watcher is None:
            raise RuntimeError("publisher created with watch=False")
        with self._state_lock:
            again = self._answered.get(correlation_id)
            key = self._pending.get(correlation_id)
        if again is not None:
            return again
        self.flush()
        found = self._watcher.wait(
            correlation_id, timeout, intent=key, records=self.records_of(correlation_id)
        )
        if found is not None:
            with self._state_lock:
                if correlation_id in self._pending:
                    self._release(correlation_id, self._pending.pop(correlation_id))
                if found.correlation_id != correlation_id and not self._awaits(
                    found.correlation_id, None
                ):
                    # a resend's answer, held under its original's correlation id
                    self._watcher.forget(found.correlation_id)
                _bounded_put(self._answered, correlation_id, found, RECENT_ANSWERS)
        return found

    def close(self) -> None:
        """Flush what is in flight, then release the producer and the watcher's consumer.
        Idempotent; the publisher cannot publish afterwards."""
        if self._closed:
            return
        self._closed = True
        try:
            self.flush()
        finally:
            if self._watcher is not None:
                self._watcher.close()
            self._producer.close()

    def __enter__(self) -> IntentPublisher:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def load_key(settings: Settings, producer_id: str) -> Ed25519PrivateKey:
    return read_private_key(key_path(settings.resolved_data_dir, producer_id))


def data_path(settings: Settings, *parts: str) -> Path:
    return settings.resolved_data_dir.joinpath(*parts)
