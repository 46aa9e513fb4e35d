"""`tradetape.toml` is found the way the data directory is (`deploy.settings`): the
nearest one from the working directory up to the project root, used only if you own it
and it is not a symbolic link (a file in the working directory itself is used whoever
owns it, with a warning). Before, only `./tradetape.toml` was read: from a subdirectory
of the project every command silently ran on the defaults. A relative `data_dir` or
`cache_dir` in the file is relative to the file's directory. No broker needed."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from deploy.settings import Settings, find_config_file


@pytest.fixture(autouse=True)
def _no_tradetape_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("TRADETAPE_"):
            monkeypatch.delenv(name)


def _project(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "proj"
    sub = root / "src" / "pkg"
    sub.mkdir(parents=True)
    (root / "pyproject.toml").write_text("")
    (root / "tradetape.toml").write_text('kafka_port = 41111\ndata_dir = "stack"\n')
    return root, sub


def test_the_project_roots_settings_file_is_read_from_a_subdirectory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, sub = _project(tmp_path)
    assert find_config_file(sub) == root / "tradetape.toml"
    monkeypatch.chdir(sub)
    s = Settings()
    assert s.kafka_port == 41111
    # Relative to the file, not to the working directory.
    assert s.resolved_data_dir == (root / "stack").resolve()


def test_the_nearest_file_wins_and_none_above_the_project_root_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "tradetape.toml").write_text("kafka_port = 42222\n")
    clone = tmp_path / "clone"
    (clone / "x").mkdir(parents=True)
    (clone / ".git").mkdir()
    assert find_config_file(clone / "x") is None
    monkeypatch.chdir(clone / "x")
    assert Settings().kafka_port == 39092
    (clone / "x" / "tradetape.toml").write_text("kafka_port = 43333\n")
    assert find_config_file(clone / "x") == clone / "x" / "tradetape.toml"
    assert Settings().kafka_port == 43333


def test_one_owned_by_another_user_or_a_link_above_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root, sub = _project(tmp_path)
    config = root / "tradetape.toml"
    if os.getuid() == 0:
        os.chown(config, 12345, 12345)
        with caplog.at_level(logging.WARNING):
            assert find_config_file(sub) is None
        assert "owned by uid 12345" in caplog.text and str(config) in caplog.text
        os.chown(config, 0, 0)
    caplog.clear()
    real = tmp_path / "elsewhere.toml"
    config.rename(real)
    config.symlink_to(real)
    with caplog.at_level(logging.WARNING):
        assert find_config_file(sub) is None
    assert "symbolic link" in caplog.text
    # In the working directory itself it is the user's own choice.
    assert find_config_file(root) == config


def test_a_named_file_still_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _root, sub = _project(tmp_path)
    named = tmp_path / "other.toml"
    named.write_text("kafka_port = 44444\n")
    monkeypatch.setenv("TRADETAPE_CONFIG", str(named))
    monkeypatch.chdir(sub)
    assert Settings().kafka_port == 44444
