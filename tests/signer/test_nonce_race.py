"""A nonce handle signs at most once, also under concurrency (review helper-46, d9).

cffi releases the GIL during `tt_sign`; before the fix, two threads signing with one
handle could both pass the single-use check and both get a share made with the same
nonces (an unsynchronised `Option::take`), which leaks the key share, and a handle freed
while another thread signed with it was a use-after-free. The stress test is the crate's
own `cargo test` (native threads, no GIL to serialise them): bounded to a few seconds,
it caught the old race in two runs of three on a loaded 2-core machine, not always. The
other tests are deterministic.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

import signer_ffi as sf

from .conftest import CRATE, _cargo

THREADS = 4


def test_rust_concurrent_signs_take_each_handle_once() -> None:
    """`cargo test --release --lib` in signer_ffi: the stress test and the released handle."""
    proc = subprocess.run(
        [_cargo(), "test", "--release", "--lib", "--manifest-path", str(CRATE / "Cargo.toml")],
        capture_output=True,
        text=True,
        timeout=900,
        env=os.environ.copy(),
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert "2 passed" in proc.stdout, proc.stdout[-2000:]


def _sign_and_close_at_once(shares: list[sf.KeyShare]) -> list[object]:
    nonces, com = sf.commit(shares[0])
    _, com2 = sf.commit(shares[1])
    package = sf.signing_package({1: com, 2: com2}, b"m")
    got: list[object] = []
    barrier = threading.Barrier(THREADS + 1)

    def go() -> None:
        barrier.wait()
        try:
            got.append(sf.sign(package, nonces, shares[0]))
        except sf.SignerError as e:
            got.append(e)

    def closer() -> None:
        barrier.wait()
        nonces.close()

    threads = [threading.Thread(target=go) for _ in range(THREADS)]
    threads.append(threading.Thread(target=closer))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return got


def test_concurrent_python_signs_and_close_on_one_nonces() -> None:
    shares, _ = sf.generate_with_dealer(2, 3)
    for _ in range(50):
        got = _sign_and_close_at_once(shares)
        assert sum(isinstance(g, sf.SignatureShare) for g in got) <= 1
        assert all(isinstance(g, sf.SignatureShare | sf.FfiError) for g in got), got


def test_nonces_are_taken_before_parsing() -> None:
    """A malformed package consumes the handle too: the take is the first thing tt_sign does."""
    shares, _ = sf.generate_with_dealer(2, 3)
    nonces, com = sf.commit(shares[0])
    _, com2 = sf.commit(shares[1])
    with pytest.raises(sf.SignerError) as err:
        sf.sign(sf.SigningPackage(b"\x00garbage"), nonces, shares[0])
    assert not isinstance(err.value, sf.NonceReusedError)
    package = sf.signing_package({1: com, 2: com2}, b"m")
    with pytest.raises(sf.NonceReusedError):
        sf.sign(package, nonces, shares[0])


_AFTER_FREE = """
import signer_ffi as sf
from signer_ffi._lib import ffi, inp, lib
shares, _ = sf.generate_with_dealer(2, 3)
kp = bytes(shares[0].to_bytes())
nonces, com = sf.commit(shares[0])
_, com2 = sf.commit(shares[1])
pkg = sf.signing_package({1: com, 2: com2}, b"m").data
handle = ffi.new("tt_nonces **")
out = ffi.new("tt_buffer[]", 1)
assert lib.tt_commit(inp(kp), len(kp), handle, out) == 0
lib.tt_buffer_free(out)
h = handle[0]
lib.tt_nonces_free(h)
lib.tt_nonces_free(h)
print(lib.tt_sign(pkg, len(pkg), h, kp, len(kp), out))
"""


def test_released_handle_is_refused_not_dereferenced() -> None:
    """Signing with, or releasing again, a released handle: TT_ERR_NONCE_REUSED, no crash."""
    proc = subprocess.run(
        [sys.executable, "-c", _AFTER_FREE], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "-2"
