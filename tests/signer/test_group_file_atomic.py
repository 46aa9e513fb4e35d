"""`group.json` is replaced whole or not at all (issue #3, h62 item 4). Before, `save`
truncated the file in place and wrote it: `signer identity` adding a participant's key
on a full disk left a truncated group.json, and every signer process of that directory
then failed to start."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

from signer_ffi.frost import generate_with_dealer
from signer_ffi.group import GROUP_FILE, SignerGroup

_FULL_DISK = """
import json, resource, signal, sys
from pathlib import Path
from signer_ffi.group import SignerGroup
directory = Path(sys.argv[1])
group = SignerGroup.load(directory)
grown = SignerGroup(
    threshold=group.threshold,
    identifiers=group.identifiers,
    public_key_package=group.public_key_package,
    identity_keys={i: "ab" * 32 for i in group.identifiers},  # a bigger file than before
    requesters=group.requesters,
)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))  # "disk full"
try:
    grown.save(directory)
except OSError as exc:
    print("failed", exc.errno)
else:
    print("written")
"""


def test_a_failed_rewrite_leaves_the_old_group_file_whole(tmp_path: Path) -> None:
    _shares, public = generate_with_dealer(2, 3)
    group = SignerGroup(threshold=2, identifiers=public.identifiers, public_key_package=public)
    path = group.save(tmp_path)
    before = path.read_bytes()
    limit = len(before) + 16  # room for the old file, not for the new one
    proc = subprocess.run(
        [sys.executable, "-c", _FULL_DISK, str(tmp_path), str(limit)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.stdout.startswith("failed"), proc.stdout + proc.stderr[-2000:]
    assert path.read_bytes() == before
    assert json.loads(before)["identity_keys"] == {}
    assert SignerGroup.load(tmp_path) == group
    assert [p.name for p in tmp_path.iterdir()] == [GROUP_FILE]  # no temp file left


def test_the_group_file_stays_public_and_replaces_a_symlink(tmp_path: Path) -> None:
    _shares, public = generate_with_dealer(2, 3)
    group = SignerGroup(threshold=2, identifiers=public.identifiers, public_key_package=public)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("not yours")
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / GROUP_FILE).symlink_to(elsewhere)
    path = group.save(tmp_path / "keys")
    assert elsewhere.read_text() == "not yours"
    assert not path.is_symlink()
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode & 0o600 == 0o600 and not mode & 0o022  # owner rw, nobody else writes
    assert SignerGroup.load(tmp_path / "keys") == group
