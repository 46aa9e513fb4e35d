"""--help texts render as paragraphs: a docstring paragraph hard-wrapped in the source
rendered line for line, so at any terminal width but the source's it was split
mid-sentence (review helper-57, item 16: `rebuild`, `stor`, `simulate surveillance`).
Help texts carry no one-off benchmark figures (`rebuild --parallel` quoted "session 9").
Every command is held to both: `publish`, outside the first list, still split its
paragraphs mid-sentence at 80 columns (demo16)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from deploy.cli import app

FIRST_CHECKED = (
    "rebuild",
    "checksum",
    "query",
    "stor",
    "simulate surveillance",
    "sign",
    "signer keygen",
    "signer dkg",
    "signer identity",
)
"""The commands this test held to it at first (those of projections/, streams/ and
signer_ffi/): they must still be found."""


def _commands(group: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every command below `group` by its full name (typer ships its own click: the
    commands are walked by their `commands` mapping)."""
    for name, cmd in sorted(group.commands.items()):
        path = f"{prefix}{name}"
        yield path, cmd
        if getattr(cmd, "commands", None):
            yield from _commands(cmd, path + " ")


def _checked() -> dict[str, Any]:
    found = dict(_commands(typer.main.get_command(app)))
    assert set(FIRST_CHECKED) <= set(found), set(FIRST_CHECKED) - set(found)
    return found


CHECKED = tuple(_checked())
"""Every command and group, `publish` among them."""


@pytest.mark.parametrize("name", CHECKED)
def test_help_paragraphs_are_not_hard_wrapped(name: str) -> None:
    text = _checked()[name].help or ""
    for paragraph in re.split(r"\n\s*\n", text.strip()):
        if paragraph.startswith("\b"):
            continue  # click's verbatim block
        assert "\n" not in paragraph.strip(), f"{name}: hard-wrapped paragraph {paragraph!r}"


@pytest.mark.parametrize("name", CHECKED)
def test_help_carries_no_benchmark_figures(name: str) -> None:
    cmd = _checked()[name]
    texts = [cmd.help or ""] + [getattr(p, "help", None) or "" for p in cmd.params]
    for text in texts:
        assert not re.search(r"session \d|\d\s*MB\b|\bPSS\b", text), f"{name}: {text!r}"


def _command_paths() -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []

    def walk(t: typer.Typer, prefix: tuple[str, ...]) -> None:
        for c in t.registered_commands:
            assert c.callback is not None
            found.append((*prefix, c.name or c.callback.__name__.replace("_", "-")))
        for g in t.registered_groups:
            assert g.typer_instance is not None and g.name is not None
            walk(g.typer_instance, (*prefix, g.name))

    walk(app, ())
    return found


def test_every_command_takes_data_dir() -> None:
    """One rule: `--data-dir` on every command (before: `admin`, `query`, `stor`,
    `rebuild`, `marketdata`, `signer`, ... had none, though admin keys and signer groups
    live in the data directory)."""
    from typer.testing import CliRunner

    missing = []
    for path in _command_paths():
        out = CliRunner().invoke(app, [*path, "--help"], terminal_width=200).output
        if "--data-dir" not in out:
            missing.append(" ".join(path))
    assert not missing, missing


def test_flags_are_not_shown_as_taking_a_value() -> None:
    """typer 0.29 rendered every flag with a metavar, `--json <bool>`, as if it took a
    value (demo16): pinned below it. Any command with a flag shows the regression."""
    from typer.testing import CliRunner

    out = CliRunner().invoke(app, ["status", "--help"], terminal_width=200).output
    assert "--json" in out, out
    assert "<bool>" not in out and "BOOLEAN" not in out, out


@pytest.mark.parametrize("name", CHECKED)
def test_every_argument_and_option_says_what_it_is(name: str) -> None:
    """The newcomer's audit (helper-132): 27 arguments and options had no help at all
    (`admin deposit ACCOUNT ASSET AMOUNT DEPOSIT_ID`, `admin limits SCOPE VERSION`,
    `--reference`, `--clear`, `publish FILE`, `signer dkg --out`, ...)."""
    cmd = _checked()[name]
    bare = [p.name for p in cmd.params if p.name != "help" and not (getattr(p, "help", "") or "")]
    assert not bare, f"{name}: no help for {bare}"


SHOWN_BY_EXAMPLE = (
    "run",
    "publish",
    "query",
    "rebuild",
    "checksum",
    "marketdata load",
    "marketdata simulate",
    "admin open-account",
    "admin kyc",
    "admin deposit",
    "admin aml",
    "admin kill-switch",
    "admin limits",
    "signer dkg",
    "producer add",
    "producer revoke",
    "producer rotate",
    "stor",
    "simulate surveillance",
    "export auth016",
    "signer keygen",
    "sign",
)
"""The commands a newcomer runs from the README and the runbook: their --help shows a
command line to start from (none did before the audit; `producer`, `stor`, `simulate
surveillance`, `export auth016`, `signer keygen` and `sign`, all in the README, none
until helper s27-docs)."""


def _help_examples() -> list[tuple[str, str]]:
    """(command, example) for each `tradetape ...` of every help's Example(s) paragraph,
    its parenthetical remarks left out, `A; B` split."""
    found = []
    for name, cmd in _checked().items():
        for paragraph in re.split(r"\n\s*\n", cmd.help or ""):
            m = re.match(r"\s*Examples?(?: \([^)]*\))?: (.*)", paragraph, re.S)
            if m:
                text = re.sub(r"\([^()]*\)", "", m.group(1).replace("\n", " "))
                found += [
                    (name, e.strip()) for e in re.findall(r"(?<![`\w])tradetape ([^;]+)", text)
                ]
    return found


