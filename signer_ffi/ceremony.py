"""Creating a signer group: a trusted dealer, or a distributed key generation over Kafka.

With DKG no machine ever sees the whole key. Round-1 packages are public broadcasts; each
round-2 package is secret to its recipient, so it is sealed on the wire with X25519
(ephemeral keys announced in round 1), HKDF-SHA256 and AES-GCM, bound to the ceremony,
sender and recipient.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from deploy.kafka import consumer_config, producer_config
from deploy.settings import Settings
from schemas import Envelope, decode_message, encode, new_event
from schemas.events import DkgCompleted, DkgRound1Published, DkgRound2Published
from schemas.topics import Topic
from signer_ffi.authn import DEFAULT_REQUESTER, public_hex, write_identity
from signer_ffi.frost import dkg_part1, dkg_part2, dkg_part3, generate_with_dealer
from signer_ffi.group import SignerGroup, key_file, passphrase_for
from signer_ffi.keyfile import write_key_file


class CeremonyError(RuntimeError):
    pass


def dealer_keygen(
    threshold: int,
    signers: int,
    out_dir: Path,
    requesters: tuple[str, ...] = (DEFAULT_REQUESTER,),
) -> SignerGroup:
    """Trusted-dealer keygen into `out_dir`: group.json plus, per share, its encrypted key
    file and an encrypted Ed25519 identity key (which signs that participant's messages)."""
    if not 2 <= threshold <= signers:
        raise ValueError("need 2 <= threshold <= signers")
    if not requesters:
        raise ValueError("a group needs at least one allowed requester")
    shares, public = generate_with_dealer(threshold, signers)
    out_dir.mkdir(parents=True, exist_ok=True)
    identities: dict[int, str] = {}
    try:
        for share in shares:
            passphrase = passphrase_for(share.identifier)
            try:
                write_key_file(key_file(out_dir, share.identifier), share, passphrase)
                identity = Ed25519PrivateKey.generate()
                write_identity(out_dir, share.identifier, identity, passphrase)
                identities[share.identifier] = public_hex(identity)
            finally:
                passphrase[:] = b"\x00" * len(passphrase)
    finally:
        for share in shares:
            share.wipe()
    group = SignerGroup(
        threshold=threshold,
        identifiers=public.identifiers,
        public_key_package=public,
        identity_keys=identities,
        requesters=tuple(requesters),
    )
    group.save(out_dir)
    return group


def _seal_key(
    own: X25519PrivateKey, peer_public: bytes, ceremony: str, sender: int, recipient: int
) -> bytes:
    shared = own.exchange(X25519PublicKey.from_public_bytes(peer_public))
    info = f"tradetape-dkg|{ceremony}|{sender}->{recipient}".encode()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(shared)


def seal(
    own: X25519PrivateKey,
    peer_public: bytes,
    ceremony: str,
    sender: int,
    recipient: int,
    plain: bytes,
) -> bytes:
    key = _seal_key(own, peer_public, ceremony, sender, recipient)
    nonce = os.urandom(12)
    return nonce + AESGCM(key).encrypt(nonce, plain, f"{ceremony}|{sender}|{recipient}".encode())


def unseal(
    own: X25519PrivateKey,
    peer_public: bytes,
    ceremony: str,
    sender: int,
    recipient: int,
    sealed: bytes,
) -> bytes:
    key = _seal_key(own, peer_public, ceremony, sender, recipient)
    return AESGCM(key).decrypt(
        sealed[:12], sealed[12:], f"{ceremony}|{sender}|{recipient}".encode()
    )


def run_dkg_participant(
    settings: Settings,
    *,
    ceremony_id: str,
    identifier: int,
    signers: int,
    threshold: int,
    out_dir: Path,
    timeout: float = 60.0,
    echo: Callable[[str], None] = lambda _m: None,
    requesters: tuple[str, ...] = (DEFAULT_REQUESTER,),
) -> SignerGroup:
    """One participant's side of a DKG ceremony, exchanging packages on `signing.messages`."""
    topic = settings.topic(Topic.SIGNING_MESSAGES)
    producer = Producer(producer_config(settings))
    consumer = Consumer(
        consumer_config(settings, group_id=f"dkg-{ceremony_id}-{identifier}-{os.getpid()}")
    )
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign(
        [TopicPartition(topic, p, 0) for p in parts]
    )  # a late joiner still sees round 1
    name = f"dkg-{identifier}"

    def publish(event: Envelope[Any]) -> None:
        key, value, headers = encode(event)
        producer.produce(settings.topic(event.payload.TOPIC), key=key, value=value, headers=headers)
        producer.flush(10)

    x_priv = X25519PrivateKey.generate()
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    x_pub = x_priv.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    identity = Ed25519PrivateKey.generate()
    secret1, package1 = dkg_part1(identifier, signers, threshold)
    publish(
        new_event(
            DkgRound1Published(
                ceremony_id=ceremony_id,
                participant=identifier,
                package_hex=package1.hex(),
                x25519_public_hex=x_pub.hex(),
                identity_public_hex=public_hex(identity),
            ),
            producer=name,
        )
    )
    echo(f"participant {identifier}: round 1 published")
    round1: dict[int, DkgRound1Published] = {}
    round2: dict[int, bytes] = {}
    secret2 = None
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                missing = sorted(set(range(1, signers + 1)) - set(round1) - {identifier})
                raise CeremonyError(
                    f"DKG {ceremony_id} timed out; no round-1 package yet from {missing}"
                )
            msg = consumer.poll(0.1)
            if msg is None or msg.error():
                continue
            try:
                ev = decode_message(msg)
            except Exception:
                continue
            p = ev.payload
            if (
                isinstance(p, DkgRound1Published)
                and p.ceremony_id == ceremony_id
                and p.participant != identifier
            ):
                round1.setdefault(p.participant, p)
            elif (
                isinstance(p, DkgRound2Published)
                and p.ceremony_id == ceremony_id
                and p.recipient == identifier
            ):
                if p.sender in round1:
                    peer = bytes.fromhex(round1[p.sender].x25519_public_hex)
                    round2[p.sender] = unseal(
                        x_priv,
                        peer,
                        ceremony_id,
                        p.sender,
                        identifier,
                        bytes.fromhex(p.sealed_package_hex),
                    )
            if secret2 is None and len(round1) == signers - 1:
                packages = {i: bytes.fromhex(r.package_hex) for i, r in round1.items()}
                secret2, outgoing = dkg_part2(secret1, packages)
                for recipient, pkg in sorted(outgoing.items()):
                    peer = bytes.fromhex(round1[recipient].x25519_public_hex)
                    sealed = seal(x_priv, peer, ceremony_id, identifier, recipient, pkg)
                    publish(
                        new_event(
                            DkgRound2Published(
                                ceremony_id=ceremony_id,
                                sender=identifier,
                                recipient=recipient,
                                sealed_package_hex=sealed.hex(),
                            ),
                            producer=name,
                        )
                    )
                echo(f"participant {identifier}: round 2 sealed to {sorted(outgoing)}")
            if secret2 is not None and len(round2) == signers - 1:
                break
        packages1 = {i: bytes.fromhex(r.package_hex) for i, r in round1.items()}
        share, public = dkg_part3(secret2, packages1, round2)
    finally:
        consumer.close()
    out_dir.mkdir(parents=True, exist_ok=True)
    passphrase = passphrase_for(identifier)
    try:
        write_key_file(key_file(out_dir, identifier), share, passphrase)
        write_identity(out_dir, identifier, identity, passphrase)
    finally:
        passphrase[:] = b"\x00" * len(passphrase)
        share.wipe()
    identities = {i: r.identity_public_hex for i, r in round1.items() if r.identity_public_hex}
    identities[identifier] = public_hex(identity)
    group = SignerGroup(
        threshold=threshold,
        identifiers=public.identifiers,
        public_key_package=public,
        identity_keys=identities,
        requesters=tuple(requesters),
    )
    group.save(out_dir)
    publish(
        new_event(
            DkgCompleted(
                ceremony_id=ceremony_id,
                participant=identifier,
                group_public_key=group.verifying_key.hex(),
            ),
            producer=name,
        )
    )
    echo(f"participant {identifier}: done, group key {group.verifying_key.hex()}")
    return group
