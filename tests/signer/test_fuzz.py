"""Random and truncated bytes into every deserialising entry point.

The contract: a typed SignerError (a status code from Rust), never a crash,
hang or panic escaping the boundary.
"""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import signer_ffi as sf

FUZZ = settings(max_examples=100, deadline=None)


@cache
def material() -> dict[str, object]:
    shares, public = sf.generate_with_dealer(2, 3)
    n1, c1 = sf.commit(shares[0])
    n2, c2 = sf.commit(shares[1])
    package = sf.signing_package({1: c1, 2: c2}, b"m")
    z1 = sf.sign(package, n1, shares[0])
    z2 = sf.sign(package, n2, shares[1])
    sig = sf.aggregate(package, {1: z1, 2: z2}, public)
    _, r1 = sf.dkg_part1(1, 3, 2)
    return {
        "key_package": bytes(shares[0].to_bytes()),
        "public": public.data,
        "commitments": c1.data,
        "package": package.data,
        "share": z1.data,
        "signature": sig,
        "round1": r1,
        "shares": shares,
        "public_obj": public,
        "z": {1: z1, 2: z2},
        "pkg_obj": package,
    }


def garbage(kind: str) -> st.SearchStrategy[bytes]:
    """Pure noise, or a valid encoding truncated / bit-flipped / extended."""

    def mutate(args: tuple[int, int, int]) -> bytes:
        raw = material()[kind]
        assert isinstance(raw, bytes)
        op, pos, val = args
        pos %= max(len(raw), 1)
        if op == 0:
            return raw[:pos]
        if op == 1:
            return raw[:pos] + bytes([raw[pos] ^ (val or 1)]) + raw[pos + 1 :]
        return raw + bytes([val])

    return st.one_of(
        st.binary(max_size=300),
        st.tuples(st.integers(0, 2), st.integers(0, 10_000), st.integers(0, 255)).map(mutate),
    )


def expect_error_or_value(fn: object, *args: object) -> None:
    try:
        fn(*args)  # type: ignore[operator]
    except sf.SignerError as e:
        assert not isinstance(e, sf.NativePanicError), e
    except ValueError:
        pass  # all-zero "key package": rejected before reaching Rust


@FUZZ
@given(garbage("key_package"))
def test_key_package_bytes(data: bytes) -> None:
    def load() -> None:
        share = sf.KeyShare(data)
        nonces, _ = sf.commit(share)
        nonces.close()

    expect_error_or_value(load)


@FUZZ
@given(garbage("public"))
def test_public_key_package_bytes(data: bytes) -> None:
    expect_error_or_value(sf.PublicKeyPackage, data)


@FUZZ
@given(garbage("commitments"))
def test_commitment_bytes(data: bytes) -> None:
    c2 = sf.SigningCommitments(material()["commitments"])  # type: ignore[arg-type]
    expect_error_or_value(sf.signing_package, {1: sf.SigningCommitments(data), 2: c2}, b"m")


@FUZZ
@given(garbage("package"))
def test_signing_package_bytes_into_sign(data: bytes) -> None:
    shares = material()["shares"]
    assert isinstance(shares, list)
    nonces, _ = sf.commit(shares[0])
    expect_error_or_value(sf.sign, sf.SigningPackage(data), nonces, shares[0])
    nonces.close()


@FUZZ
@given(garbage("package"), st.integers(0, 2**16), st.binary(max_size=40))
def test_signing_package_bytes_into_contents(data: bytes, ident: int, raw_id: bytes) -> None:
    """The accessor a participant runs on the coordinator's package before signing."""
    m = material()
    good = m["pkg_obj"]
    assert isinstance(good, sf.SigningPackage)
    pkg = sf.SigningPackage(data)
    try:
        held = pkg.contents(ident)
    except sf.SignerError as e:
        assert not isinstance(e, sf.NativePanicError), e
        assert data != good.data or ident == 0  # 0 is not a valid FROST identifier
    else:
        assert all(i >= 1 for i in held.signers)
        assert (held.commitments is not None) == (ident in held.signers)
        if data == good.data:
            assert (held.message, held.signers) == (b"m", (1, 2))
            if ident == 1:
                assert held.commitments is not None
                assert held.commitments.data == m["commitments"]

    from signer_ffi._lib import Buffers, check, ffi, inp, lib

    # Raw identifier bytes of any length (not only well-formed scalars) at the C boundary.
    with Buffers(3) as out:
        status = lib.tt_signing_package_info(
            inp(good.data),
            len(good.data),
            inp(raw_id) if raw_id else ffi.NULL,
            len(raw_id),
            out.ptr(0),
            out.ptr(1),
            out.ptr(2),
        )
        assert status != -3  # never a panic
        if status != 0:
            expect_error_or_value(check, status)


