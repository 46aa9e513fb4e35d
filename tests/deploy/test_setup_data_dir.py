"""`tradetape setup --data-dir D` says what it does with D.

Every command takes `--data-dir` (tests/deploy/test_cli_help.py), and setup's help
offered it with the stack's generic text ("broker, database, keys") though setup fetched
only the user-wide Kafka jars and looked up the PostgreSQL binaries: the option was
silently ignored. Now setup reports the data directory `up` will use (the one given, or
the one found) and whether it exists yet, and its help says that is all it does with it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deploy.cli import app
from deploy.settings import get_settings


@pytest.fixture(autouse=True)
def _restore_the_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """`--data-dir` sets TRADETAPE_DATA_DIR in this process (`use_data_dir`): monkeypatch
    puts back what was there (or its absence) afterwards."""
    monkeypatch.setenv("TRADETAPE_DATA_DIR", str(tmp_path / "unused"))
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


def test_setup_help_says_what_setup_does_with_the_data_dir() -> None:
    out = CliRunner().invoke(app, ["setup", "--help"], terminal_width=200).output
    assert "--data-dir" in out, out
    assert "reports it" in out, out
    assert "broker, database, keys" not in out, out  # the stack commands' text


@pytest.mark.parametrize("exists", [False, True])
def test_setup_reports_the_data_dir_it_was_given(tmp_path: Path, exists: bool) -> None:
    data = tmp_path / "stack"
    if exists:
        data.mkdir()
    done = CliRunner().invoke(app, ["setup", "--data-dir", str(data)], terminal_width=200)
    assert done.exit_code == 0, done.output
    line = f"data dir: {data.resolve()}"
    want = line if exists else f"{line} (not there yet: `tradetape up` creates it)"
    assert want in done.output.splitlines(), done.output
    assert data.exists() is exists  # setup only reports it
