"""Who may speak in a signing round, and the proof that they did.

The signing topics are open to anyone who can produce to Kafka, so every round message
carries an Ed25519 signature by its sender over the payload's canonical bytes
(`schemas.serde.canonical_payload_bytes`, without the signature, after a domain prefix
and the event type so a signature made for one message kind or for an order intent
never verifies as another):

* `SigningRequested` and `SigningPackageIssued`: the requester's key. A requester is a
  producer registered with `ProducerRegistered` (`tradetape producer add NAME
  --accounts ""`), the engine's audited registry of Ed25519 keys, folded here from the
  engine's accepted facts on the accounts topic. Which registered producers may ask a
  group for signatures is the group's own list (`requesters` in group.json).
* `SigningCommitmentPublished` and `SignatureSharePublished`: the participant's identity
  key, kept encrypted next to its key share; the public halves are in group.json.

Pure: no Kafka here, so the checks are testable without a broker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from deploy.files import write_private_file
from engine.auth import verify_hex_signature
from schemas import Envelope
from schemas.envelope import EventPayload
from schemas.events import ProducerKeyRotated, ProducerRegistered, ProducerRevoked
from schemas.serde import canonical_payload_bytes
from signer_ffi._lib import wipe
from signer_ffi.keyfile import decrypt_secret, encrypt_secret

P = TypeVar("P", bound=EventPayload)

DOMAIN = b"tradetape/signing-round/v1\x00"
DEFAULT_REQUESTER = "signing-coordinator"
"""The producer id `tradetape sign` and the coordinator use unless told otherwise."""
REGISTRY_PRODUCER = "engine"
"""Registrations count only as the engine's accepted facts (it re-publishes an accepted
admin command under its own name); a raw command on admin.commands is not one."""
IDENTITY_MAGIC = b"TTID"


def message_signing_bytes(payload: EventPayload) -> bytes:
    """What a round message's sender signs."""
    return (
        DOMAIN
        + payload.EVENT_TYPE.encode()
        + b"\x00"
        + canonical_payload_bytes(payload, exclude={"signature"})
    )


def sign_round_message(payload: P, key: Ed25519PrivateKey) -> P:
    """A copy of `payload` carrying its sender's signature."""
    return payload.model_copy(update={"signature": key.sign(message_signing_bytes(payload)).hex()})


def verify_round_message(payload: EventPayload, public_key_hex: str) -> bool:
    """True only for a well-formed signature by that key; anything odd is False (the
    engine's strict libsodium check, over this module's domain-separated bytes)."""
    signature = getattr(payload, "signature", None)
    if not isinstance(signature, str):
        return False
    return verify_hex_signature(message_signing_bytes(payload), signature, public_key_hex)


def public_hex(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


@dataclass(frozen=True)
class Requester:
    """The coordinator's side: its registered producer id and private key."""

    name: str
    key: Ed25519PrivateKey

    @property
    def public_key(self) -> str:
        return public_hex(self.key)


@dataclass
class RequesterRegistry:
    """Registered producers' public keys, folded from the engine's `ProducerRegistered`,
    `ProducerKeyRotated` and `ProducerRevoked` facts.

    The latest of them wins: a rotation replaces the key (the old one is refused from
    then on), a revocation drops it (the producer's requests are refused until a
    rotation gives it a new key).
    """

    keys: dict[str, str] = field(default_factory=dict)

    def apply(self, event: Envelope[Any]) -> bool:
        """Fold one event; True if it was a registry fact that counts."""
        p = event.payload
        if event.producer != REGISTRY_PRODUCER:
            return False
        if isinstance(p, ProducerRegistered | ProducerKeyRotated):
            self.keys[p.producer_id] = p.public_key
            return True
        if isinstance(p, ProducerRevoked):
            self.keys.pop(p.producer_id, None)
            return True
        return False

    def key_of(self, producer_id: str) -> str | None:
        return self.keys.get(producer_id)


# ---- participant identity keys --------------------------------------------------------


def identity_file(directory: Path, participant: int) -> Path:
    return directory / f"participant-{participant}.identity"


def write_identity(
    directory: Path, participant: int, key: Ed25519PrivateKey, passphrase: bytes | bytearray
) -> Path:
    """Store a participant's identity key encrypted under its key-share passphrase."""
    raw = bytearray(key.private_bytes_raw())
    try:
        path = identity_file(directory, participant)
        write_private_file(path, encrypt_secret(raw, passphrase, magic=IDENTITY_MAGIC))
        return path
    finally:
        wipe(raw)


def read_identity(
    directory: Path, participant: int, passphrase: bytes | bytearray
) -> Ed25519PrivateKey:
    path = identity_file(directory, participant)
    if not path.is_file():
        raise FileNotFoundError(
            f"no identity key at {path}: run `tradetape signer identity --id {participant}` "
            "and put its public key in every copy of group.json"
        )
    raw = decrypt_secret(path.read_bytes(), passphrase, magic=IDENTITY_MAGIC)
    try:
        return Ed25519PrivateKey.from_private_bytes(bytes(raw))
    finally:
        wipe(raw)
