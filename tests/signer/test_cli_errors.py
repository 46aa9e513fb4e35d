"""`sign` with a missing or corrupt key group is an `error:` line, like `signer identity`
(review helper-57, item 6: FileNotFoundError / JSONDecodeError tracebacks); `signer
keygen` names the participants with no passphrase (item 9: "set
TRADETAPE_SIGNER_PASSPHRASE_<id>, ..." with only _1 set for 3 signers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deploy.cli import app
from deploy.settings import get_settings


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("TRADETAPE_SIGNER_PASSPHRASE", "TRADETAPE_SIGNER_PASSPHRASE_FILE"):
        monkeypatch.delenv(name, raising=False)
    for i in range(1, 6):
        monkeypatch.delenv(f"TRADETAPE_SIGNER_PASSPHRASE_{i}", raising=False)
    monkeypatch.setenv("TRADETAPE_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _group_dir(tmp_path: Path, content: str | None) -> Path:
    d = tmp_path / "keys"
    d.mkdir()
    if content is not None:
        (d / "group.json").write_text(content)
    return d


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no signer group at"),
        ("{bad", "group.json is not a valid group file"),
        ('{"threshold": 2}', "group.json is not a valid group file: missing field"),
    ],
    ids=["missing", "not-json", "incomplete"],
)
@pytest.mark.parametrize("command", ["sign", "identity"])
def test_a_missing_or_corrupt_group_is_an_error_line(
    tmp_path: Path, content: str | None, message: str, command: str
) -> None:
    keys = _group_dir(tmp_path, content)
    target = tmp_path / "report.xml"
    target.write_text("<report/>")
    args = (
        ["sign", str(target), "--key-dir", str(keys)]
        if command == "sign"
        else ["signer", "identity", "--id", "1", "--key-dir", str(keys)]
    )
    result = CliRunner().invoke(app, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert result.exit_code == 1, result.output
    assert "error: " in result.stderr and message in result.stderr, result.stderr


def test_keygen_names_the_participants_without_a_passphrase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRADETAPE_SIGNER_PASSPHRASE_1", "one")
    out = tmp_path / "keys"
    result = CliRunner().invoke(app, ["signer", "keygen", "-t", "2", "-n", "3", "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert "error: no passphrase for participants 2, 3" in result.stderr, result.stderr
    assert "TRADETAPE_SIGNER_PASSPHRASE_2, TRADETAPE_SIGNER_PASSPHRASE_3" in result.stderr
    assert not out.exists()

    monkeypatch.setenv("TRADETAPE_SIGNER_PASSPHRASE_2", "two")
    monkeypatch.setenv("TRADETAPE_SIGNER_PASSPHRASE_3", "three")
    result = CliRunner().invoke(app, ["signer", "keygen", "-t", "2", "-n", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "group.json").is_file()
