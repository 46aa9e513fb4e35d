"""Key files are replaced atomically and never written through a symlink (review
helper-46, d4). Before, the file was truncated in place and then written: a full disk
mid-write left an empty key file (the only copy of a DKG share gone), a symlink at the
path was followed, and a pre-existing 0644 file stayed 0644 when the write failed."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

from signer_ffi.frost import generate_with_dealer
from signer_ffi.keyfile import read_key_file, write_key_file

PASS = b"atomic test passphrase"

_FULL_DISK = """
import os, resource, signal, sys
from pathlib import Path
from signer_ffi.frost import generate_with_dealer
from signer_ffi.keyfile import write_key_file
path = Path(sys.argv[1])
shares, _ = generate_with_dealer(2, 3)
os.chmod(path, 0o644)  # e.g. restored from a backup with the default umask
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (64, resource.RLIM_INFINITY))  # "disk full" at 64 B
try:
    write_key_file(path, shares[1], b"another passphrase")
except OSError as exc:
    print("failed", exc.errno)
else:
    print("written")
"""


def test_a_failed_write_leaves_the_old_key_file_whole(tmp_path: Path) -> None:
    shares, _ = generate_with_dealer(2, 3)
    path = tmp_path / "participant-1.key"
    write_key_file(path, shares[0], PASS)
    before = path.read_bytes()
    proc = subprocess.run(
        [sys.executable, "-c", _FULL_DISK, str(path)], capture_output=True, text=True, timeout=120
    )
    assert proc.stdout.startswith("failed"), proc.stdout + proc.stderr[-2000:]
    assert path.read_bytes() == before
    assert read_key_file(path, PASS).identifier == 1
    assert [p.name for p in tmp_path.iterdir()] == ["participant-1.key"]  # no temp file left


def test_a_symlink_at_the_path_is_replaced_not_followed(tmp_path: Path) -> None:
    shares, _ = generate_with_dealer(2, 3)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(b"not yours")
    (tmp_path / "keys").mkdir()
    path = tmp_path / "keys" / "participant-1.key"
    path.symlink_to(elsewhere)
    write_key_file(path, shares[0], PASS)
    assert elsewhere.read_bytes() == b"not yours"
    assert not path.is_symlink()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_key_file(path, PASS).identifier == 1


def test_a_rewritten_key_file_is_0600(tmp_path: Path) -> None:
    shares, _ = generate_with_dealer(2, 3)
    path = tmp_path / "participant-1.key"
    path.write_bytes(b"old")
    path.chmod(0o644)
    write_key_file(path, shares[0], PASS)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
