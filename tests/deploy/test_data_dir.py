"""The default data directory is found like git's `.git`, with git's checks after
CVE-2022-24765 (review helper-60, item 3): the walk up from the working directory stops
at the project root, and a `.tradetape` someone else owns is not used. Before, a
`~/.tradetape` or `/tmp/.tradetape` captured every project below it. No broker needed."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from deploy.settings import PROJECT_ROOT_MARKERS, Settings, find_data_dir


def _mark(root: Path, marker: str) -> None:
    if marker == ".git":
        (root / marker).mkdir(parents=True)
    else:
        root.mkdir(parents=True, exist_ok=True)
        (root / marker).write_text("")


@pytest.mark.parametrize("marker", PROJECT_ROOT_MARKERS)
def test_a_data_dir_above_the_project_root_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, marker: str
) -> None:
    """Before: the clone got the parent's data dir (and `up` said "already up", `down`
    stopped the other stack)."""
    (tmp_path / ".tradetape").mkdir()
    clone = tmp_path / "clone"
    _mark(clone, marker)
    sub = clone / "src" / "pkg"
    sub.mkdir(parents=True)
    assert find_data_dir(clone) == clone / ".tradetape"
    assert find_data_dir(sub) == sub / ".tradetape"
    monkeypatch.delenv("TRADETAPE_DATA_DIR", raising=False)
    monkeypatch.chdir(sub)
    assert Settings().resolved_data_dir == (sub / ".tradetape").resolve()


def test_a_git_worktree_or_submodule_is_a_project_root(tmp_path: Path) -> None:
    """There `.git` is a file, not a directory."""
    (tmp_path / ".tradetape").mkdir()
    wt = tmp_path / "wt"
    (wt / "x").mkdir(parents=True)
    (wt / ".git").write_text("gitdir: /elsewhere\n")
    assert find_data_dir(wt / "x") == wt / "x" / ".tradetape"


@pytest.mark.parametrize("marker", PROJECT_ROOT_MARKERS)
def test_the_project_roots_data_dir_is_found_from_a_subdirectory(
    tmp_path: Path, marker: str
) -> None:
    """The root itself is looked in; what the walk is for is kept."""
    (tmp_path / ".tradetape").mkdir()  # above the project: not this one
    project = tmp_path / "project"
    _mark(project, marker)
    (project / ".tradetape").mkdir()
    deep = project / "src" / "pkg"
    deep.mkdir(parents=True)
    assert find_data_dir(deep) == project / ".tradetape"
    assert find_data_dir(project) == project / ".tradetape"


def test_one_owned_by_another_user_is_ignored_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Anyone can create /tmp/.tradetape; before, it received the data dir (keys, signer
    group, broker and database files) of whoever worked below it."""
    shared = tmp_path / "shared"
    (shared / ".tradetape").mkdir(parents=True)
    work = shared / "ci" / "checkout"
    work.mkdir(parents=True)
    mine = os.getuid()
    assert find_data_dir(work) == shared / ".tradetape"  # ours: used
    monkeypatch.setattr(os, "getuid", lambda: mine + 1)  # now someone else's
    with caplog.at_level(logging.WARNING, logger="deploy.settings"):
        assert find_data_dir(work) == work / ".tradetape"
    assert f"{shared / '.tradetape'} is owned by uid {mine}, not by you" in caplog.text
    assert "not used as the data directory" in caplog.text


def test_a_symbolic_link_above_is_not_used(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    parent = tmp_path / "parent"
    parent.mkdir()
    (parent / ".tradetape").symlink_to(target)
    work = parent / "work"
    work.mkdir()
    assert find_data_dir(work) == work / ".tradetape"
    # in the working directory itself it is the default anyway: the user's choice
    assert find_data_dir(parent) == parent / ".tradetape"


def test_the_data_dir_option_says_where_the_search_stops() -> None:
    """`--data-dir`'s help told every command's user "the nearest .tradetape/ in the
    working directory or above it": a `~/.tradetape` above a clone, or one another user
    owns, is not used (`find_data_dir`), and the help now says so, as the settings do."""
    import typer

    from deploy.cli import app

    root = typer.main.get_command(app)
    helps = {
        name: next(p.help for p in cmd.params if p.name == "data_dir")
        for name, cmd in [("up", root.commands["up"]), ("query", root.commands["query"])]  # type: ignore[attr-defined]
    }
    for name, text in helps.items():
        assert "project root" in text and "own" in text, f"{name}: {text}"
