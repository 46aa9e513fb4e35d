"""Typed FROST(Ed25519, SHA-512) API over the native library.

Why this shape:
* Secret material (key packages, DKG secret packages) lives in `bytearray`s
  that are wiped by `wipe()` / on consumption, never in immutable `bytes`
  that Python could copy around and never clear.
* Signing nonces never reach Python: `commit()` returns an opaque
  `SigningNonces` handle; `sign()` consumes it inside Rust (zeroized there) and
  a second `sign()` with it raises `NonceReusedError`. Nonce reuse leaks the
  long-term key share, so the refusal is enforced below Python, atomically (two
  threads signing with one handle: exactly one gets a share).
* Everything public (commitments, packages, shares, signatures) is the
  frost crate's own `serialize()` bytes, so it can be put on Kafka as is.
* Participant identifiers are small ints (1..=N) on the Python side; the
  native side takes frost's 32-byte scalar encoding.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from signer_ffi._lib import (
    Buffers,
    Slices,
    check,
    ffi,
    id_from_bytes,
    id_to_bytes,
    ids_from_concat,
    inp,
    lib,
    wipe,
)
from signer_ffi.errors import InvalidSignatureError, MalformedInputError, SignerError


class _Secret:
    """A wipeable secret byte string."""

    def __init__(self, data: bytes | bytearray) -> None:
        self._data = bytearray(data)

    @property
    def wiped(self) -> bool:
        return not any(self._data)

    def wipe(self) -> None:
        wipe(self._data)

    def _buf(self) -> bytearray:
        if self.wiped:
            raise ValueError(f"{type(self).__name__} has been wiped")
        return self._data

    def __repr__(self) -> str:
        return f"<{type(self).__name__} redacted>"

    def __del__(self) -> None:
        self.wipe()


class KeyShare(_Secret):
    """A participant's serialized frost `KeyPackage` (secret signing share inside)."""

    def __init__(self, data: bytes | bytearray) -> None:
        super().__init__(data)
        with Buffers(3) as out:
            mins = ffi.new("uint16_t *")
            check(
                lib.tt_key_package_info(
                    inp(self._data), len(self._data), out.ptr(0), out.ptr(1), out.ptr(2), mins
                )
            )
            self.identifier: int = id_from_bytes(out.public(0))
            self.verifying_share: bytes = out.public(1)
            self.verifying_key: bytes = out.public(2)
            self.min_signers: int = int(mins[0])

    def to_bytes(self) -> bytearray:
        """A copy of the serialized key package (for encrypted storage); wipe it after."""
        return bytearray(self._buf())


@dataclass(frozen=True)
class PublicKeyPackage:
    """The group's public key package (serialized); safe to publish."""

    data: bytes

    @cached_property
    def _info(self) -> tuple[bytes, tuple[int, ...], int]:
        with Buffers(2) as out:
            mins = ffi.new("uint16_t *")
            check(
                lib.tt_public_key_package_info(
                    inp(self.data), len(self.data), out.ptr(0), out.ptr(1), mins
                )
            )
            return out.public(0), ids_from_concat(out.public(1)), int(mins[0])

    def __post_init__(self) -> None:
        self._info  # noqa: B018 - validate eagerly

    @property
    def verifying_key(self) -> bytes:
        """The 32-byte group Ed25519 public key."""
        return self._info[0]

    @property
    def identifiers(self) -> tuple[int, ...]:
        return self._info[1]

    @property
    def min_signers(self) -> int:
        return self._info[2]


@dataclass(frozen=True)
class SigningCommitments:
    """A participant's round-1 commitments (serialized)."""

    data: bytes


@dataclass(frozen=True)
class PackageContents:
    """What a signing package says, as a signer must check it before signing."""

    message: bytes
    signers: tuple[int, ...]
    commitments: SigningCommitments | None
    """The round-1 commitments held for the signer asked about (None: none held)."""


