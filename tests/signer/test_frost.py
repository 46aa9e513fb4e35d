"""Protocol properties of the signer library (release build, no Kafka)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import signer_ffi as sf
from signer_ffi._cdef import CDEF

MESSAGE = b"tradetape withdrawal #42"


def ed25519_ok(vk: bytes, msg: bytes, sig: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(vk).verify(sig, msg)
        return True
    except InvalidSignature:
        return False


def run_signing(
    shares: list[sf.KeyShare], public: sf.PublicKeyPackage, signers: list[int], msg: bytes
) -> bytes:
    by_id = {s.identifier: s for s in shares}
    rounds = {i: sf.commit(by_id[i]) for i in signers}
    package = sf.signing_package({i: c for i, (_, c) in rounds.items()}, msg)
    sig_shares = {i: sf.sign(package, n, by_id[i]) for i, (n, _) in rounds.items()}
    return sf.aggregate(package, sig_shares, public)


@st.composite
def threshold_setup(draw: st.DrawFn) -> tuple[int, int, list[int], bytes]:
    n = draw(st.integers(min_value=2, max_value=6))
    t = draw(st.integers(min_value=2, max_value=n))
    subset = draw(st.lists(st.integers(1, n), min_size=t, max_size=t, unique=True))
    msg = draw(st.binary(max_size=64))
    return t, n, subset, msg


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(threshold_setup())
def test_any_t_of_n_signs_and_t_minus_1_cannot(setup: tuple[int, int, list[int], bytes]) -> None:
    t, n, subset, msg = setup
    shares, public = sf.generate_with_dealer(t, n)
    assert public.min_signers == t and public.identifiers == tuple(range(1, n + 1))
    sig = run_signing(shares, public, subset, msg)
    assert len(sig) == 64
    assert sf.verify(public.verifying_key, msg, sig)
    assert ed25519_ok(public.verifying_key, msg, sig)
    assert not ed25519_ok(public.verifying_key, msg + b"x", sig)

    # T-1 signers: either aggregation refuses or the result does not verify.
    short = subset[:-1]
    try:
        bad = run_signing(shares, public, short, msg)
    except sf.SignerError as e:
        assert isinstance(e, sf.ThresholdError), e
    else:  # pragma: no cover - frost refuses; keep the property if that changes
        assert not ed25519_ok(public.verifying_key, msg, bad)


def test_two_shares_of_a_three_of_four_key_are_refused() -> None:
    """Fixed T-1 case alongside the property: 2 of a 3-of-4 key cannot sign."""
    shares, public = sf.generate_with_dealer(3, 4)
    with pytest.raises(sf.ThresholdError):
        run_signing(shares, public, [1, 2], MESSAGE)


def test_tampered_share_names_the_culprit() -> None:
    shares, public = sf.generate_with_dealer(3, 5)
    by_id = {s.identifier: s for s in shares}
    rounds = {i: sf.commit(by_id[i]) for i in (1, 3, 4)}
    package = sf.signing_package({i: c for i, (_, c) in rounds.items()}, MESSAGE)
    sig_shares = {i: sf.sign(package, n, by_id[i]) for i, (n, _) in rounds.items()}
    good = sf.aggregate(package, sig_shares, public)
    assert ed25519_ok(public.verifying_key, MESSAGE, good)

    # Flip a low bit of participant 4's scalar (still a canonical scalar).
    raw = bytearray(sig_shares[4].data)
    raw[-32] ^= 0x01
    tampered = dict(sig_shares)
    tampered[4] = sf.SignatureShare(bytes(raw))
    with pytest.raises(sf.InvalidSignatureShareError) as err:
        sf.aggregate(package, tampered, public)
    assert err.value.culprits == (4,)
    assert "4" in str(err.value)

    # Two cheaters: both named (every share is checked, not just the first bad one).
    raw1 = bytearray(sig_shares[1].data)
    raw1[-32] ^= 0x02
    tampered[1] = sf.SignatureShare(bytes(raw1))
    with pytest.raises(sf.InvalidSignatureShareError) as err2:
        sf.aggregate(package, tampered, public)
    assert set(err2.value.culprits) == {1, 4}


def test_nonce_handle_cannot_be_reused() -> None:
    shares, _ = sf.generate_with_dealer(2, 3)
    nonces, com = sf.commit(shares[0])
    _, com2 = sf.commit(shares[1])
    package = sf.signing_package({1: com, 2: com2}, MESSAGE)
    sf.sign(package, nonces, shares[0])
    assert nonces.used
    with pytest.raises(sf.NonceReusedError):
        sf.sign(package, nonces, shares[0])
    other = sf.signing_package({1: com, 2: com2}, b"a different message")
    with pytest.raises(sf.NonceReusedError):
        sf.sign(other, nonces, shares[0])
    nonces.close()
    with pytest.raises(sf.FfiError):  # freed handle: NULL, refused, no crash
        sf.sign(package, nonces, shares[0])


def test_failed_sign_still_consumes_nonces() -> None:
    """A sign() rejected by frost (e.g. our commitment missing) burns the nonces."""
    shares, _ = sf.generate_with_dealer(2, 3)
    nonces, _ = sf.commit(shares[0])
    _, c2 = sf.commit(shares[1])
    _, c3 = sf.commit(shares[2])
    package = sf.signing_package({2: c2, 3: c3}, MESSAGE)
    with pytest.raises(sf.FrostError):
        sf.sign(package, nonces, shares[0])
    with pytest.raises(sf.NonceReusedError):
        sf.sign(package, nonces, shares[0])


def test_dkg_end_to_end_three_participants_threshold_two() -> None:
    ids = [1, 2, 3]
    r1 = {i: sf.dkg_part1(i, 3, 2) for i in ids}
    round1 = {i: pkg for i, (_, pkg) in r1.items()}
    r2 = {}
    for i in ids:
        others = {j: p for j, p in round1.items() if j != i}
        secret2, to_send = sf.dkg_part2(r1[i][0], others)
        assert r1[i][0].wiped
        assert set(to_send) == set(others)
        r2[i] = (secret2, to_send)
    results = {}
    for i in ids:
        others1 = {j: p for j, p in round1.items() if j != i}
        received = {j: r2[j][1][i] for j in ids if j != i}
        results[i] = sf.dkg_part3(r2[i][0], others1, received)
        assert r2[i][0].wiped
    keys = {pub.verifying_key for _, pub in results.values()}
    assert len(keys) == 1
    shares = [share for share, _ in results.values()]
    public = results[1][1]
    for subset in ([1, 2], [2, 3], [1, 3], [1, 2, 3]):
        sig = run_signing(shares, public, subset, MESSAGE)
        assert ed25519_ok(public.verifying_key, MESSAGE, sig)


def test_dkg_bad_proof_of_knowledge_names_sender() -> None:
    r1 = {i: sf.dkg_part1(i, 3, 2) for i in (1, 2, 3)}
    # Participant 3 replays participant 2's round-1 package as its own.
    forged = {2: r1[2][1], 3: r1[2][1]}
    with pytest.raises(sf.InvalidProofOfKnowledgeError) as err:
        sf.dkg_part2(r1[1][0], forged)
    assert err.value.culprits == (3,)


def test_key_share_public_facts_and_wipe() -> None:
    shares, public = sf.generate_with_dealer(2, 3)
    s = shares[1]
    assert s.identifier == 2 and s.min_signers == 2
    assert s.verifying_key == public.verifying_key
    assert "redacted" in repr(s)
    s.wipe()
    assert s.wiped
    with pytest.raises(ValueError):
        sf.commit(s)


def test_invalid_parameters_raise_threshold_error() -> None:
    with pytest.raises(sf.ThresholdError):
        sf.generate_with_dealer(1, 3)
    with pytest.raises(sf.ThresholdError):
        sf.generate_with_dealer(4, 3)


def test_header_matches_python_cdef() -> None:
    crate = Path(__file__).resolve().parents[2] / "signer_ffi"
    header = (crate / "include" / "signer_ffi.h").read_text()
    block = re.search(r"/\* BEGIN CDEF \*/(.*?)/\* END CDEF \*/", header, re.S)
    assert block is not None and block.group(1) == CDEF
    lib_rs = (crate / "src" / "lib.rs").read_text()
    exported = set(re.findall(r'extern "C" fn (tt_\w+)', lib_rs))
    declared = set(re.findall(r"\b(tt_\w+)\(", CDEF))
    assert exported == declared
    for name, value in re.findall(r"pub const (TT_\w+): i32 = (-?\d+);", lib_rs):
        assert f"#define {name} ({value})" in header
        if int(value) > 0 and name != "TT_OK":
            assert int(value) in sf.errors.FROST_CODES
        elif int(value) < 0:
            assert int(value) in sf.errors.FFI_CODES
