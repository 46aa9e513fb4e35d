"""`deploy/pick-python`: which interpreter `make` builds .venv/ with.

The candidates are fake interpreters (shell scripts) so the choice is checked without
depending on what this machine has installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "pick-python"


def _fake(directory: Path, name: str, body: str) -> Path:
    path = directory / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def _pick(candidates: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TRADETAPE_PYTHON_CANDIDATES": " ".join(candidates)}
    return subprocess.run(["sh", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)


def test_the_first_usable_candidate_is_chosen_in_order(tmp_path: Path) -> None:
    too_old = _fake(tmp_path, "too-old", "exit 1")  # fails the version/venv check
    good = _fake(tmp_path, "good", f'exec "{sys.executable}" "$@"')
    also_good = _fake(tmp_path, "also-good", f'exec "{sys.executable}" "$@"')
    done = _pick([str(tmp_path / "missing"), str(too_old), str(good), str(also_good)])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(good)


def test_no_usable_candidate_fails_and_says_what_to_do(tmp_path: Path) -> None:
    too_old = _fake(tmp_path, "too-old", "exit 1")
    done = _pick([str(too_old), str(tmp_path / "missing")])
    assert done.returncode == 1
    assert done.stdout == ""
    assert "no CPython >= 3.11" in done.stderr
    assert "PYTHON=" in done.stderr


def test_the_distribution_interpreter_comes_before_the_path() -> None:
    """pyenv's shim is `python3` on PATH; its default builds lack PGO/LTO (see the script)."""
    text = SCRIPT.read_text()
    default = text.split('TRADETAPE_PYTHON_CANDIDATES:-"', 1)[1].split('"', 1)[0].split()
    assert default[0].startswith("/usr/bin/")
    assert default.index("/usr/bin/python3") < default.index("python3")
