"""tradetape's threshold-signature library: FROST(Ed25519, SHA-512), RFC 9591.

The cryptography is the audited Rust `frost-ed25519` crate (pinned =3.0.0),
compiled into a cdylib by `pip install` and called through cffi in ABI mode.
Python only moves the crate's serialized bytes around and maps status codes to
typed exceptions; secrets stay in wipeable buffers and nonces stay in Rust.
"""

from signer_ffi.errors import (
    FfiError,
    FrostError,
    InvalidProofOfKnowledgeError,
    InvalidSecretShareError,
    InvalidSignatureError,
    InvalidSignatureShareError,
    MalformedInputError,
    NativePanicError,
    NonceReusedError,
    SignerError,
    ThresholdError,
)
from signer_ffi.frost import (
    DkgRound1Secret,
    DkgRound2Secret,
    KeyShare,
    PackageContents,
    PublicKeyPackage,
    SignatureShare,
    SigningCommitments,
    SigningNonces,
    SigningPackage,
    aggregate,
    commit,
    dkg_part1,
    dkg_part2,
    dkg_part3,
    generate_with_dealer,
    sign,
    signing_package,
    verify,
)

__all__ = [
    "DkgRound1Secret",
    "DkgRound2Secret",
    "FfiError",
    "FrostError",
    "InvalidProofOfKnowledgeError",
    "InvalidSecretShareError",
    "InvalidSignatureError",
    "InvalidSignatureShareError",
    "KeyShare",
    "MalformedInputError",
    "NativePanicError",
    "NonceReusedError",
    "PackageContents",
    "PublicKeyPackage",
    "SignatureShare",
    "SignerError",
    "SigningCommitments",
    "SigningNonces",
    "SigningPackage",
    "ThresholdError",
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
