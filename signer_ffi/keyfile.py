"""Key shares encrypted at rest: scrypt-derived key + AES-256-GCM.

A signer's key share must never sit on disk in clear. The caller supplies the
passphrase (the CLI reads it from an env var or a file); scrypt makes
brute-forcing it expensive, and AES-GCM authenticates the whole file, so a wrong
passphrase or any tampering is detected (`WrongPassphraseError`) rather than
yielding garbage key material. The header (magic, version, scrypt parameters,
salt, nonce) is bound into the GCM associated data.

File layout: magic | u8 version | u8 log2(n) | u8 r | u8 p | 16B salt | 12B nonce |
ciphertext+tag, where magic is b"TTKS" for a key share and b"TTID" for an identity key.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from deploy.files import write_private_file
from signer_ffi._lib import wipe
from signer_ffi.frost import KeyShare

MAGIC = b"TTKS"
VERSION = 1
_HEADER = struct.Struct(">4sBBBB16s12s")
DEFAULT_LOG2_N = 15  # n = 32768, r = 8: ~32 MiB, ~0.1 s per derivation


class KeyFileError(Exception):
    """The key file is malformed or of an unknown version."""


class WrongPassphraseError(KeyFileError):
    """Authentication failed: wrong passphrase or a tampered file."""


def _derive(passphrase: bytes | bytearray, salt: bytes, log2_n: int, r: int, p: int) -> bytearray:
    return bytearray(Scrypt(salt=salt, length=32, n=1 << log2_n, r=r, p=p).derive(passphrase))


def encrypt_secret(
    plain: bytes | bytearray,
    passphrase: bytes | bytearray,
    *,
    magic: bytes = MAGIC,
    log2_n: int = DEFAULT_LOG2_N,
) -> bytes:
    """Encrypt secret bytes under the passphrase; returns the file contents.

    `magic` names what the file holds (bound into the GCM associated data), so a key
    share file and an identity key file cannot be swapped for one another.
    """
    if not passphrase:
        raise ValueError("empty passphrase")
    salt, nonce, r, p = os.urandom(16), os.urandom(12), 8, 1
    header = _HEADER.pack(magic, VERSION, log2_n, r, p, salt, nonce)
    key = _derive(passphrase, salt, log2_n, r, p)
    try:
        return header + AESGCM(key).encrypt(nonce, bytes(plain), header)
    finally:
        wipe(key)


def decrypt_secret(
    blob: bytes, passphrase: bytes | bytearray, *, magic: bytes = MAGIC
) -> bytearray:
    """Decrypt file contents; WrongPassphraseError if authentication fails."""
    if len(blob) < _HEADER.size + 16:
        raise KeyFileError("key file too short")
    found, version, log2_n, r, p, salt, nonce = _HEADER.unpack_from(blob)
    if found != magic:
        raise KeyFileError(f"not a tradetape {magic.decode()} key file")
    if version != VERSION:
        raise KeyFileError(f"unsupported key file version {version}")
    if not (10 <= log2_n <= 22 and 1 <= r <= 32 and 1 <= p <= 16):
        raise KeyFileError("implausible scrypt parameters")
    key = _derive(passphrase, salt, log2_n, r, p)
    try:
        return bytearray(AESGCM(key).decrypt(nonce, blob[_HEADER.size :], blob[: _HEADER.size]))
    except InvalidTag:
        raise WrongPassphraseError("wrong passphrase or corrupted key file") from None
    finally:
        wipe(key)


def encrypt_key_share(
    share: KeyShare, passphrase: bytes | bytearray, *, log2_n: int = DEFAULT_LOG2_N
) -> bytes:
    """Serialize and encrypt a key share; returns the file contents."""
    plain = share.to_bytes()
    try:
        return encrypt_secret(plain, passphrase, log2_n=log2_n)
    finally:
        wipe(plain)


def decrypt_key_share(blob: bytes, passphrase: bytes | bytearray) -> KeyShare:
    """Decrypt file contents back into a KeyShare; WrongPassphraseError if it fails."""
    plain = decrypt_secret(blob, passphrase)
    try:
        return KeyShare(plain)
    finally:
        wipe(plain)


def write_key_file(path: Path, share: KeyShare, passphrase: bytes | bytearray) -> None:
    """Write an encrypted key file readable only by its owner (mode 0600)."""
    write_private_file(path, encrypt_key_share(share, passphrase))


def read_key_file(path: Path, passphrase: bytes | bytearray) -> KeyShare:
    return decrypt_key_share(Path(path).read_bytes(), passphrase)
