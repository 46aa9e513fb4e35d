"""`tradetape acls apply` against a broker that checks no ACLs (the local stack's, by
default) says why and how to get one that does; it relayed Kafka's bare `No Authorizer
is configured.` (helper-132's newcomer audit, following the runbook's *Securing the
broker* on the default stack)."""

from __future__ import annotations

import pytest

from deploy.settings import Settings
from tests.engine.workers import cli_env, run_cli


@pytest.mark.integration
def test_acls_apply_on_an_open_broker_names_the_setting(env: Settings) -> None:
    done = run_cli(cli_env(env), "acls", "apply", timeout=120)
    assert done.returncode == 1, (done.stdout, done.stderr[-2000:])
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "No Authorizer is configured" in done.stderr, done.stderr
    assert "TRADETAPE_KAFKA_LOCAL_SASL=true" in done.stderr, done.stderr
