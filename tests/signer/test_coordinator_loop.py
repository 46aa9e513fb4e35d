"""The coordinator's Kafka loop against an in-memory stand-in (review helper-46, d1).

A malformed share from an authentic, chosen participant used to escape `sign()` as a raw
MalformedInputError: no `SigningFailed` on the log, and `tradetape sign` died with a
traceback. Now the share is checked on arrival, refused naming its sender, and the round
fails with that participant as the culprit, recorded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import TopicPartition
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import signer_ffi.coordinator as coordinator
from deploy.settings import Settings
from schemas import decode_message, encode, new_event
from schemas.events import (
    ProducerRegistered,
    SignatureSharePublished,
    SigningFailed,
    SigningMessageRejected,
    SigningPackageIssued,
    SigningRequested,
)
from schemas.topics import Topic
from signer_ffi.authn import Requester, RequesterRegistry, public_hex, sign_round_message
from signer_ffi.coordinator import SigningCoordinator, SigningFailedError, share_problem
from signer_ffi.frost import generate_with_dealer
from signer_ffi.group import SignerGroup
from signer_ffi.participant import ParticipantState

from .fakekafka import Broker

REQUESTER = "coord"
DIGEST = bytes(range(32))
Tamper = Callable[[int, Any], Any]


class Network:
    """A 2-of-3 group whose participants answer from a thread, through the stand-in."""

    def __init__(self, broker: Broker, settings: Settings) -> None:
        self.broker, self.settings = broker, settings
        shares, public = generate_with_dealer(2, 3)
        self.identities = {s.identifier: Ed25519PrivateKey.generate() for s in shares}
        self.group = SignerGroup(
            threshold=2,
            identifiers=public.identifiers,
            public_key_package=public,
            identity_keys={i: public_hex(k) for i, k in self.identities.items()},
            requesters=(REQUESTER,),
        )
        self.requester = Requester(REQUESTER, Ed25519PrivateKey.generate())
        registry = RequesterRegistry()
        registry.apply(
            new_event(
                ProducerRegistered(
                    producer_id=REQUESTER,
                    public_key=self.requester.public_key,
                    accounts=(),
                    registered_by="admin",
                ),
                producer="engine",
            )
        )
        self.states = {
            s.identifier: ParticipantState(
                share=s, group=self.group, identity=self.identities[s.identifier], registry=registry
            )
            for s in shares
        }
        self.tamper: Tamper = lambda _i, out: out
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._answer, daemon=True)

    def _answer(self) -> None:
        consumer = self.broker.consumer_class()()
        producer = self.broker.producer_class()()
        consumer.assign(
            [
                TopicPartition(self.settings.topic(t), 0, 0)
                for t in (Topic.SIGNING_REQUESTS, Topic.SIGNING_MESSAGES)
            ]
        )
        while not self.stop.is_set():
            msg = consumer.poll(0.01)
            if msg is None:
                continue
            ev = decode_message(msg)
            for i, state in self.states.items():
                if isinstance(ev.payload, SigningRequested):
                    out = state.on_request(ev, 0.0)
                elif isinstance(ev.payload, SigningPackageIssued):
                    out = state.on_package(ev)
                else:
                    continue
                if out is not None:
                    out = self.tamper(i, out)
                    key, value, headers = encode(new_event(out, producer=state.name, causation=ev))
                    producer.produce(
                        self.settings.topic(out.TOPIC), key=key, value=value, headers=headers
                    )

    def coordinator(self) -> SigningCoordinator:
        return SigningCoordinator(self.settings, self.group, self.requester)

    def events(self, topic: Topic) -> list[Any]:
        return [decode_message(r).payload for r in self.broker.records(self.settings.topic(topic))]


@pytest.fixture
def network(monkeypatch: pytest.MonkeyPatch) -> Iterator[Network]:
    broker = Broker()
    settings = Settings()

    def assign_from_end(consumer: Any, settings: Settings, topics: list[Topic]) -> None:
        consumer.assign(
            [
                TopicPartition(settings.topic(t), 0, len(broker.records(settings.topic(t))))
                for t in topics
            ]
        )

    monkeypatch.setattr(coordinator, "Producer", broker.producer_class())
    monkeypatch.setattr(coordinator, "Consumer", broker.consumer_class())
    monkeypatch.setattr(coordinator, "assign_from_end", assign_from_end)
    net = Network(broker, settings)
    net.thread.start()
    yield net
    net.stop.set()
    net.thread.join(5)


def test_round_over_the_stand_in_signs(network: Network) -> None:
    with network.coordinator() as c:
        done = c.sign(DIGEST, purpose="t", timeout=10)
    assert done.payload.participants == (1, 2)


@pytest.mark.parametrize("bad", ["ff" * 32, "00", "abababab"])
def test_malformed_share_from_a_chosen_signer_is_a_recorded_failure(
    network: Network, bad: str
) -> None:
    def tamper(i: int, out: Any) -> Any:
        if i == 2 and isinstance(out, SignatureSharePublished):
            forged = out.model_copy(update={"share_hex": bad, "signature": None})
            return sign_round_message(forged, network.identities[2])  # authentic, but bad
        return out

    network.tamper = tamper
    with network.coordinator() as c, pytest.raises(SigningFailedError) as err:
        c.sign(DIGEST, purpose="t", timeout=10)
    assert err.value.event.payload.culprits == (2,)
    assert "participant 2" in str(err.value)
    failed = [e for e in network.events(Topic.SIGNING) if isinstance(e, SigningFailed)]
    assert len(failed) == 1 and failed[0].culprits == (2,)
    refused = [e for e in network.events(Topic.SIGNING) if isinstance(e, SigningMessageRejected)]
    assert any("malformed share" in r.reason and r.sender == "signer-2" for r in refused)


def test_share_problem() -> None:
    assert share_problem("00" * 32) is None
    assert share_problem("ff" * 32) is not None
    assert share_problem("00") is not None
    assert share_problem("xyz") is not None


def test_unrecorded_completion_is_no_signature(network: Network) -> None:
    """d5: SigningCompleted not acknowledged by the broker: no signature is handed out."""
    network.broker.refuse = lambda _topic, value: b'"SigningCompleted"' in value
    with network.coordinator() as c, pytest.raises(SigningFailedError) as err:
        c.sign(DIGEST, purpose="t", timeout=10)
    assert "SigningCompleted was not recorded" in str(err.value)
    recorded = [type(e).__name__ for e in network.events(Topic.SIGNING)]
    assert "SigningFailed" in recorded and "SigningCompleted" not in recorded


def test_undelivered_request_fails_at_once(network: Network) -> None:
    """d5: the request never reached the broker: say so now, not after the timeout."""
    network.broker.fail_produce = True
    started = time.monotonic()
    with network.coordinator() as c, pytest.raises(SigningFailedError) as err:
        c.sign(DIGEST, purpose="t", timeout=5)
    assert time.monotonic() - started < 2
    assert "SigningRequested not delivered" in str(err.value)
