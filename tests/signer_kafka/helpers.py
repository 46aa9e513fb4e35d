"""Registering a signing requester on a broker without an engine worker.

The participants fold the requester's key from the engine's accepted `ProducerRegistered`
on the accounts topic. These tests run no engine, so they write that accepted fact the way
the engine does (under its producer name) after `tradetape producer add NAME --accounts ""`;
the real path through the engine is exercised by `make demo` (signer_ffi.demo).
"""

from __future__ import annotations

from confluent_kafka import Producer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from deploy.kafka import producer_config
from deploy.settings import Settings
from schemas import encode, new_event
from schemas.events import ProducerRegistered
from schemas.topics import Topic
from signer_ffi.authn import DEFAULT_REQUESTER, REGISTRY_PRODUCER, Requester


def register_as_engine(settings: Settings, requester: Requester) -> None:
    event = new_event(
        ProducerRegistered(
            producer_id=requester.name,
            public_key=requester.public_key,
            accounts=(),
            registered_by="admin",
        ),
        producer=REGISTRY_PRODUCER,
    )
    producer = Producer(producer_config(settings))
    key, value, headers = encode(event)
    producer.produce(settings.topic(Topic.ACCOUNTS), key=key, value=value, headers=headers)
    assert producer.flush(30) == 0


def new_requester(settings: Settings, name: str = DEFAULT_REQUESTER) -> Requester:
    """A fresh requester key, registered."""
    requester = Requester(name=name, key=Ed25519PrivateKey.generate())
    register_as_engine(settings, requester)
    return requester
