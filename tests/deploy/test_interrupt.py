"""Ctrl-C is one line, `error: interrupted (Ctrl-C)`, and exit 130, never a traceback
(the newcomer's audit, helper-132). Before: a Ctrl-C while `tradetape` was still
importing its commands (2-3 s on a loaded machine) printed a traceback through the
import machinery, since the console script imported `deploy.cli` before any `try`; one
during a command exited 130 without a word."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_console_script_is_the_entry_that_guards_the_import() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["tradetape"] == "deploy.cli_entry:main", scripts


def test_ctrl_c_while_the_commands_are_imported_is_one_line() -> None:
    done = _python(
        "import sys\n"
        "class Interrupt:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'deploy.cli':\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Interrupt())\n"
        "import deploy.cli_entry\n"
        "deploy.cli_entry.main()\n"
    )
    assert (done.returncode, done.stderr) == (130, "error: interrupted (Ctrl-C)\n"), done.stderr


def test_ctrl_c_during_a_command_is_one_line() -> None:
    done = _python(
        "import sys\n"
        "import deploy.cli\n"
        "@deploy.cli.app.command('interrupted-here')\n"
        "def command() -> None:\n"
        "    raise KeyboardInterrupt\n"
        "sys.argv = ['tradetape', 'interrupted-here']\n"
        "deploy.cli.main()\n"
    )
    assert (done.returncode, done.stderr) == (130, "error: interrupted (Ctrl-C)\n"), done.stderr
