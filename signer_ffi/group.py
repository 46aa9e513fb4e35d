"""Where a signer group's files live and how a participant gets its passphrase.

A key directory holds `group.json` (public: threshold, identifiers, the group's public
key package, each participant's Ed25519 identity key, and the registered producers allowed
to request signatures) and one `participant-<id>.key` per share (plus its
`participant-<id>.identity`), each encrypted at rest with
scrypt + AES-GCM (`signer_ffi.keyfile`). Passphrases never come from code or logs: they
are read from `TRADETAPE_SIGNER_PASSPHRASE_<id>`, `TRADETAPE_SIGNER_PASSPHRASE`, or the
file named by `TRADETAPE_SIGNER_PASSPHRASE_FILE`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from deploy.files import write_private_file
from signer_ffi.authn import DEFAULT_REQUESTER, read_identity
from signer_ffi.frost import KeyShare, PublicKeyPackage
from signer_ffi.keyfile import read_key_file

PASSPHRASE_ENV = "TRADETAPE_SIGNER_PASSPHRASE"
PASSPHRASE_FILE_ENV = "TRADETAPE_SIGNER_PASSPHRASE_FILE"
GROUP_FILE = "group.json"


class PassphraseMissingError(RuntimeError):
    pass


def passphrase_for(participant: int | None = None) -> bytearray:
    """The passphrase for one participant's key file, from the environment only."""
    if participant is not None and (value := os.environ.get(f"{PASSPHRASE_ENV}_{participant}")):
        return bytearray(value.encode())
    if value := os.environ.get(PASSPHRASE_ENV):
        return bytearray(value.encode())
    if path := os.environ.get(PASSPHRASE_FILE_ENV):
        return bytearray(Path(path).read_bytes().rstrip(b"\r\n"))
    raise PassphraseMissingError(
        f"set {PASSPHRASE_ENV}_<id>, {PASSPHRASE_ENV} or {PASSPHRASE_FILE_ENV} to unlock key files"
    )


def key_file(directory: Path, participant: int) -> Path:
    return directory / f"participant-{participant}.key"


@dataclass(frozen=True)
class SignerGroup:
    """The public description of a k-of-n signer group."""

    threshold: int
    identifiers: tuple[int, ...]
    public_key_package: PublicKeyPackage
    identity_keys: dict[int, str] = field(default_factory=dict)
    """Participant id -> hex Ed25519 key that signs its commitments and shares."""
    requesters: tuple[str, ...] = (DEFAULT_REQUESTER,)
    """Registered producers (ProducerRegistered) this group answers signing requests from."""

    @property
    def verifying_key(self) -> bytes:
        return self.public_key_package.verifying_key

    def save(self, directory: Path) -> Path:
        """Write `group.json` whole or not at all (a temporary file renamed into place,
        `deploy.files`): a failed rewrite (`signer identity` on a full disk) leaves the
        previous file as it was, never a truncated one."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / GROUP_FILE
        text = (
            json.dumps(
                {
                    "threshold": self.threshold,
                    "identifiers": list(self.identifiers),
                    "verifying_key": self.verifying_key.hex(),
                    "public_key_package": self.public_key_package.data.hex(),
                    "identity_keys": {str(i): k for i, k in sorted(self.identity_keys.items())},
                    "requesters": list(self.requesters),
                },
                indent=2,
                sort_keys=True,
            )
            + "\n"
        )
        write_private_file(path, text.encode(), mode=0o644)
        return path

    @classmethod
    def load(cls, directory: Path) -> SignerGroup:
        path = directory / GROUP_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"no signer group at {path}: run `tradetape signer keygen` first"
            )
        raw = json.loads(path.read_text())
        pkg = PublicKeyPackage(bytes.fromhex(raw["public_key_package"]))
        return cls(
            threshold=int(raw["threshold"]),
            identifiers=tuple(raw["identifiers"]),
            public_key_package=pkg,
            identity_keys={int(i): str(k) for i, k in raw.get("identity_keys", {}).items()},
            requesters=tuple(raw.get("requesters", (DEFAULT_REQUESTER,))),
        )


def load_share(directory: Path, participant: int) -> KeyShare:
    passphrase = passphrase_for(participant)
    try:
        return read_key_file(key_file(directory, participant), passphrase)
    finally:
        passphrase[:] = b"\x00" * len(passphrase)


def load_identity(directory: Path, participant: int) -> Ed25519PrivateKey:
    """The participant's identity key, unlocked with the same passphrase as its share."""
    passphrase = passphrase_for(participant)
    try:
        return read_identity(directory, participant, passphrase)
    finally:
        passphrase[:] = b"\x00" * len(passphrase)
