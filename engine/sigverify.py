"""Batched Ed25519 verification of producer signatures (Rust: ed25519-dalek, via cffi).

Checking each intent's signature alone with libsodium costs 60-140 us here, the largest
single item per intent. `verify_many` hands a whole batch to `tt_ed25519_verify_many` in
the signer_ffi cdylib: one `verify_batch` (a random linear combination, about half the
cost per signature), and only if that fails each signature alone with `verify_strict`.

Verdicts: small-order public keys, non-canonical S and wrong signatures are refused as
libsodium refuses them (tests/engine/test_sigverify.py). One documented difference: the
batch equation is the cofactored one, so a signature whose R carries a small-order
component — something only the holder of the private key can construct, over exactly
these bytes — passes in a valid batch where libsodium's cofactorless check refuses it. It
cannot make a signature by anyone else's key pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cffi import FFI

from signer_ffi._lib import library_path

_ffi = FFI()
_ffi.cdef(
    """
typedef struct tt_slice { const uint8_t *ptr; size_t len; } tt_slice;
int32_t tt_ed25519_verify_many(const uint8_t *public_keys, const tt_slice *messages,
    const uint8_t *signatures, size_t n, uint8_t *out_verdicts);
"""
)
_lib: Any = _ffi.dlopen(str(library_path()))


def verify_many(items: Sequence[tuple[bytes, bytes, bytes]]) -> list[bool]:
    """Verdicts for (32-byte public key, message, 64-byte signature) triples, in order.

    A key or signature of the wrong length is simply invalid.
    """
    n = len(items)
    verdicts = [False] * n
    ok = [i for i, (k, _m, s) in enumerate(items) if len(k) == 32 and len(s) == 64]
    if not ok:
        return verdicts
    m = len(ok)
    keys = b"".join(items[i][0] for i in ok)
    sigs = b"".join(items[i][2] for i in ok)
    slices = _ffi.new("tt_slice[]", m)
    keep = []
    for j, i in enumerate(ok):
        msg = items[i][1]
        buf = _ffi.from_buffer(msg)
        keep.append(buf)
        slices[j].ptr = buf
        slices[j].len = len(msg)
    out = _ffi.new("uint8_t[]", m)
    rc = _lib.tt_ed25519_verify_many(keys, slices, sigs, m, out)
    if rc != 0:
        raise RuntimeError(f"tt_ed25519_verify_many failed with status {rc}")
    for j, i in enumerate(ok):
        verdicts[i] = out[j] == 1
    return verdicts