@pytest.mark.parametrize(("name", "example"), _help_examples(), ids=lambda v: str(v)[:50])
def test_a_help_example_parses(
    name: str, example: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a help shows to copy runs as far as its arguments: the docs' examples were
    parsed (test_doc_commands), the helps' were not (helper s27-docs)."""
    from tests.deploy.test_doc_commands import _parse

    args = shlex.split(example)
    monkeypatch.chdir(tmp_path)
    for word in args:  # input files the command checks exist (sign report.xml)
        if re.fullmatch(r"[\w-]+\.(xml|json|jsonl|txt)", word):
            (tmp_path / word).write_text("")
    assert args[: len(name.split())] == name.split(), (name, example)
    _parse(args)


def test_the_help_examples_are_found() -> None:
    assert len(_help_examples()) >= len(SHOWN_BY_EXAMPLE), _help_examples()


@pytest.mark.parametrize("name", SHOWN_BY_EXAMPLE)
def test_the_everyday_commands_show_an_example(name: str) -> None:
    text = _checked()[name].help or ""
    assert re.search(r"^\s*Examples?( \([^)]*\))?: tradetape ", text, re.M), (name, text)


def test_the_limits_help_names_real_fields() -> None:
    from schemas.events import RiskLimits

    values = next(p for p in _checked()["admin limits"].params if p.name == "values")
    text = values.help or ""
    named = re.findall(r"\b[a-z]+(?:_[a-z]+)+\b", text.split("docs/engine.md")[0])
    assert named and set(named) <= set(RiskLimits.model_fields), named


def test_the_top_level_help_says_where_to_start() -> None:
    """`tradetape --help` listed the commands and nothing else: no word of the demo, the
    order to start things in, or the runbook (helper-132's newcomer audit)."""
    from typer.testing import CliRunner

    out = CliRunner().invoke(app, ["--help"], terminal_width=200).output
    assert "make demo" in out and "docs/operations.md" in out, out


@pytest.mark.parametrize(
    ("path", "usage"),
    [
        (("admin", "deposit"), "tradetape admin deposit [OPTIONS] ACCOUNT ASSET AMOUNT DEPOSIT_ID"),
        (("rebuild",), "tradetape rebuild [OPTIONS] [NAME]"),
        (("checksum",), "tradetape checksum [OPTIONS] NAME"),
    ],
)
def test_usage_names_arguments_as_the_docs_do(path: tuple[str, ...], usage: str) -> None:
    """typer 0.28 wrote the usage line's arguments `{account} {asset} ...` and `[name]`,
    where the docs, the examples and the error lines say `ACCOUNT ASSET` and `NAME`."""
    from typer.testing import CliRunner

    out = CliRunner().invoke(app, [*path, "--help"], terminal_width=200).output
    assert f"Usage: {usage}" in out, out


def test_run_names_every_component_it_runs() -> None:
    """`run`'s help listed engine, snapshotter, projections, streams and signer, and not
    travelrule, which `tradetape run` starts with the rest (README.md says so)."""
    from deploy.runner import COMPONENTS, EXTRA_COMPONENTS

    components = next(p for p in _checked()["run"].params if p.name == "components")
    named = re.findall(r"\b[a-z]+\b", (components.help or "").split("(default")[0])
    assert named == [*COMPONENTS, *EXTRA_COMPONENTS], named
    assert f"all but {', '.join(EXTRA_COMPONENTS)}" in (components.help or "")


@pytest.mark.parametrize("name", CHECKED)
def test_an_option_without_a_shown_default_says_what_leaving_it_out_does(name: str) -> None:
    """An option whose default is None shows no `[default: ...]`: its help says what
    leaving it out does (helper s27-docs: `sign --key-dir` and `export auth016 --key-dir`
    named no directory, though both read <data>/signers; `marketdata load --instrument`
    and `--limit`, `query --out`, `run --id` said nothing either)."""
    cmd = _checked()[name]
    silent = [
        p.name
        for p in cmd.params
        if type(p).__name__.endswith("Option")
        and p.name != "data_dir"
        and not p.required
        and not getattr(p, "is_flag", False)
        and p.default is None
        and not re.search(
            r"\bdefault\b|\bnot stdout\b|\bwithout it\b|\binstead of\b", p.help or "", re.I
        )
    ]
    assert not silent, f"{name}: leaving out {silent} does what?"


DEMO_STAGE_WORDS = {
    "engine.demo": "toy strategy",
    "streams.travel_rule.demo": "travel-rule processor",
    "projections.demo": "a rebuild",
    "projections.tax.demo": "Form 8949",
    "projections.reports.demo": "auth.016",
    "streams.demo": "surveillance",
    "signer_ffi.demo": "FROST signature",
}
"""What `demo --help` calls each stage of `deploy.demo.STAGES`."""


def test_the_demo_help_names_every_stage() -> None:
    """`demo --help` listed the stages of session 20 (engine, projections, surveillance,
    signer): not the travel rule, the tax forms or the auth.016 report the demo runs and
    the README describes (helper s27-docs)."""
    from deploy.demo import STAGES

    assert set(DEMO_STAGE_WORDS) == set(STAGES), "a new demo stage: name it in `demo`'s help"
    text = _checked()["demo"].help or ""
    missing = [stage for stage, words in DEMO_STAGE_WORDS.items() if words not in text]
    assert not missing, (missing, text)
