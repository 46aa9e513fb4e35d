"""`status` shows the engine group: its members and the committed input records it has
not decided yet. Before, it said nothing of the engine: a worker holding (the log went
back, partitions changed) or none running at all looked the same as a healthy one, while
intents waited undecided (real broker)."""

from __future__ import annotations

import json
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from deploy import groups
from deploy.groups import group_id
from deploy.kafka import consumer_config, producer_config
from deploy.local.stack import _engine_group
from deploy.settings import Settings
from schemas.topics import Topic
from tests.engine.workers import cli_env, run_cli

pytestmark = pytest.mark.integration


def _produce(env: Settings, partition: int, n: int, *, transactional: bool = False) -> None:
    conf = (
        producer_config(env, transactional_id=f"t-status-{uuid.uuid4().hex}")
        if transactional
        else producer_config(env)
    )
    p = Producer(conf)
    if transactional:
        p.init_transactions(30)
        p.begin_transaction()
    for i in range(n):
        p.produce(env.topic(Topic.INTENTS), value=b"x%d" % i, partition=partition)
    if transactional:
        p.commit_transaction(30)
    assert p.flush(30) == 0


def test_status_counts_the_engine_groups_undecided_inputs(env: Settings) -> None:
    _produce(env, 0, 5)
    _produce(env, 1, 2, transactional=True)  # 2 records and a commit marker: 3 offsets
    eng = _engine_group(env)
    assert "error" not in eng, eng
    intents, admin = env.topic(Topic.INTENTS), env.topic(Topic.ADMIN)
    assert (eng["members"], eng["lag"], eng["inputs"]) == (0, 7, {intents: 7, admin: 0})

    # The group decided partition 0's first 4 and all of partition 1 (past its marker).
    c = Consumer(consumer_config(env, group_id=group_id(env.topic_prefix, groups.ENGINE)))
    try:
        c.commit(
            offsets=[TopicPartition(intents, 0, 4), TopicPartition(intents, 1, 3)],
            asynchronous=False,
        )
    finally:
        c.close()
    eng = _engine_group(env)
    assert (eng["members"], eng["lag"], eng["inputs"][intents]) == (0, 1, 1), eng

    cli = {**cli_env(env), "TRADETAPE_POSTGRES_DSN": env.dsn}
    table = run_cli(cli, "status")
    line = next(x for x in table.stdout.splitlines() if x.startswith("engine "))
    assert f"group {eng['group']}" in line and "0 workers; undecided 1" in line, line
    assert "no worker runs: `tradetape run engine`" in line, line
    as_json = json.loads(run_cli(cli, "status", "--json").stdout)
    assert as_json["engine"]["lag"] == 1 and as_json["engine"]["members"] == 0, as_json
