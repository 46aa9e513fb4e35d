"""The producer SDK: sign intents, publish them idempotently, await their decisions."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any
from uuid import UUID

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from deploy.kafka import consumer_config, end_offsets, partitions_of, producer_config
from deploy.settings import Settings
from engine.auth import key_path, read_private_key, sign, sign_admin
from schemas import Envelope, MalformedEventError, decode, encode, new_event
from schemas.envelope import EventPayload
from schemas.events import CancelIntent, OrderIntent
from schemas.events.admin import ADMIN_COMMAND_TYPES
from schemas.ids import uuid7
from schemas.topics import Topic

DECISION_TYPES = frozenset({"RiskDecision", "IntentRejected", "AdminCommandRejected"})
ANSWER_TOPICS = (Topic.DECISIONS, Topic.ACCOUNTS, Topic.TRANSFERS, Topic.RISK_CONFIG)
"""Where the engine answers: decisions and rejections, and accepted admin facts."""


class DecisionWatcher:
    """Reads the engine's answers (read_committed) from their end, indexed by correlation id.

    An answer is a decision or rejection on `risk.decisions`, or, for an admin command,
    the accepted fact the engine re-published on its domain topic.
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
            accepted_admin = event.producer == "engine" and event.event_type in ADMIN_COMMAND_TYPES
            if event.event_type in DECISION_TYPES or accepted_admin:
                with self._lock:
                    if event.correlation_id not in self.by_correlation:
                        self.by_correlation[event.correlation_id] = event
                        self.received_at[event.correlation_id] = time.time()
                n += 1
        return n

    def wait(self, correlation_id: UUID, timeout: float = 30.0) -> Envelope[Any] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                found = self.by_correlation.get(correlation_id)
            if found is not None:
                return found
            self.pump(0.1)
        return None

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

    def sign(self, payload: OrderIntent | CancelIntent) -> OrderIntent | CancelIntent:
        if self.key is None:
            raise ValueError(f"no private key for producer {self.producer_id}")
        return sign(payload, self.key)

    def publish_event(self, event: Envelope[Any]) -> Envelope[Any]:
        key, value, headers = encode(event)
        self._producer.produce(
            self.settings.topic(Topic(event.topic)), key=key, value=value, headers=headers
        )
        self._producer.poll(0)
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
            key, value, headers = encode(event)
            self._producer.produce(
                self.settings.topic(Topic.ADMIN), key=key, value=value, headers=headers
            )
            self._producer.poll(0)
            return event
        return self.publish_event(event)

    def flush(self, timeout: float = 30.0) -> int:
        return int(self._producer.flush(timeout))

    def await_decision(self, correlation_id: UUID, timeout: float = 30.0) -> Envelope[Any] | None:
        """The decision for the intent that started `correlation_id`, or None on timeout."""
        if self._watcher is None:
            raise RuntimeError("publisher created with watch=False")
        self.flush()
        return self._watcher.wait(correlation_id, timeout)

    def close(self) -> None:
        self.flush()
        if self._watcher is not None:
            self._watcher.close()


def load_key(settings: Settings, producer_id: str) -> Ed25519PrivateKey:
    return read_private_key(key_path(settings.resolved_data_dir, producer_id))


def data_path(settings: Settings, *parts: str) -> Path:
    return settings.resolved_data_dir.joinpath(*parts)
