"""A risk limits change's config version is at most 2,147,483,647 (a PostgreSQL integer,
where the projections record it). Before: `tradetape admin limits '*'
99999999999999999999999` was accepted by the engine; `risk_config` quarantined the change
and every later decision, stamped with the version in force, was quarantined by
`decisions` (171 of the demo's 300 in the audit's run), for good: versions only go up,
so no later change could bring one back within range (the newcomer's audit, session 24)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from schemas.events.risk import MAX_CONFIG_VERSION, RiskLimits, RiskLimitsChanged
from tests.conftest import free_port
from tests.engine.workers import run_cli


def test_the_bound_is_what_a_postgresql_integer_holds() -> None:
    assert MAX_CONFIG_VERSION == 2**31 - 1
    ok = RiskLimitsChanged(
        scope="*", config_version=MAX_CONFIG_VERSION, limits=RiskLimits(), changed_by="admin"
    )
    assert ok.config_version == MAX_CONFIG_VERSION
    with pytest.raises(ValidationError, match="less than or equal to 2147483647"):
        RiskLimitsChanged(
            scope="*", config_version=MAX_CONFIG_VERSION + 1, limits=RiskLimits(),
            changed_by="admin",
        )  # fmt: skip


def test_the_cli_refuses_a_version_beyond_it_before_sending(tmp_path: Path) -> None:
    env = {
        "TRADETAPE_KAFKA_PORT": str(free_port()),  # nobody listens: refused before
        "TRADETAPE_DATA_DIR": str(tmp_path / "data"),
    }
    done = run_cli(env, "admin", "limits", "*", "99999999999999999999999")
    assert (done.returncode, done.stderr) == (
        2,
        "error: config_version: Input should be less than or equal to 2147483647\n",
    )
