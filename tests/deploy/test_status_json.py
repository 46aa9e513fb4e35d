"""`status --json` carries every figure the table shows. Before: a projection that had
stored no offsets yet (`deadletters` after `make demo`: the demo writes none) had no
`consumed` in the JSON while the table said `consumed=0`, and `quarantined` and
`degraded` were there only when set (real broker and database)."""

from __future__ import annotations

import json
import re

import pytest

from deploy.settings import Settings
from projections.core import PROJECTIONS
from tests.engine.workers import cli_env, run_cli

pytestmark = pytest.mark.integration

LINE = re.compile(r"projection (\S+)\s+(ok|DEGRADED)\s+consumed=(\d+) quarantined=(\d+) lag=(\S+)")


def test_every_projection_has_the_tables_figures_in_json(env: Settings) -> None:
    cli = {**cli_env(env), "TRADETAPE_POSTGRES_DSN": env.dsn}
    table = run_cli(cli, "status")
    as_json = run_cli(cli, "status", "--json")
    assert table.returncode == as_json.returncode == 0, table.stderr + as_json.stderr
    got = json.loads(as_json.stdout)["projections"]
    shown = {m[1]: m for m in map(LINE.match, table.stdout.splitlines()) if m}
    assert set(shown) == set(got) == set(PROJECTIONS), (table.stdout, got)
    for name, m in shown.items():
        entry = got[name]
        lag = None if m[5] == "unknown" else int(m[5])
        assert (entry["degraded"], entry["consumed"], entry["quarantined"], entry["lag"]) == (
            m[2] == "DEGRADED",
            int(m[3]),
            int(m[4]),
            lag,
        ), (name, entry, m[0])
