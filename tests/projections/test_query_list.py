"""`tradetape query --list` lines its descriptions up in one column: `drawdown_history`
(16 characters) ran into its description past the 14-character name column."""

from __future__ import annotations

from typer.testing import CliRunner

from deploy.cli import app
from projections.query import NAMED


def test_descriptions_start_in_one_column() -> None:
    res = CliRunner().invoke(app, ["query", "--list"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert [x.split(" ", 1)[0] for x in lines] == sorted(NAMED)
    starts = {len(x) - len(x[len(x.split(" ", 1)[0]) :].lstrip(" ")) for x in lines}
    assert len(starts) == 1, lines
