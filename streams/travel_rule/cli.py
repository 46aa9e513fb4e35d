"""`tradetape travelrule validate FILE.json`: an IVMS-101 payload checked offline."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from streams.travel_rule.ivms101 import Ivms101Validator, Kind, guess_kind

travelrule_app = typer.Typer(
    help="Travel-rule checks: IVMS-101 payloads and jurisdiction thresholds.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(travelrule_app, name="travelrule")


@travelrule_app.command()
def validate(
    file: Annotated[Path, typer.Argument(help="The IVMS-101 JSON document to validate")],
    kind: Annotated[
        Kind | None,
        typer.Option(
            "--kind",
            help="What the document holds (default: guessed from its top-level keys)",
        ),
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="The day a date of birth must be before, YYYY-MM-DD (default: today;"
            " the processor uses the request's own date)",
        ),
    ] = None,
) -> None:
    """Validate an IVMS-101 JSON document (IVMS-101 JSON names, as TRISA's fixtures write them) and print each finding as PATH: CODE: WHY.

    Exit 0 if it is valid, 1 if there are findings, 2 if the file cannot be read or is not JSON, or the arguments are wrong.
    """
    try:
        day = date.fromisoformat(as_of) if as_of is not None else date.today()
    except ValueError:
        typer.echo(f"error: --as-of {as_of!r} is not YYYY-MM-DD", err=True)
        raise typer.Exit(2) from None
    try:
        doc = json.loads(file.read_bytes())
    except OSError as exc:
        typer.echo(f"error: cannot read {file}: {exc.strerror or exc}", err=True)
        raise typer.Exit(2) from None
    except (ValueError, RecursionError) as exc:
        typer.echo(f"error: {file} is not JSON: {exc}", err=True)
        raise typer.Exit(2) from None
    chosen = kind or guess_kind(doc)
    if chosen is None:
        typer.echo(
            f"error: cannot tell what {file} holds; name it with --kind"
            f" ({', '.join(k.value for k in Kind)})",
            err=True,
        )
        raise typer.Exit(2)
    findings = Ivms101Validator(day).validate(doc, chosen)
    for finding in findings:
        typer.echo(finding.line())
    if findings:
        typer.echo(f"{file}: {chosen.value}: {len(findings)} finding(s)", err=True)
        raise typer.Exit(1)
    typer.echo(f"{file}: {chosen.value}: valid")
