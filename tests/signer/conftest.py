"""Fixtures for the signer library tests.

RFC 9591 vector reproduction needs fixed nonce randomness and polynomial
coefficients, which the release library deliberately cannot accept. The
`vectors_lib` fixture therefore builds a second copy of the crate with the
`test-vectors` cargo feature (same sources, plus the `tt_vec_*` entry points),
copies it to a temp dir and dlopens it next to the release library. It uses
CARGO_TARGET_DIR when set (the Makefile sets a cached one), so after the
`pip install` build only the signer_ffi crate itself is recompiled.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cffi import FFI

from signer_ffi._cdef import CDEF, VECTORS_CDEF

REPO = Path(__file__).resolve().parents[2]
FROST_REFERENCE = REPO / ".." / "shared" / "reference" / "frost"
CRATE = REPO / "signer_ffi"


@pytest.fixture(scope="session")
def frost_reference() -> Path:
    if not (FROST_REFERENCE / "rfc9591_ed25519_vectors.json").is_file():
        pytest.skip(f"FROST reference vectors missing at {FROST_REFERENCE.resolve()}")
    return FROST_REFERENCE


@dataclass
class VectorsLib:
    ffi: Any
    lib: Any


def _cargo() -> str:
    found = shutil.which("cargo") or str(Path.home() / ".cargo" / "bin" / "cargo")
    if not Path(found).exists():
        pytest.fail("cargo not found: needed to build the test-vectors library")
    return found


@pytest.fixture(scope="session")
def vectors_lib(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VectorsLib]:
    cmd = [
        _cargo(),
        "build",
        "--release",
        "--features",
        "test-vectors",
        "--manifest-path",
        str(CRATE / "Cargo.toml"),
        "--message-format=json-render-diagnostics",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=os.environ.copy())
    if proc.returncode != 0:
        pytest.fail(f"cargo build --features test-vectors failed:\n{proc.stderr[-4000:]}")
    artifact: str | None = None
    for line in proc.stdout.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == "signer_ffi":
            for f in msg["filenames"]:
                if f.endswith((".so", ".dylib", ".dll")):
                    artifact = f
    assert artifact, "cargo produced no signer_ffi cdylib"
    dest = tmp_path_factory.mktemp("vectors_lib") / Path(artifact).name
    shutil.copy2(artifact, dest)
    ffi = FFI()
    ffi.cdef(CDEF + VECTORS_CDEF)
    yield VectorsLib(ffi=ffi, lib=ffi.dlopen(str(dest)))
