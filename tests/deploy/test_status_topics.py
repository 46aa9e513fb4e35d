"""`status` counts the catalogue's topics. Before: it counted every topic under the
prefix, faust's internal ones of surveillance (changelogs, repartitions) among them, and
said `(23 topics)` of a stack whose catalogue (`schemas/topics.py`) has 15 (real broker
and database)."""

from __future__ import annotations

import json
import time

import pytest
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

from deploy.groups import SURVEILLANCE, group_id
from deploy.kafka import admin_client
from deploy.settings import Settings
from schemas.topics import TOPICS
from tests.engine.workers import cli_env, run_cli

pytestmark = pytest.mark.integration


def test_status_counts_the_catalogue_and_names_the_rest(env: Settings) -> None:
    app_id = group_id(env.topic_prefix, SURVEILLANCE)  # faust's topics begin with it
    internal = [f"{app_id}-alerts_by_account-changelog", f"{app_id}-orders-repartition"]
    other = f"{env.topic_prefix}scratch"
    admin = admin_client(env)  # held until its futures are done
    for f in admin.create_topics([NewTopic(t, 1, 1) for t in [*internal, other]]).values():
        f.result(30)
    for _ in range(300):  # the broker's metadata names them a moment after
        if set(admin.list_topics(timeout=10).topics) >= {*internal, other}:
            break
        time.sleep(0.1)
    cli = {**cli_env(env), "TRADETAPE_POSTGRES_DSN": env.dsn}
    table = run_cli(cli, "status")
    assert table.returncode == 0, table.stderr
    n = len(TOPICS)
    assert (
        f"({n} of {n} catalogue topics; 2 internal to surveillance (faust's), 1 other)"
        in table.stdout
    ), table.stdout
    as_json = run_cli(cli, "status", "--json")
    kafka = json.loads(as_json.stdout)["kafka"]
    assert kafka["topics"] == sorted(env.topic(t) for t in TOPICS), kafka
    assert kafka["missing_topics"] == [], kafka
    assert kafka["internal_topics"] == sorted(internal), kafka
    assert kafka["other_topics"] == [other], kafka