@FUZZ
@given(garbage("package"), garbage("share"), garbage("public"))
def test_aggregate_inputs(package: bytes, share: bytes, public: bytes) -> None:
    m = material()
    z = m["z"]
    assert isinstance(z, dict)
    good_pkg, good_pub = m["pkg_obj"], m["public_obj"]
    assert isinstance(good_pkg, sf.SigningPackage) and isinstance(good_pub, sf.PublicKeyPackage)
    expect_error_or_value(sf.aggregate, good_pkg, {1: z[1], 2: sf.SignatureShare(share)}, good_pub)
    expect_error_or_value(sf.aggregate, sf.SigningPackage(package), z, good_pub)

    def with_bad_public() -> None:
        sf.aggregate(good_pkg, z, sf.PublicKeyPackage(public))

    expect_error_or_value(with_bad_public)


@FUZZ
@given(st.binary(max_size=80), garbage("signature"), st.binary(max_size=40))
def test_verify_inputs(vk: bytes, sig: bytes, msg: bytes) -> None:
    m = material()
    public = m["public_obj"]
    assert isinstance(public, sf.PublicKeyPackage)
    expect_error_or_value(sf.verify, vk, msg, sig)
    result = sf.verify(public.verifying_key, b"m", sig)
    assert result == (sig == m["signature"])


@FUZZ
@given(st.binary(max_size=200), garbage("round1"))
def test_dkg_inputs(secret: bytes, round1: bytes) -> None:
    s1, _ = sf.dkg_part1(1, 3, 2)
    _, r2 = sf.dkg_part1(2, 3, 2)
    _, r3 = sf.dkg_part1(3, 3, 2)
    expect_error_or_value(sf.dkg_part2, s1, {2: r2, 3: round1})
    expect_error_or_value(sf.dkg_part2, sf.DkgRound1Secret(secret + b"\x01"), {2: r2, 3: r3})
    expect_error_or_value(
        sf.dkg_part3, sf.DkgRound2Secret(secret + b"\x01"), {2: r2, 3: r3}, {2: secret, 3: secret}
    )


def test_bad_identifiers() -> None:
    with pytest.raises(sf.MalformedInputError):
        sf.dkg_part1(0, 3, 2)
    with pytest.raises(ValueError):
        sf.dkg_part1(2**256, 3, 2)


def test_null_pointers_at_the_c_boundary() -> None:
    """Direct ABI calls with NULL inputs/outputs return TT_ERR_NULL_POINTER (-1)."""
    from signer_ffi._lib import ffi, lib

    out = ffi.new("tt_buffer[]", 2)
    handle = ffi.new("tt_nonces **")
    assert lib.tt_commit(ffi.NULL, 10, handle, out) == -1
    assert lib.tt_commit(b"x" * 10, 10, ffi.NULL, out) == -1
    assert lib.tt_sign(b"x", 1, ffi.NULL, b"x", 1, out) == -1
    assert lib.tt_aggregate(ffi.NULL, 5, ffi.NULL, ffi.NULL, 0, b"x", 1, out, ffi.NULL) == -1
    assert lib.tt_verify(ffi.NULL, 32, b"m", 1, b"s" * 64, 64) == -1
    assert lib.tt_generate_with_dealer(3, 2, ffi.NULL, out) == -1
    assert lib.tt_signing_package_info(ffi.NULL, 5, ffi.NULL, 0, out, out + 1, ffi.NULL) == -1
    assert lib.tt_signing_package_info(b"x", 1, ffi.NULL, 0, ffi.NULL, out, ffi.NULL) == -1
    pkg = material()["package"]
    assert isinstance(pkg, bytes)
    assert lib.tt_signing_package_info(pkg, len(pkg), ffi.NULL, 32, out, out + 1, out) == -1
    assert lib.tt_signing_package_info(pkg, len(pkg), b"i" * 32, 32, out, out + 1, ffi.NULL) == -1
    lib.tt_buffer_free(out)
    lib.tt_buffer_free(out + 1)
    lib.tt_buffer_free(ffi.NULL)
    lib.tt_nonces_free(ffi.NULL)
    lib.tt_buffer_free(out)  # empty buffer: no-op
