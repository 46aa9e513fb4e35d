"""`tradetape signer identity` and the requester checks of `tradetape sign`, no broker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deploy.cli import app
from deploy.settings import get_settings
from signer_ffi.authn import identity_file, public_hex
from signer_ffi.ceremony import dealer_keygen
from signer_ffi.group import GROUP_FILE, SignerGroup, load_identity

PASS = "identity test passphrase"


@pytest.fixture
def key_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("TRADETAPE_SIGNER_PASSPHRASE", PASS)
    monkeypatch.setenv("TRADETAPE_DATA_DIR", str(tmp_path / "data"))  # no requester key there
    get_settings.cache_clear()
    dealer_keygen(2, 3, tmp_path / "keys")
    yield tmp_path / "keys"
    get_settings.cache_clear()


def test_keygen_records_identity_keys_and_the_default_requester(key_dir: Path) -> None:
    group = SignerGroup.load(key_dir)
    assert group.requesters == ("signing-coordinator",)
    assert sorted(group.identity_keys) == [1, 2, 3]
    for i in (1, 2, 3):
        assert public_hex(load_identity(key_dir, i)) == group.identity_keys[i]


def test_identity_gives_an_older_participant_a_key(key_dir: Path) -> None:
    """A group.json from before identity keys: no `identity_keys`, no identity file."""
    raw = json.loads((key_dir / GROUP_FILE).read_text())
    del raw["identity_keys"], raw["requesters"]
    (key_dir / GROUP_FILE).write_text(json.dumps(raw))
    identity_file(key_dir, 2).unlink()
    assert SignerGroup.load(key_dir).identity_keys == {}

    result = CliRunner().invoke(app, ["signer", "identity", "--id", "2", "--key-dir", str(key_dir)])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout.strip().splitlines()[-1])
    group = SignerGroup.load(key_dir)
    assert group.identity_keys == {2: printed["identity_key"]}
    assert public_hex(load_identity(key_dir, 2)) == printed["identity_key"]

    again = CliRunner().invoke(app, ["signer", "identity", "--id", "2", "--key-dir", str(key_dir)])
    assert again.exit_code == 1 and "already exists" in again.output


def test_identity_refuses_a_wrong_passphrase(
    key_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    identity_file(key_dir, 3).unlink()
    monkeypatch.setenv("TRADETAPE_SIGNER_PASSPHRASE", "wrong")
    result = CliRunner().invoke(app, ["signer", "identity", "--id", "3", "--key-dir", str(key_dir)])
    assert result.exit_code == 1 and "wrong passphrase" in result.output
    assert not identity_file(key_dir, 3).exists()


def test_sign_refuses_a_requester_the_group_does_not_allow(key_dir: Path, tmp_path: Path) -> None:
    f = tmp_path / "report.txt"
    f.write_text("report")
    other = CliRunner().invoke(
        app, ["sign", str(f), "--key-dir", str(key_dir), "--requester", "mallory"]
    )
    assert other.exit_code == 2 and "not among the group's requesters" in other.output
    missing = CliRunner().invoke(app, ["sign", str(f), "--key-dir", str(key_dir)])
    assert missing.exit_code == 2 and "producer add signing-coordinator" in missing.output
