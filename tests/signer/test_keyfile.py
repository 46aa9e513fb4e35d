"""Key shares encrypted at rest decrypt only with the right passphrase."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import signer_ffi as sf
from signer_ffi import keyfile

FAST = 10  # scrypt log2(n) for tests; production default is keyfile.DEFAULT_LOG2_N


def test_round_trip_and_wrong_passphrase(tmp_path: Path) -> None:
    shares, public = sf.generate_with_dealer(2, 3)
    path = tmp_path / "p1.key"
    keyfile.write_key_file(path, shares[0], b"correct horse")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert bytes(shares[0].to_bytes()) not in path.read_bytes()
    loaded = keyfile.read_key_file(path, bytearray(b"correct horse"))
    assert loaded.identifier == 1 and loaded.verifying_key == public.verifying_key
    assert loaded.to_bytes() == shares[0].to_bytes()
    with pytest.raises(keyfile.WrongPassphraseError):
        keyfile.read_key_file(path, b"correct horse!")
    # A decrypted share signs.
    n1, c1 = sf.commit(loaded)
    n2, c2 = sf.commit(shares[1])
    pkg = sf.signing_package({1: c1, 2: c2}, b"m")
    sig = sf.aggregate(pkg, {1: sf.sign(pkg, n1, loaded), 2: sf.sign(pkg, n2, shares[1])}, public)
    assert sf.verify(public.verifying_key, b"m", sig)


@settings(max_examples=10, deadline=None)
@given(st.binary(min_size=1, max_size=32), st.binary(min_size=1, max_size=32))
def test_only_the_right_passphrase(right: bytes, other: bytes) -> None:
    shares, _ = sf.generate_with_dealer(2, 2)
    blob = keyfile.encrypt_key_share(shares[0], right, log2_n=FAST)
    assert keyfile.decrypt_key_share(blob, right).identifier == 1
    if other != right:
        with pytest.raises(keyfile.WrongPassphraseError):
            keyfile.decrypt_key_share(blob, other)


def test_tampering_and_garbage_rejected() -> None:
    shares, _ = sf.generate_with_dealer(2, 2)
    blob = bytearray(keyfile.encrypt_key_share(shares[0], b"pw", log2_n=FAST))
    for pos in (9, len(blob) - 1, 40):  # salt, tag, ciphertext
        bad = bytearray(blob)
        bad[pos] ^= 1
        with pytest.raises(keyfile.WrongPassphraseError):
            keyfile.decrypt_key_share(bytes(bad), b"pw")
    for junk in (b"", b"TTKS", b"XXXX" + bytes(blob[4:])):
        with pytest.raises(keyfile.KeyFileError):
            keyfile.decrypt_key_share(junk, b"pw")
    with pytest.raises(ValueError):
        keyfile.encrypt_key_share(shares[0], b"")