@dataclass(frozen=True)
class SigningPackage:
    """Message plus every chosen signer's commitments (serialized).

    A signer reads the message and signers back out of the package before signing: the
    package comes from the coordinator, and signing it blindly would sign whatever
    message the coordinator put inside.
    """

    data: bytes

    def contents(self, identifier: int | None = None) -> PackageContents:
        """One parse of the package: message, signers, and `identifier`'s commitments."""
        ident = id_to_bytes(identifier) if identifier is not None else b""
        with Buffers(3) as out:
            check(
                lib.tt_signing_package_info(
                    inp(self.data),
                    len(self.data),
                    inp(ident) if ident else ffi.NULL,
                    len(ident),
                    out.ptr(0),
                    out.ptr(1),
                    out.ptr(2),
                )
            )
            held = out.public(2)
            return PackageContents(
                message=out.public(0),
                signers=ids_from_concat(out.public(1)),
                commitments=SigningCommitments(held) if held else None,
            )

    @property
    def message(self) -> bytes:
        """The message every signer of this package signs (`SigningPackage::message()`)."""
        return self.contents().message

    @property
    def signers(self) -> tuple[int, ...]:
        """The identifiers whose commitments the package holds, ascending."""
        return self.contents().signers


@dataclass(frozen=True)
class SignatureShare:
    """A participant's round-2 signature share (serialized)."""

    data: bytes


class SigningNonces:
    """Opaque handle to round-1 nonces held in Rust; usable for one `sign()` only.

    The single use is enforced in Rust (the nonces are taken out of the handle under a
    lock, so of two concurrent `sign()`s only one gets them); `_lock` also serialises
    `sign()` and `close()` on this object, so a share is never being made while the
    handle is released.
    """

    def __init__(self, handle: Any) -> None:
        self._handle: Any = ffi.gc(handle, lib.tt_nonces_free)
        self._lock = threading.Lock()
        self.used = False

    def close(self) -> None:
        """Free the handle now (zeroizing unused nonces)."""
        with self._lock:
            if self._handle is not None:
                ffi.release(self._handle)
                self._handle = None

    def _ptr(self) -> Any:
        return self._handle if self._handle is not None else ffi.NULL

    def __repr__(self) -> str:
        return f"<SigningNonces used={self.used}>"


def generate_with_dealer(threshold: int, signers: int) -> tuple[list[KeyShare], PublicKeyPackage]:
    """Trusted-dealer keygen: `signers` key shares, any `threshold` of which can sign."""
    if not (0 <= threshold < 2**16 and 0 <= signers < 2**16):
        raise ValueError("threshold and signers must fit in u16")
    with Buffers(signers) as kps, Buffers(1) as pk:
        check(lib.tt_generate_with_dealer(signers, threshold, kps.ptr(), pk.ptr()))
        shares: list[KeyShare] = []
        for i in range(signers):
            raw = kps.secret(i)
            shares.append(KeyShare(raw))
            wipe(raw)
        return shares, PublicKeyPackage(pk.public())


def commit(share: KeyShare) -> tuple[SigningNonces, SigningCommitments]:
    """Round 1: fresh nonces (kept in Rust) and the commitments to broadcast."""
    handle = ffi.new("tt_nonces **")
    with Buffers(1) as out:
        kp = share._buf()
        check(lib.tt_commit(inp(kp), len(kp), handle, out.ptr()))
        return SigningNonces(handle[0]), SigningCommitments(out.public())


def signing_package(
    commitments: Mapping[int, SigningCommitments], message: bytes
) -> SigningPackage:
    """The coordinator's package: chosen signers' commitments plus the message."""
    ids = Slices(id_to_bytes(i) for i in commitments)
    coms = Slices(c.data for c in commitments.values())
    with Buffers(1) as out:
        check(
            lib.tt_signing_package_new(
                ids.arr, coms.arr, ids.n, inp(message), len(message), out.ptr()
            )
        )
        return SigningPackage(out.public())


def sign(package: SigningPackage, nonces: SigningNonces, share: KeyShare) -> SignatureShare:
    """Round 2: consumes `nonces` (even on failure); reuse raises NonceReusedError."""
    with Buffers(1) as out, nonces._lock:
        kp = share._buf()
        try:
            check(
                lib.tt_sign(
                    inp(package.data), len(package.data), nonces._ptr(), inp(kp), len(kp), out.ptr()
                )
            )
        finally:
            nonces.used = True
        return SignatureShare(out.public())


def aggregate(
    package: SigningPackage,
    shares: Mapping[int, SignatureShare],
    public_keys: PublicKeyPackage,
) -> bytes:
    """Combine shares into a 64-byte Ed25519 signature.

    Every share is checked; bad ones raise InvalidSignatureShareError whose
    `culprits` lists the offending participant identifiers.
    """
    ids = Slices(id_to_bytes(i) for i in shares)
    sh = Slices(s.data for s in shares.values())
    with Buffers(1) as sig, Buffers(1) as culprits:
        status = lib.tt_aggregate(
            inp(package.data),
            len(package.data),
            ids.arr,
            sh.arr,
            ids.n,
            inp(public_keys.data),
            len(public_keys.data),
            sig.ptr(),
            culprits.ptr(),
        )
        check(status, culprits)
        return sig.public()


