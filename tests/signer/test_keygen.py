"""`tradetape signer keygen` never destroys an existing group (review helper-46, d3).

Before, keygen into a directory holding a group overwrote its key files one by one, and
a passphrase missing for a later participant aborted half-way: share 1 of the live group
replaced by a share of a group that was never saved.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deploy.cli import app
from deploy.settings import get_settings
from signer_ffi.ceremony import dealer_keygen
from signer_ffi.group import PassphraseMissingError, SignerGroup, load_share

PASS = "keygen test passphrase"


@pytest.fixture(autouse=True)
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in ("TRADETAPE_SIGNER_PASSPHRASE", "TRADETAPE_SIGNER_PASSPHRASE_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TRADETAPE_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_keygen_into_an_existing_group_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRADETAPE_SIGNER_PASSPHRASE", PASS)
    keys = tmp_path / "keys"
    dealer_keygen(2, 3, keys)
    before = _snapshot(keys)
    result = CliRunner().invoke(app, ["signer", "keygen", "--out", str(keys)])
    assert result.exit_code == 1
    assert "refusing to overwrite" in result.output
    assert _snapshot(keys) == before


def test_missing_passphrase_leaves_the_directory_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRADETAPE_SIGNER_PASSPHRASE", PASS)
    keys = tmp_path / "keys"
    group = dealer_keygen(2, 3, keys)
    before = _snapshot(keys)
    monkeypatch.delenv("TRADETAPE_SIGNER_PASSPHRASE")
    monkeypatch.setenv("TRADETAPE_SIGNER_PASSPHRASE_1", PASS)  # 2 and 3 have none
    with pytest.raises(PassphraseMissingError):
        dealer_keygen(2, 3, keys, force=True)
    assert _snapshot(keys) == before
    assert load_share(keys, 1).verifying_key == group.verifying_key
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys"]  # no staging left behind


def test_missing_passphrase_writes_nothing_into_a_new_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRADETAPE_SIGNER_PASSPHRASE_1", PASS)
    result = CliRunner().invoke(app, ["signer", "keygen", "--out", str(tmp_path / "keys")])
    assert result.exit_code == 1
    assert "TRADETAPE_SIGNER_PASSPHRASE" in result.output
    assert not (tmp_path / "keys").exists()


def test_force_replaces_the_group_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADETAPE_SIGNER_PASSPHRASE", PASS)
    keys = tmp_path / "keys"
    dealer_keygen(2, 5, keys)
    result = CliRunner().invoke(app, ["signer", "keygen", "--out", str(keys), "--force"])
    assert result.exit_code == 0, result.output
    group = SignerGroup.load(keys)
    names = sorted(p.name for p in keys.iterdir())
    assert names == sorted(
        ["group.json"]
        + [f"participant-{i}.{ext}" for i in (1, 2, 3) for ext in ("key", "identity")]
    )  # participant-4/5 of the old group are gone, not mixed in
    for i in (1, 2, 3):
        assert load_share(keys, i).verifying_key == group.verifying_key
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".keys")]  # no leftovers


def test_keygen_into_an_empty_existing_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRADETAPE_SIGNER_PASSPHRASE", PASS)
    (tmp_path / "keys").mkdir()
    group = dealer_keygen(2, 3, tmp_path / "keys")
    assert load_share(tmp_path / "keys", 2).verifying_key == group.verifying_key
