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


def _inline_commands() -> list[tuple[str, str]]:
    """(file, span) for every inline code span of the prose (fenced blocks left out) that
    names a command, `tradetape rebuild --all` or `rebuild --all`, with an option: `A &&
    B` split, and `keygen|dkg` read as each of its alternatives."""
    top = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    out = []
    for name in DOCS:
        prose = re.sub(r"```.*?```", "", (REPO / name).read_text(), flags=re.S)
        for span in re.findall(r"`([^`\n]+)`", prose):
            for part in re.split(r" && | ; ", span.strip()):
                words = re.sub(r"^(\.venv/bin/)?tradetape\s+", "", part).split()
                if words and words[0] in top and any(w.lstrip("[").startswith("-") for w in words):
                    out.append((name, part))
    return out


def _options_unknown_to(line: str) -> list[str]:
    """The options of `line` (a command path, then arguments and options) that the command
    it names does not take; each `a|b` in the path is checked as a and as b."""
    words = re.sub(r"^(\.venv/bin/)?tradetape\s+", "", line).split()
    commands: list[Any] = [typer.main.get_command(app)]
    while words and any(
        w in getattr(c, "commands", {}) for c in commands for w in words[0].split("|")
    ):
        alternatives = words.pop(0).split("|")
        commands = [c.commands[w] for c in commands for w in alternatives if w in c.commands]
    unknown = []
    for cmd in commands:
        known = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
        for word in words:
            option = re.match(r"\[?(--?[a-z][\w-]*)", word)
            if option and option.group(1) not in known:
                unknown.append(f"{cmd.name} {option.group(1)}")
    return unknown


def test_the_prose_names_commands_with_options() -> None:
    assert len(_inline_commands()) > 30


@pytest.mark.parametrize("where, span", _inline_commands(), ids=lambda v: str(v)[:60])
def test_an_option_the_prose_names_is_the_commands(where: str, span: str) -> None:
    """An inline `tradetape CMD --opt` (or `CMD --opt`) names an option CMD takes, with
    that spelling: the fenced examples above are parsed whole, the prose's spans were not
    checked at all (helper s27-docs)."""
    assert not _options_unknown_to(span), f"{where}: `{span}`: {_options_unknown_to(span)}"


def test_a_misnamed_option_in_the_prose_is_found() -> None:
    assert _options_unknown_to("tradetape rebuild --al") == ["rebuild --al"]
    assert _options_unknown_to("signer keygen|dkg --id 1") == ["keygen --id"]
    assert not _options_unknown_to("signer keygen|dkg --requester X")


def test_the_readme_leads_to_every_doc() -> None:
    """docs/architecture.md was named nowhere in README.md (helper s27-docs); every doc a
    doc names exists."""
    readme = (REPO / "README.md").read_text()
    unnamed = [n for n in DOCS[1:] if n not in readme]
    assert not unnamed, f"README.md leads to none of {unnamed}"
    named = {m for n in DOCS for m in re.findall(r"\bdocs/[\w-]+\.md\b", (REPO / n).read_text())}
    assert not {m for m in named if not (REPO / m).exists()}, named


def test_every_test_file_a_doc_names_exists() -> None:
    """A doc that cites `test_x.py` for a claim cites a test that is there (docs/benchmarks.md,
    a log of sessions, also names branches' tests that never landed)."""
    tests = {p.name for p in (REPO / "tests").rglob("test_*.py")}
    gone = sorted(
        f"{name}: {cited}"
        for name in DOCS
        if name != "docs/benchmarks.md"
        for cited in set(re.findall(r"\btest_\w+\.py\b", (REPO / name).read_text()))
        if cited not in tests
    )
    assert not gone, gone
