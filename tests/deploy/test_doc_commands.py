"""The `tradetape ...` command lines in the examples of README.md and every docs/*.md
parse as the CLI defines them (review helper-57, item 7: docs/engine.md's `tradetape
admin kill-switch engage '*'` was refused, "Got unexpected extra argument(s) (*)": the
scope is the --scope option). Only parsed, never run."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer

from deploy.cli import app

REPO = Path(__file__).resolve().parents[2]
DOCS = ("README.md", *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md")))


def _examples() -> list[tuple[str, str]]:
    """(file, command line) for every `tradetape` line of the files' ```sh / ``` blocks,
    continuation lines joined, comments and `A ; B` and `A && B` sequences split."""
    out = []
    for name in DOCS:
        text = (REPO / name).read_text()
        # Fences paired from the top, whatever their language: matching only ```sh and
        # bare fences took an ```xml block's closing fence for an opening one, and the
        # prose after it for commands (docs/reports.md, session 25).
        fenced = re.findall(r"```([\w+-]*)\n(.*?)```", text, flags=re.S)
        for block in (b for lang, b in fenced if lang in ("", "sh")):
            if "─" in block:
                continue  # a diagram
            joined = re.sub(r"\\\n\s*", " ", block)
            for line in joined.splitlines():
                for part in re.split(r" ; | && ", line):
                    words = shlex.split(part, comments=True)
                    while words and "=" in words[0] and not words[0].startswith("-"):
                        words.pop(0)  # VAR=value prefixes
                    # a synopsis's optional part, `[--json]`, is checked as given
                    words = [w[1:-1] if re.fullmatch(r"\[[^][]+\]", w) else w for w in words]
                    if words and words[0].endswith("tradetape") and "..." not in words:
                        out.append((name, shlex.join(words[1:])))
    return out


def _parse(args: list[str]) -> None:
    """Resolve `args` down to the command and parse its parameters, as `tradetape`
    would before running it (a usage error raises)."""
    cmd: Any = typer.main.get_command(app)
    name, parent = "tradetape", None
    while True:
        ctx = cmd.make_context(name, args, parent=parent)
        if not getattr(cmd, "commands", None):
            return
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        name, cmd, args = cmd.resolve_command(ctx, rest)
        parent = ctx


def test_the_docs_have_examples() -> None:
    found = {line.split()[0] for _, line in _examples() if line}
    assert {"admin", "producer", "marketdata", "signer", "sign", "run"} <= found, found


@pytest.mark.parametrize("where, line", _examples(), ids=lambda v: str(v)[:60])
def test_a_documented_command_line_parses(
    where: str, line: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = shlex.split(line)
    monkeypatch.chdir(tmp_path)
    for word in args:  # input files the command checks exist (sign report.xml)
        if re.fullmatch(r"[\w-]+\.(xml|json|jsonl|txt)", word):
            (tmp_path / word).write_text("")
    try:
        _parse(args)
    except Exception as exc:
        if type(exc).__name__ == "Exit" and getattr(exc, "exit_code", 1) == 0:
            return  # --help
        pytest.fail(f"{where}: `tradetape {line}`: {type(exc).__name__}: {exc}")
