"""The producer SDK: sign intents, publish them idempotently, await their decisions."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any
from uuid import UUID

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from deploy.kafka import consumer_config, end_offsets, partitions_of, producer_config
from deploy.settings import Settings
from engine.auth import intent_digest, key_path, read_private_key, sign, sign_admin
from schemas import Envelope, MalformedEventError, decode, encode, new_event
from schemas.envelope import EventPayload
from schemas.events import CancelIntent, IntentRejected, OrderIntent
from schemas.events.admin import ADMIN_COMMAND_TYPES
from schemas.ids import uuid7
from schemas.topics import Topic

DECISION_TYPES = frozenset({"RiskDecision", "IntentRejected", "AdminCommandRejected"})
ANSWER_TOPICS = (Topic.DECISIONS, Topic.ACCOUNTS, Topic.TRANSFERS, Topic.RISK_CONFIG)
"""Where the engine answers: decisions and rejections, and accepted admin facts."""
UNAUTHENTICATED_REASONS = frozenset({"UNKNOWN_PRODUCER", "BAD_SIGNATURE"})
"""Rejections decided before a signature verified (`engine.state.UNAUTHENTICATED`): anyone
can provoke one for any client order id, so they answer only their own envelope."""

IntentKey = tuple[str, str, str, str]
"""(producer_id, account, client_order_id, intent digest): what a resend repeats."""


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


class DecisionWatcher:
    """Reads the engine's answers (read_committed) from their end, indexed by correlation id
    and, for recorded intent decisions, by the intent they decided (`IntentKey`).

    An answer is a decision or rejection on `risk.decisions`, or, for an admin command,
    the accepted fact the engine re-published on its domain topic. A resent intent in a
    new envelope is answered with the *original* decision (its original correlation id,
    docs/engine.md, *Idempotency*): `wait(..., intent=intent_key(event))` finds it by the
    intent's producer, account, client order id and digest.
    """

    def __init__(self, settings: Settings, *, from_beginning: bool = False) -> None:
        self._consumer = Consumer(consumer_config(settings, group_id=f"watch-{uuid.uuid4().hex}"))
        admin = AdminClient({"bootstrap.servers": settings.bootstrap})
        every = [
            TopicPartition(settings.topic(t), p)
            for t in ANSWER_TOPICS
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
        self.received_at: dict[UUID, float] = {}
        self._lock = threading.Lock()

    def pump(self, timeout: float = 0.1) -> int:
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
                with self._lock:
                    held = self.by_correlation.get(cid)
                    # A decision outranks a fact of the same correlation: the drawdown
                    # brake's KillSwitchEngaged carries its intent's correlation, on another
                    # topic, and may be read first.
                    if held is None or (decision and held.event_type not in DECISION_TYPES):
                        self.by_correlation[cid] = event
                        self.received_at.setdefault(cid, time.time())
                    if answered is not None:
                        self.by_intent.setdefault(answered, event)
                n += 1
        return n

    def wait(
        self,
        correlation_id: UUID,
        timeout: float = 30.0,  # seconds, not money
        *,
        intent: IntentKey | None = None,
    ) -> Envelope[Any] | None:
        """The answer with this correlation id or, given the published intent's key, the
        recorded decision of that intent (how a resend in a new envelope is answered).

        With `intent`, only a decision answers: a fact the intent caused (the drawdown
        brake's `KillSwitchEngaged`) shares its correlation but is not its answer."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                found = self.by_correlation.get(correlation_id)
                if intent is not None and found is not None:
                    if found.event_type not in DECISION_TYPES:
                        found = None
                if found is None and intent is not None:
                    found = self.by_intent.get(intent)
            if found is not None:
                return found
            if time.monotonic() >= deadline:
                return None
            self.pump(0.1)

    def close(self) -> None:
        self._consumer.close()


class IntentPublisher:
    """Publishes signed intents (and admin commands) with an idempotent producer."""

    def __init__(
        self,
        settings: Settings,
        producer_id: str,
        key: Ed25519PrivateKey | None = None,
        *,
        watch: bool = True,
    ) -> None:
        self.settings = settings
        self.producer_id = producer_id
        if key is None:
            path = key_path(settings.resolved_data_dir, producer_id)
            key = read_private_key(path) if path.exists() else None
        self.key = key
        self._producer = Producer(producer_config(settings))
        self._watcher = DecisionWatcher(settings) if watch else None
        self._intents: dict[UUID, IntentKey] = {}
        self.sent = 0
        self.delivered = 0
        self.delivery_errors: list[str] = []

    def _on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        if err is None:
            self.delivered += 1
        elif len(self.delivery_errors) < 100:
            self.delivery_errors.append(str(err))

    def _produce(self, topic: Topic, event: Envelope[Any]) -> None:
        key, value, headers = encode(event)
        self._producer.produce(
            self.settings.topic(topic),
            key=key,
            value=value,
            headers=headers,
            on_delivery=self._on_delivery,
        )
        self.sent += 1
        self._producer.poll(0)

    def sign(self, payload: OrderIntent | CancelIntent) -> OrderIntent | CancelIntent:
        if self.key is None:
            raise ValueError(f"no private key for producer {self.producer_id}")
        return sign(payload, self.key)

    def publish_event(self, event: Envelope[Any]) -> Envelope[Any]:
        self._produce(Topic(event.topic), event)
        found = intent_key(event)
        if found is not None:
            self._intents[event.correlation_id] = found
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
            self._produce(Topic.ADMIN, event)
            return event
        return self.publish_event(event)

    def flush(self, timeout: float = 30.0) -> int:
        """Wait for the broker's acknowledgements; the number of records still in flight."""
        return int(self._producer.flush(timeout))

    @property
    def undelivered(self) -> int:
        """Records published but not (yet) acknowledged by the broker: after a `flush` that
        returned 0, the ones the broker refused (`delivery_errors` says why)."""
        return self.sent - self.delivered

    def await_decision(self, correlation_id: UUID, timeout: float = 30.0) -> Envelope[Any] | None:
        """The engine's answer to the event that started `correlation_id`, or None on
        timeout. For an intent this publisher published, a resend included, that is the
        decision recorded for it: a resend in a new envelope is answered with the original
        decision, which carries the original's correlation id."""
        if self._watcher is None:
            raise RuntimeError("publisher created with watch=False")
        self.flush()
        return self._watcher.wait(correlation_id, timeout, intent=self._intents.get(correlation_id))

    def close(self) -> None:
        self.flush()
        if self._watcher is not None:
            self._watcher.close()


def load_key(settings: Settings, producer_id: str) -> Ed25519PrivateKey:
    return read_private_key(key_path(settings.resolved_data_dir, producer_id))


def data_path(settings: Settings, *parts: str) -> Path:
    return settings.resolved_data_dir.joinpath(*parts)
