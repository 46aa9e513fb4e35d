"""Loading the native library through cffi in ABI mode (dlopen).

ABI mode needs no C compiler at install time: `pip install` builds only the
Rust cdylib (via setuptools-rust, NoBinding), which lands next to this file as
`_native<EXT_SUFFIX>`. Everything here is the thin layer that turns pointers,
buffers and status codes into Python values and exceptions; the typed API is
in `signer_ffi.frost`.
"""

from __future__ import annotations

import importlib.machinery
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cffi import FFI

from signer_ffi._cdef import CDEF
from signer_ffi.errors import error_for

ffi = FFI()
ffi.cdef(CDEF)

ID_LEN = 32
_ENV_OVERRIDE = "TRADETAPE_SIGNER_LIB"


def library_path() -> Path:
    """The built cdylib inside the package (or $TRADETAPE_SIGNER_LIB)."""
    override = os.environ.get(_ENV_OVERRIDE)
    if override:
        return Path(override)
    here = Path(__file__).resolve().parent
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = here / f"_native{suffix}"
        if candidate.exists():
            return candidate
    raise ImportError(
        f"signer_ffi native library not found in {here}; reinstall the project "
        "with `pip install -e .` (it builds the Rust crate)"
    )


lib: Any = ffi.dlopen(str(library_path()))

ABI_VERSION = 2
if lib.tt_abi_version() != ABI_VERSION:
    raise ImportError(
        f"signer_ffi ABI mismatch: library {lib.tt_abi_version()}, bindings {ABI_VERSION}"
    )


def id_to_bytes(identifier: int) -> bytes:
    """A u16-style participant number as frost's 32-byte scalar encoding."""
    if not 0 <= identifier < 2**252:
        raise ValueError(f"identifier out of range: {identifier}")
    return identifier.to_bytes(ID_LEN, "little")


def id_from_bytes(data: bytes) -> int:
    return int.from_bytes(data, "little")


def ids_from_concat(data: bytes) -> tuple[int, ...]:
    return tuple(id_from_bytes(data[i : i + ID_LEN]) for i in range(0, len(data), ID_LEN))


class Buffers:
    """Rust-owned output buffers, freed (zeroized by Rust) on exit."""

    def __init__(self, n: int = 1) -> None:
        self.arr: Any = ffi.new("tt_buffer[]", max(n, 1))
        self.n = max(n, 1)

    def __enter__(self) -> Buffers:
        return self

    def __exit__(self, *exc: object) -> None:
        for i in range(self.n):
            lib.tt_buffer_free(self.arr + i)

    def ptr(self, i: int = 0) -> Any:
        return self.arr + i

    def public(self, i: int = 0) -> bytes:
        b = self.arr[i]
        return bytes(ffi.buffer(b.ptr, b.len)) if b.ptr != ffi.NULL else b""

    def secret(self, i: int = 0) -> bytearray:
        """Copy straight into a bytearray (wipeable), never via an immutable bytes."""
        b = self.arr[i]
        out = bytearray(b.len)
        if b.len:
            ffi.memmove(ffi.from_buffer(out), b.ptr, b.len)
        return out


def inp(data: bytes | bytearray) -> Any:
    """A zero-copy `const uint8_t *` view of caller bytes (secrets stay in place)."""
    return ffi.from_buffer("uint8_t[]", data)


class Slices:
    """A `tt_slice[]` array pointing at Python buffers kept alive by this object."""

    def __init__(self, items: Iterable[bytes | bytearray]) -> None:
        self._views = [ffi.from_buffer("uint8_t[]", x) for x in items]
        self.n = len(self._views)
        self.arr: Any = ffi.new("tt_slice[]", max(self.n, 1))
        for i, v in enumerate(self._views):
            self.arr[i].ptr = v
            self.arr[i].len = len(v)


def check(status: int, culprits: Buffers | None = None) -> None:
    if status != 0:
        found = ids_from_concat(culprits.public()) if culprits is not None else ()
        raise error_for(status, found)


def wipe(buf: bytearray) -> None:
    """Overwrite a secret buffer in place."""
    buf[:] = bytes(len(buf))  # same length: overwritten in place, no reallocation
