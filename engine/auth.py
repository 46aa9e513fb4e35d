"""Producer authentication: Ed25519 over an intent's canonical bytes.

The registry of producers is itself folded from `ProducerRegistered`, `ProducerKeyRotated`
and `ProducerRevoked` events, so who may trade which account, with which key, can be
audited and replayed like everything else.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TypeVar
from uuid import UUID

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from nacl.exceptions import BadSignatureError, CryptoError
from nacl.signing import VerifyKey

from deploy.files import write_private_file
from engine import wire
from schemas.envelope import EventPayload
from schemas.serde import canonical_json, canonical_payload_bytes

P = TypeVar("P", bound=EventPayload)


def signing_bytes(payload: EventPayload) -> bytes:
    """What gets signed: the payload's canonical JSON without its signature."""
    return canonical_payload_bytes(payload, exclude={"signature"})


def signing_bytes_fast(payload: EventPayload) -> bytes:
    """`signing_bytes`, from the payload's compiled canonical layout (a third of the cost;
    equality is property-tested in tests/engine/test_wire.py)."""
    return wire.signing_bytes(payload)


def intent_digest(p: EventPayload, signed: bytes | None = None) -> str:
    """What a resend must repeat to get the original decision back: the intent's type and
    signed content (everything but the signature, `signed` if already rendered), hashed.
    The engine records it in every decision; the client SDK matches resends by it."""
    data = p.EVENT_TYPE.encode() + b"\x1f" + (signing_bytes_fast(p) if signed is None else signed)
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def admin_signing_bytes(event_id: UUID, payload: EventPayload) -> bytes:
    """What an admin signs: the command's event id and its payload without the signature.

    Binding the event id means a captured signature cannot be replayed in a new envelope;
    replaying the same envelope is refused by the engine (its fact was already applied).
    """
    return canonical_json(
        {
            "event_id": str(event_id),
            "payload": payload.model_dump(mode="json", exclude={"signature"}),
        }
    )


def sign_admin(event_id: UUID, payload: P, key: Ed25519PrivateKey) -> P:
    signature = key.sign(admin_signing_bytes(event_id, payload)).hex()
    return payload.model_copy(update={"signature": signature})


def verify_admin(event_id: UUID, payload: EventPayload, public_key_hex: str) -> bool:
    signature = getattr(payload, "signature", None)
    if not isinstance(signature, str):
        return False
    try:
        sig = bytes.fromhex(signature)
        if len(sig) != 64:
            return False
        _verify_key(public_key_hex).verify(admin_signing_bytes(event_id, payload), sig)
    except (BadSignatureError, CryptoError, ValueError, TypeError):
        return False
    return True


def new_keypair() -> tuple[Ed25519PrivateKey, str]:
    key = Ed25519PrivateKey.generate()
    return key, public_hex(key)


def public_hex(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def private_hex(key: Ed25519PrivateKey) -> str:
    return key.private_bytes_raw().hex()


def load_private_hex(text: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(text.strip()))


def sign(payload: P, key: Ed25519PrivateKey) -> P:
    """A copy of `payload` carrying a hex signature over its canonical bytes."""
    signature = key.sign(signing_bytes(payload)).hex()
    return payload.model_copy(update={"signature": signature})


@lru_cache(maxsize=4096)
def _verify_key(public_key_hex: str) -> VerifyKey:
    return VerifyKey(bytes.fromhex(public_key_hex))


def verify(payload: EventPayload, public_key_hex: str) -> bool:
    """True only for a well-formed signature by that key over the payload's canonical
    bytes; anything odd is False."""
    signature = getattr(payload, "signature", None)
    if not isinstance(signature, str):
        return False
    return verify_hex_signature(signing_bytes_fast(payload), signature, public_key_hex)


def verify_hex_signature(message: bytes, signature_hex: str, public_key_hex: str) -> bool:
    """The one Ed25519 check behind every signed message (intents, signing rounds).

    libsodium's (PyNaCl): about twice as fast as OpenSSL's Ed25519 here, and strict (it
    refuses non-canonical signatures and small-order keys). Anything odd is False, never
    an exception.
    """
    try:
        sig = bytes.fromhex(signature_hex)
        if len(sig) != 64:
            return False
        _verify_key(public_key_hex).verify(message, sig)
    except (BadSignatureError, CryptoError, ValueError, TypeError):
        return False
    return True


def verify_openssl(payload: EventPayload, public_key_hex: str) -> bool:
    """The same check with OpenSSL (cryptography), kept to cross-check `verify` in tests."""
    signature = getattr(payload, "signature", None)
    if not isinstance(signature, str):
        return False
    try:
        pub = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key_hex))
        pub.verify(bytes.fromhex(signature), signing_bytes(payload))
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


@dataclass(frozen=True)
class ProducerEntry:
    producer_id: str
    public_key: str
    accounts: frozenset[str]


def key_dir(data_dir: Path) -> Path:
    return data_dir / "keys"


PRODUCER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
"""`schemas.types.ProducerId` (fullmatch): also what keeps a key file inside the key
directory (no `/`, and no leading `.`)."""


def check_producer_id(producer_id: str) -> str:
    if PRODUCER_ID.fullmatch(producer_id) is None:
        raise ValueError(
            f"invalid producer id {producer_id[:80]!r}: 1 to 64 letters, digits or '_.:-', "
            "starting with a letter or digit"
        )
    return producer_id


def key_path(data_dir: Path, producer_id: str) -> Path:
    """`<data_dir>/keys/<producer_id>.ed25519`; ValueError for an id that is not a valid
    `ProducerId` (before, `../../x` named a file outside the key directory)."""
    return key_dir(data_dir) / f"{check_producer_id(producer_id)}.ed25519"


def write_private_key(path: Path, key: Ed25519PrivateKey, *, exclusive: bool = False) -> None:
    """Write the key readable by its owner only (0600), created that way from the start,
    atomically (a temporary file renamed into place: never a partial key file, never
    written through a symlink). `exclusive`: FileExistsError if the file exists."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_private_file(path, (private_hex(key) + "\n").encode(), exclusive=exclusive)


def read_private_key(path: Path) -> Ed25519PrivateKey:
    """The key in `path`; ValueError naming the file if it holds no key (OSError if it
    cannot be read). Before, `publish` with a damaged key file ended in a traceback
    (`non-hexadecimal number found in fromhex() arg`)."""
    try:
        return load_private_hex(path.read_text(encoding="utf-8"))
    except ValueError as exc:  # UnicodeDecodeError among them
        raise ValueError(
            f"{path} holds no Ed25519 private key (64 hex digits expected; {exc})"
        ) from None
