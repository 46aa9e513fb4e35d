"""`tradetape travelrule validate`: findings printed, exit 1 with any, 2 for a file that
cannot be read or is not JSON, never a traceback."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from deploy.cli import app

RUN = CliRunner()


def test_a_valid_fixture_exits_0(reference_dir: Path) -> None:
    done = RUN.invoke(app, ["travelrule", "validate", str(reference_dir / "ivms101/address.json")])
    assert done.exit_code == 0, done.output
    assert "address: valid" in done.output


def test_findings_are_printed_and_exit_1(reference_dir: Path) -> None:
    path = reference_dir / "ivms101/person_legal_person.json"
    done = RUN.invoke(app, ["travelrule", "validate", str(path)])
    assert done.exit_code == 1
    assert "legalPerson.nationalIdentification.nationalIdentifier: BAD_LEI:" in done.output


def test_a_date_of_birth_as_of_a_day(reference_dir: Path) -> None:
    path = str(reference_dir / "ivms101/natural_person.json")  # born 1975-02-18
    assert RUN.invoke(app, ["travelrule", "validate", path, "--as-of", "1975-02-19"]).exit_code == 0
    done = RUN.invoke(app, ["travelrule", "validate", path, "--as-of", "1975-02-18"])
    assert done.exit_code == 1 and "DATE_OF_BIRTH_NOT_PAST" in done.output


def test_unreadable_or_not_json_or_unknown_is_exit_2(tmp_path: Path) -> None:
    cases = {
        "missing.json": ("cannot read",),
        "bad.json": ("is not JSON",),
        "list.json": ("cannot tell what",),
    }
    (tmp_path / "bad.json").write_text("{nope")
    (tmp_path / "list.json").write_text("[1, 2]")
    for name, (message,) in cases.items():
        done = RUN.invoke(app, ["travelrule", "validate", str(tmp_path / name)])
        assert done.exit_code == 2, (name, done.output)
        assert message in done.output and "Traceback" not in done.output
    done = RUN.invoke(app, ["travelrule", "validate", str(tmp_path / "list.json"), "--as-of", "x"])
    assert done.exit_code == 2 and "--as-of" in done.output