def verify(verifying_key: bytes, message: bytes, signature: bytes) -> bool:
    """True iff `signature` is a valid Ed25519 signature by the group key."""
    status = lib.tt_verify(
        inp(verifying_key),
        len(verifying_key),
        inp(message),
        len(message),
        inp(signature),
        len(signature),
    )
    if status == 0:
        return True
    try:
        check(status)
    except (InvalidSignatureError, MalformedInputError) as e:
        if e.name in ("InvalidSignature", "MalformedSignature"):
            return False
        raise
    return False  # pragma: no cover - check() always raises on non-zero


# ---- DKG -------------------------------------------------------------------------


class DkgRound1Secret(_Secret):
    """Part-1 secret package; consumed (wiped) by `dkg_part2`."""


class DkgRound2Secret(_Secret):
    """Part-2 secret package; consumed (wiped) by `dkg_part3`."""


def dkg_part1(identifier: int, max_signers: int, min_signers: int) -> tuple[DkgRound1Secret, bytes]:
    """Start a DKG: our secret package and the round-1 package to broadcast."""
    with Buffers(2) as out:
        ident = id_to_bytes(identifier)
        check(
            lib.tt_dkg_part1(
                inp(ident), len(ident), max_signers, min_signers, out.ptr(0), out.ptr(1)
            )
        )
        raw = out.secret(0)
        secret = DkgRound1Secret(raw)
        wipe(raw)
        return secret, out.public(1)


def dkg_part2(
    secret: DkgRound1Secret, round1_packages: Mapping[int, bytes]
) -> tuple[DkgRound2Secret, dict[int, bytes]]:
    """Verify others' round-1 packages; returns the round-2 package for each peer."""
    ids = Slices(id_to_bytes(i) for i in round1_packages)
    pk = Slices(round1_packages.values())
    n = ids.n
    with Buffers(1) as sec, Buffers(n) as out_ids, Buffers(n) as out_pk, Buffers(1) as culprits:
        buf = secret._buf()
        try:
            status = lib.tt_dkg_part2(
                inp(buf),
                len(buf),
                ids.arr,
                pk.arr,
                n,
                sec.ptr(),
                out_ids.ptr(),
                out_pk.ptr(),
                culprits.ptr(),
            )
        finally:
            secret.wipe()
        check(status, culprits)
        raw = sec.secret()
        result = DkgRound2Secret(raw)
        wipe(raw)
        return result, {id_from_bytes(out_ids.public(i)): out_pk.public(i) for i in range(n)}


def dkg_part3(
    secret: DkgRound2Secret,
    round1_packages: Mapping[int, bytes],
    round2_packages: Mapping[int, bytes],
) -> tuple[KeyShare, PublicKeyPackage]:
    """Finish the DKG: this participant's key share and the group public key package."""
    ids1 = Slices(id_to_bytes(i) for i in round1_packages)
    pk1 = Slices(round1_packages.values())
    ids2 = Slices(id_to_bytes(i) for i in round2_packages)
    pk2 = Slices(round2_packages.values())
    with Buffers(2) as out, Buffers(1) as culprits:
        buf = secret._buf()
        try:
            status = lib.tt_dkg_part3(
                inp(buf),
                len(buf),
                ids1.arr,
                pk1.arr,
                ids1.n,
                ids2.arr,
                pk2.arr,
                ids2.n,
                out.ptr(0),
                out.ptr(1),
                culprits.ptr(),
            )
        finally:
            secret.wipe()
        check(status, culprits)
        raw = out.secret(0)
        share = KeyShare(raw)
        wipe(raw)
        return share, PublicKeyPackage(out.public(1))


__all__ = [
    "DkgRound1Secret",
    "DkgRound2Secret",
    "KeyShare",
    "PackageContents",
    "PublicKeyPackage",
    "SignatureShare",
    "SignerError",
    "SigningCommitments",
    "SigningNonces",
    "SigningPackage",
    "aggregate",
    "commit",
    "dkg_part1",
    "dkg_part2",
    "dkg_part3",
    "generate_with_dealer",
    "sign",
    "signing_package",
    "verify",
]
