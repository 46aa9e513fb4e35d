"""Typed exceptions for signer_ffi status codes.

The Rust library reports every failure as an int32 status: one positive code
per `frost_core::Error` variant, negative codes for FFI-level faults. Mapping
each to its own exception class lets callers (and the Kafka signer processes)
react to, say, a cheating participant differently from a corrupt message,
without parsing strings.
"""

from __future__ import annotations

FROST_CODES: dict[int, str] = {
    1: "InvalidMinSigners",
    2: "InvalidMaxSigners",
    3: "InvalidCoefficients",
    4: "MalformedIdentifier",
    5: "DuplicatedIdentifier",
    6: "UnknownIdentifier",
    7: "IncorrectNumberOfIdentifiers",
    8: "MalformedSigningKey",
    9: "MalformedVerifyingKey",
    10: "MalformedSignature",
    11: "InvalidSignature",
    12: "DuplicatedShares",
    13: "IncorrectNumberOfShares",
    14: "IdentityCommitment",
    15: "MissingCommitment",
    16: "IncorrectCommitment",
    17: "IncorrectNumberOfCommitments",
    18: "InvalidSignatureShare",
    19: "InvalidSecretShare",
    20: "PackageNotFound",
    21: "IncorrectNumberOfPackages",
    22: "IncorrectPackage",
    23: "DKGNotSupported",
    24: "InvalidProofOfKnowledge",
    25: "FieldError",
    26: "GroupError",
    27: "InvalidCoefficient",
    28: "IdentifierDerivationNotSupported",
    29: "SerializationError",
    30: "DeserializationError",
    99: "FrostOther",
}

FFI_CODES: dict[int, str] = {
    -1: "NullPointer",
    -2: "NonceReused",
    -3: "Panic",
    -4: "InvalidArgument",
}


class SignerError(Exception):
    """Base class: a non-zero status from the native library."""

    def __init__(self, code: int, message: str | None = None) -> None:
        self.code = code
        self.name = FROST_CODES.get(code) or FFI_CODES.get(code) or f"Unknown({code})"
        super().__init__(message or f"{self.name} (status {code})")


class FrostError(SignerError):
    """frost-core rejected the operation (positive status codes)."""


class MalformedInputError(FrostError):
    """Bytes that do not deserialize into the expected FROST structure."""


class InvalidSignatureError(FrostError):
    """A signature (or proof) failed verification."""


class InvalidSignatureShareError(FrostError):
    """Aggregation found bad signature shares; `culprits` names their senders."""

    def __init__(self, code: int, culprits: tuple[int, ...]) -> None:
        self.culprits = culprits
        super().__init__(code, f"invalid signature share from participant(s) {list(culprits)}")


class InvalidProofOfKnowledgeError(FrostError):
    """A DKG round-1 package carried a bad proof of knowledge."""

    def __init__(self, code: int, culprits: tuple[int, ...]) -> None:
        self.culprits = culprits
        super().__init__(code, f"invalid DKG proof of knowledge from {list(culprits)}")


class InvalidSecretShareError(FrostError):
    """A secret share does not match its VSS commitment."""

    def __init__(self, code: int, culprits: tuple[int, ...]) -> None:
        self.culprits = culprits
        super().__init__(code, f"invalid secret share (culprits {list(culprits)})")


class ThresholdError(FrostError):
    """Parameters or share counts violate the threshold (min/max signers, counts)."""


class FfiError(SignerError):
    """A fault at the C boundary rather than in the protocol (negative codes)."""


class NonceReusedError(FfiError):
    """A nonce handle was presented to sign a second time; refused."""


class NativePanicError(FfiError):
    """The Rust side panicked; caught before it could cross the boundary."""


_MALFORMED = {4, 8, 9, 10, 14, 25, 26, 29, 30}
_THRESHOLD = {1, 2, 3, 7, 13, 17, 21}


def error_for(code: int, culprits: tuple[int, ...] = ()) -> SignerError:
    """The exception instance for a non-zero status code."""
    if code == 18:
        return InvalidSignatureShareError(code, culprits)
    if code == 24:
        return InvalidProofOfKnowledgeError(code, culprits)
    if code == 19:
        return InvalidSecretShareError(code, culprits)
    if code == 11:
        return InvalidSignatureError(code)
    if code in _MALFORMED:
        return MalformedInputError(code)
    if code in _THRESHOLD:
        return ThresholdError(code)
    if code == -2:
        return NonceReusedError(code)
    if code == -3:
        return NativePanicError(code)
    if code < 0:
        return FfiError(code)
    return FrostError(code)
