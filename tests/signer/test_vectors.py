"""RFC 9591 FROST(Ed25519, SHA-512) vectors and the DKG vectors, reproduced.

Key generation and nonces come from the `test-vectors` build (fixed
randomness); signing-package construction, key-package parsing and aggregation
go through the release library and its Python API, so the shipped code path is
what produces the final signature.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

import signer_ffi as sf
from signer_ffi._lib import id_to_bytes
from tests.signer.conftest import VectorsLib


def _out(v: VectorsLib, n: int = 1) -> Any:
    return v.ffi.new("tt_buffer[]", n)


def _take(v: VectorsLib, buf: Any) -> bytes:
    data = bytes(v.ffi.buffer(buf.ptr, buf.len))
    v.lib.tt_buffer_free(v.ffi.addressof(buf))
    return data


def _ok(status: int) -> None:
    assert status == 0, f"native status {status}"


def test_rfc9591_vectors(frost_reference: Path, vectors_lib: VectorsLib) -> None:
    v = vectors_lib
    vec = json.loads((frost_reference / "rfc9591_ed25519_vectors.json").read_text())
    inputs = vec["inputs"]
    max_signers = int(vec["config"]["MAX_PARTICIPANTS"])
    coeffs = b"".join(bytes.fromhex(c) for c in inputs["share_polynomial_coefficients"])
    secret = bytes.fromhex(inputs["group_secret_key"])
    message = bytes.fromhex(inputs["message"])

    kps, pk = _out(v, max_signers), _out(v)
    _ok(
        v.lib.tt_vec_dealer_split(
            secret, len(secret), coeffs, len(coeffs) // 32, max_signers, kps, pk
        )
    )
    public = sf.PublicKeyPackage(_take(v, pk[0]))
    assert public.verifying_key.hex() == inputs["verifying_key_key"]
    shares = {}
    for i, expected in enumerate(inputs["participant_shares"]):
        raw = _take(v, kps[i])
        share_out = _out(v)
        _ok(v.lib.tt_vec_key_package_signing_share(raw, len(raw), share_out))
        assert _take(v, share_out[0]).hex() == expected["participant_share"]
        ks = sf.KeyShare(raw)
        assert ks.identifier == expected["identifier"]
        shares[ks.identifier] = (raw, ks)

    # Round one with the vectors' nonce randomness.
    handles: dict[int, Any] = {}
    commitments: dict[int, sf.SigningCommitments] = {}
    for r1 in vec["round_one_outputs"]["outputs"]:
        ident = r1["identifier"]
        raw = shares[ident][0]
        handle, com = v.ffi.new("tt_nonces **"), _out(v)
        _ok(
            v.lib.tt_vec_commit(
                raw,
                len(raw),
                bytes.fromhex(r1["hiding_nonce_randomness"]),
                bytes.fromhex(r1["binding_nonce_randomness"]),
                handle,
                com,
            )
        )
        handles[ident] = handle[0]
        commitments[ident] = sf.SigningCommitments(_take(v, com[0]))
        # The serialized commitments end with hiding || binding (32 bytes each).
        tail = commitments[ident].data[-64:]
        assert tail.hex() == r1["hiding_nonce_commitment"] + r1["binding_nonce_commitment"]

    package = sf.signing_package(commitments, message)

    sig_shares: dict[int, sf.SignatureShare] = {}
    for r2 in vec["round_two_outputs"]["outputs"]:
        ident = r2["identifier"]
        raw = shares[ident][0]
        out = _out(v)
        _ok(v.lib.tt_sign(package.data, len(package.data), handles[ident], raw, len(raw), out))
        share = _take(v, out[0])
        assert share[-32:].hex() == r2["sig_share"]
        sig_shares[ident] = sf.SignatureShare(share)
        # The vectors build refuses nonce reuse too.
        again = _out(v)
        assert (
            v.lib.tt_sign(package.data, len(package.data), handles[ident], raw, len(raw), again)
            == -2
        )
        v.lib.tt_nonces_free(handles[ident])

    signature = sf.aggregate(package, sig_shares, public)
    assert signature.hex() == vec["final_output"]["sig"]
    assert sf.verify(public.verifying_key, message, signature)
    Ed25519PublicKey.from_public_bytes(public.verifying_key).verify(signature, message)


def test_dkg_vectors(frost_reference: Path, vectors_lib: VectorsLib) -> None:
    v = vectors_lib
    path = frost_reference / "dkg_vectors.json"
    vec = json.loads(path.read_text())
    inputs = vec["inputs"]
    max_s, min_s = int(vec["config"]["MAX_PARTICIPANTS"]), int(vec["config"]["MIN_PARTICIPANTS"])
    parts = {int(k): inputs[k] for k in inputs if k.isdigit()}

    round1: dict[int, bytes] = {}
    for ident, p in parts.items():
        coms = b"".join(bytes.fromhex(c) for c in p["vss_commitments"])
        proof = bytes.fromhex(p["proof_of_knowledge"])
        out = _out(v)
        _ok(v.lib.tt_vec_dkg_round1_package(coms, len(coms) // 32, proof, len(proof), out))
        round1[ident] = _take(v, out[0])

    for ident, p in parts.items():
        sk = bytes.fromhex(p["signing_key"])
        coeff = bytes.fromhex(p["coefficient"])
        idb = id_to_bytes(ident)
        out = _out(v)
        _ok(v.lib.tt_vec_dkg_secret(idb, len(idb), sk, coeff, 1, max_s, min_s, out))
        secret1 = sf.DkgRound1Secret(_take(v, out[0]))
        others1 = {j: pkg for j, pkg in round1.items() if j != ident}
        # Release-library part 2 verifies every peer's proof of knowledge.
        secret2, _to_send = sf.dkg_part2(secret1, others1)
        assert secret1.wiped
        round2: dict[int, bytes] = {}
        for j in others1:
            # signing_shares is keyed by sender, held by the receiver.
            share = bytes.fromhex(p["signing_shares"][str(j)])
            out2 = _out(v)
            _ok(v.lib.tt_vec_dkg_round2_package(share, len(share), out2))
            round2[j] = _take(v, out2[0])
        key_share, public = sf.dkg_part3(secret2, others1, round2)
        assert public.verifying_key.hex() == inputs["verifying_key"]
        assert key_share.identifier == ident
        assert key_share.verifying_share.hex() == p["verifying_share"]
        raw = key_share.to_bytes()
        out3 = _out(v)
        _ok(v.lib.tt_vec_key_package_signing_share(bytes(raw), len(raw), out3))
        assert _take(v, out3[0]).hex() == p["signing_share"]
