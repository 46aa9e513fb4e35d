"""`tradetape tax form8949` / `1099da` on the real stack: refused while `tax_lots` lags
behind the log, the hand-computed form (test_tax_book) once it has caught up, and a
rebuild of `tax_lots` gives the live checksum."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deploy.settings import Settings
from projections.core import PROJECTIONS
from projections.projector import Projector
from projections.tax.cli import refusal
from tests.projections.helpers import produce
from tests.projections.test_tax_book import _history
from tests.projections.test_tax_lots_projection import _flat

pytestmark = pytest.mark.integration


def test_refusals() -> None:
    assert refusal({"lag": 0, "partitions": 3, "unread_partitions": []}, 0) is None
    assert "3 records behind" in str(refusal({"lag": 3}, 0))
    assert "degraded" in str(refusal({"lag": 0, "degraded": True, "partitions_changed": "x"}, 0))
    assert "has not read" in str(refusal({"lag": 0, "unread_partitions": ["t[1]"]}, 0))
    assert "quarantined 2 events" in str(refusal({"lag": 0}, 2))


def test_forms_from_the_stack(
    env: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deploy.cli import app
    from deploy.settings import get_settings

    produce(env, [item.event for item in _flat(_history())])
    monkeypatch.setenv("TRADETAPE_TOPIC_PREFIX", env.topic_prefix)
    monkeypatch.setenv("TRADETAPE_POSTGRES_PORT", str(env.postgres_port))
    monkeypatch.setenv("TRADETAPE_POSTGRES_DB", env.postgres_db)
    monkeypatch.setenv("TRADETAPE_KAFKA_PORT", str(env.kafka_port))
    get_settings.cache_clear()
    runner = CliRunner()
    args = ["tax", "form8949", "--account", "W1", "--year", "2026"]
    try:
        res = runner.invoke(app, args)  # nothing folded yet: the form would be empty
        assert res.exit_code == 1 and "records behind the log" in res.output, res.output

        with Projector(env, PROJECTIONS["tax_lots"]) as proj:
            proj.catch_up()
        res = runner.invoke(app, [*args, "--format", "json"])
        assert res.exit_code == 0, res.output
        doc = json.loads(res.stdout)
        assert [(r["box"], r["proceeds"], r["cost_basis"], r["gain"]) for r in doc["rows"]] == [
            ("G", "15000.00", "27067.82", "-12067.82"),
            ("G", "4950.00", "8932.38", "-3982.38"),
            ("H", "59970.00", "48024.00", "11946.00"),
            ("H", "20000.00", None, None),
            ("K", "40000.00", "32016.00", "7984.00"),
            ("K", "10000.00", None, None),
        ]
        assert doc["totals"]["G"]["gain"] == "-16050.20"
        assert [e["units"] for e in doc["exceptions"]] == ["0.901", "0.5"]
        assert "2 disposal slices of 2026 are on no form" in res.stderr

        out = tmp_path / "1099da.csv"
        cmd = ["tax", "1099da", "--account", "W1", "--year", "2026", "--format", "csv"]
        res = runner.invoke(app, [*cmd, "--out", str(out)])
        assert res.exit_code == 0, res.output
        lines = out.read_text().splitlines()
        assert lines[0].startswith("1a DTI,1b asset,1c units") and len(lines) == 7
        assert ",BTC,0.3,2026-01-15,2026-07-01,15000.00,27067.82,X,SHORT," in lines

        res = runner.invoke(app, ["tax", "form8949", "--account", "W1", "--year", "2026"])
        assert res.exit_code == 0 and "On no form (2)" in res.stdout, res.output

        res = runner.invoke(app, [*args[:-1], "1999"])
        assert res.exit_code == 2 and "--year" in res.output
        res = runner.invoke(app, [*args, "--format", "xml"])
        assert res.exit_code == 2 and "--format" in res.output

        res = runner.invoke(app, ["checksum", "tax_lots"])
        assert res.exit_code == 0, res.output
        live = res.stdout.strip()
        res = runner.invoke(app, ["rebuild", "tax_lots"])
        assert res.exit_code == 0, res.output
        assert res.stdout.strip().splitlines()[-1] == live
    finally:
        get_settings.cache_clear()
