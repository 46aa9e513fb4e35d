"""The Makefile's targets do what README.md and the Makefile's own header say: `make test`
is what CI runs (.ci/run), and every target it declares has a recipe (`make typecheck`
was declared .PHONY with none: "Nothing to be done", exit 0, nothing checked). Only
`make -n` (print, never run) is used."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make")


def _dry_run(target: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    proc = subprocess.run(
        ["make", "-n", target], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_ci_runs_the_readmes_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make test   # the whole test suite (what CI runs: .ci/run)" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, flags=re.M), ci
    assert re.search(r"-m pytest -n \d+ tests", _dry_run("test"))


def test_make_demo_sets_up_then_runs_the_demo() -> None:
    lines = _dry_run("demo").splitlines()
    assert lines[-2:] == [".venv/bin/tradetape setup", ".venv/bin/tradetape demo"], lines


def test_every_declared_target_has_a_recipe() -> None:
    text = (ROOT / "Makefile").read_text()
    phony = re.search(r"^\.PHONY:(.*)$", text, flags=re.M)
    assert phony is not None
    for target in phony.group(1).split():
        assert re.search(rf"^{target}:", text, flags=re.M), f"{target}: declared, no rule"
    assert ".venv/bin/mypy engine" in _dry_run("typecheck")
