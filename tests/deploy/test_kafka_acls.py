"""The role model's ACLs on a real broker: a throwaway KRaft node with a SASL/SCRAM listener
and the StandardAuthorizer (`TRADETAPE_KAFKA_LOCAL_SASL`), the plan applied by
`deploy.acls.apply`. A strategy's credentials write intents and nothing the engine
writes; the engine's run its transactions on its own topics, and the engine worker
itself decides as its role.

Before session 21 the broker was open: any client could write a `RiskDecision`, a `Fill`
or a `ProducerRegistered` that every consumer folded (docs/engine.md)."""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from deploy.acls import Role, apply, plan, principals, upsert_scram_user
from deploy.kafka import admin_client, create_topics, producer_config
from deploy.local.kafka_node import KafkaNode
from deploy.settings import Settings
from schemas import encode, new_event
from schemas.events import DepositReceived, KycVerified, TransferChecked, TransferRequested
from schemas.events.transfers import TransferCheckOutcome
from schemas.topics import Topic
from tests.conftest import free_port, stack_dir

pytestmark = pytest.mark.integration

PREFIX = "acl."
"""A topic prefix, so the plan's prefixed names are exercised (`{prefix}engine-`)."""


ARGV: list[list[str]] = []
"""Every command line the node ran to start (`secured`): the format's and the broker's."""


def _recording(call: Any) -> Any:
    def record(args: Any, *rest: Any, **kw: Any) -> Any:
        ARGV.append([str(a) for a in args])
        return call(args, *rest, **kw)

    return record


@pytest.fixture(scope="module")
def secured() -> Iterator[Settings]:
    """A broker that authenticates and authorizes, its topics, SCRAM users (engine,
    strategy, transfer service, travel rule) and the plan's ACLs; yields the super user's settings. The super user's
    password holds a '#', which starts a comment in a java argument file unquoted."""
    import subprocess

    data_dir = stack_dir("acls-")
    admin = Settings(
        data_dir=data_dir,
        kafka_port=free_port(),
        kafka_controller_port=free_port(),
        kafka_heap="384m",
        kafka_local_sasl=True,
        kafka_sasl_username="root",
        kafka_sasl_password=f"{uuid.uuid4().hex}#pw",
        topic_prefix=PREFIX,
        default_partitions=1,
    )
    node = KafkaNode(admin)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(subprocess, "run", _recording(subprocess.run))
            patch.setattr(subprocess, "Popen", _recording(subprocess.Popen))
            node.start(echo=lambda _m: None)
        create_topics(admin)
        client = admin_client(admin)
        for role in (Role.ENGINE, Role.STRATEGY, Role.TRANSFERS, Role.TRAVELRULE):
            upsert_scram_user(client, role.value, f"{role.value}-secret")
        done = apply(client, plan(PREFIX, principals()))
        assert done.created and not done.already
        yield admin
    finally:
        from deploy.local.process import owned_process

        broker = owned_process(node.pid_file, node.marker)
        if broker is not None:
            broker.kill()
            broker.wait(10)  # seconds, not money
        shutil.rmtree(data_dir, ignore_errors=True)


def test_the_super_users_password_is_on_no_command_line(secured: Settings) -> None:
    """`ps` shows every process's arguments to every user of the host: the node passes
    the password to StorageTool in a file only its owner reads, removed after the format
    (before, `--add-scram ...password=...` was on the format command's line). The
    super user authenticated with it (`create_topics` and the ACLs above ran as it)."""
    assert secured.kafka_sasl_password is not None
    secret = secured.kafka_sasl_password.get_secret_value()
    tools = [
        argv
        for argv in ARGV
        if "kafka.tools.StorageTool" in argv or any(a.startswith("@") for a in argv)
    ]
    assert tools and any("kafka.Kafka" in argv for argv in ARGV), ARGV
    assert [a for argv in ARGV for a in argv if secret in a or "password" in a] == []
    argfile = next(a for a in tools[0] if a.startswith("@"))[1:]
    assert not Path(argfile).exists()


def _as(admin: Settings, role: Role) -> Settings:
    return admin.with_overrides(
        kafka_sasl_username=role.value, kafka_sasl_password=f"{role.value}-secret"
    )


def _record() -> tuple[Any, Any, Any]:
    return encode(new_event(KycVerified(account="acc-1", verified_by="test"), producer="engine"))


def _delivery(
    settings: Settings, topic: Topic, record: tuple[Any, Any, Any] | None = None
) -> KafkaError | None:
    """The delivery report's error of one record produced to `topic` (None: written)."""
    got: list[KafkaError | None] = []
    producer = Producer(producer_config(settings))
    key, value, headers = record or _record()
    producer.produce(
        settings.topic(topic),
        key=key,
        value=value,
        headers=headers,
        on_delivery=lambda err, _msg: got.append(err),
    )
    assert producer.flush(30) == 0
    assert len(got) == 1
    return got[0]


@pytest.mark.parametrize(
    "topic", [Topic.DECISIONS, Topic.ORDERS, Topic.ACCOUNTS, Topic.RISK_CONFIG]
)
def test_a_strategy_cannot_write_what_the_engine_writes(secured: Settings, topic: Topic) -> None:
    err = _delivery(_as(secured, Role.STRATEGY), topic)
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err


def test_the_transfer_service_cannot_write_a_deposit(secured: Settings) -> None:
    """The transfer service writes its own topic, and nowhere a deposit lives: a
    `DepositReceived` claiming the engine is refused on accounts.events. Until session 22
    deposits were on transfers.events, which this principal may write, and the engine and
    the balances book credited one it wrote (every reader now refuses a deposit read
    there: tests/projections/test_intake.py)."""
    transfers = _as(secured, Role.TRANSFERS)
    dep = DepositReceived(deposit_id="forged", account="acc-1", asset="USDC", amount=Decimal(10**6))
    forged = encode(new_event(dep, producer="engine"))
    assert str(new_event(dep, producer="engine").topic) == Topic.ACCOUNTS
    err = _delivery(transfers, Topic.ACCOUNTS, forged)
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err
    request = TransferRequested(
        transfer_id="t1", account="acc-1", asset="USDC", amount=Decimal(1), destination_address="a"
    )
    assert (
        _delivery(transfers, Topic.TRANSFERS, encode(new_event(request, producer="transfers")))
        is None
    )
    # ...and the engine has no business on the transfer service's topic any more.
    err = _delivery(_as(secured, Role.ENGINE), Topic.TRANSFERS)
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err


def test_only_the_travel_rule_writes_its_checks(secured: Settings) -> None:
    """A `REJECT` frees a withdrawal's hold: on transfers.checks only the travel rule's
    principal may write one. The transfer service's principal, which writes
    transfers.events, is refused there with a check claiming the travel rule (until
    session 27 checks were on transfers.events, where it could write one), and so are
    the engine and a strategy; the travel rule's own is written."""
    check = TransferChecked(
        transfer_id="t1", account="acc-1", outcome=TransferCheckOutcome.REJECT, jurisdiction="EU"
    )
    forged = encode(new_event(check, producer="travelrule"))
    assert str(new_event(check, producer="travelrule").topic) == Topic.TRANSFER_CHECKS
    for role in (Role.TRANSFERS, Role.ENGINE, Role.STRATEGY):
        err = _delivery(_as(secured, role), Topic.TRANSFER_CHECKS, forged)
        assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, role
    assert _delivery(_as(secured, Role.TRAVELRULE), Topic.TRANSFER_CHECKS, forged) is None
    # ...and the travel rule has no business on the transfer service's topic any more.
    err = _delivery(_as(secured, Role.TRAVELRULE), Topic.TRANSFERS)
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err


def test_a_strategy_writes_intents(secured: Settings) -> None:
    assert _delivery(_as(secured, Role.STRATEGY), Topic.INTENTS) is None


def test_the_engine_cannot_write_intents(secured: Settings) -> None:
    err = _delivery(_as(secured, Role.ENGINE), Topic.INTENTS)
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err


def test_the_engine_runs_a_transaction_on_its_topics(secured: Settings) -> None:
    engine = _as(secured, Role.ENGINE)
    producer = Producer(producer_config(engine, transactional_id=f"{PREFIX}engine-7"))
    producer.init_transactions(30)
    producer.begin_transaction()
    key, value, headers = _record()
    for topic in (Topic.DECISIONS, Topic.ORDERS, Topic.ACCOUNTS):
        producer.produce(engine.topic(topic), key=key, value=value, headers=headers)
    producer.commit_transaction(30)


def test_a_strategy_cannot_take_the_engines_transactional_id(secured: Settings) -> None:
    producer = Producer(
        producer_config(_as(secured, Role.STRATEGY), transactional_id=f"{PREFIX}engine-0")
    )
    with pytest.raises(KafkaException) as caught:
        producer.init_transactions(30)
    assert caught.value.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED


def test_applying_again_creates_nothing(secured: Settings) -> None:
    bindings = plan(PREFIX, principals())
    done = apply(admin_client(secured), bindings)
    assert not done.created
    assert len(done.already) == len(bindings)
    assert done.extra == []


def test_the_cli_applies_idempotently_and_adds_users(
    secured: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`tradetape acls apply` and `acls user` as an operator runs them: settings from the
    environment, the password on standard input."""
    from typer.testing import CliRunner

    from deploy.cli import app
    from deploy.settings import get_settings

    env = {
        "TRADETAPE_DATA_DIR": str(secured.data_dir),
        "TRADETAPE_KAFKA_PORT": str(secured.kafka_port),
        "TRADETAPE_KAFKA_CONTROLLER_PORT": str(secured.kafka_controller_port),
        "TRADETAPE_KAFKA_LOCAL_SASL": "true",
        "TRADETAPE_KAFKA_SASL_USERNAME": "root",
        "TRADETAPE_KAFKA_SASL_PASSWORD": secured.kafka_sasl_password.get_secret_value()
        if secured.kafka_sasl_password
        else "",
        "TRADETAPE_TOPIC_PREFIX": PREFIX,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        applied = runner.invoke(app, ["acls", "apply"])
        assert applied.exit_code == 0, applied.output
        assert f"0 created, {len(plan(PREFIX, principals()))} already present" in applied.output
        added = runner.invoke(app, ["acls", "user", "marketdata"], input="md-secret\n")
        assert added.exit_code == 0, added.output
    finally:
        get_settings.cache_clear()
    feed = secured.with_overrides(kafka_sasl_username="marketdata", kafka_sasl_password="md-secret")
    assert _delivery(feed, Topic.MARKETDATA) is None
    assert _delivery(feed, Topic.DEADLETTER) is None  # a capture's malformed line
    err = _delivery(feed, Topic.DECISIONS)
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err


def _committed(settings: Settings, topic: Topic, timeout: float = 60.0) -> list[Any]:
    """Every committed event on `topic`, read as `settings`' principal."""
    from confluent_kafka import Consumer

    from deploy.kafka import consumer_config, end_offsets, partitions_of
    from schemas import decode

    consumer = Consumer(consumer_config(settings, group_id=f"stor-{uuid.uuid4().hex}"))
    name = settings.topic(topic)
    try:
        parts = [TopicPartition(name, p, 0) for p in partitions_of(consumer, settings, topic)]
        ends = end_offsets(admin_client(settings), parts)
        consumer.assign(parts)
        out: list[Any] = []
        seen = 0
        deadline = time.monotonic() + timeout
        while seen < sum(ends.values()) and time.monotonic() < deadline:
            for m in consumer.consume(500, 0.2):
                seen = sum(p.offset for p in consumer.position(parts) if p.offset > 0)
                if not m.error():
                    out.append(decode(m.value(), m.headers(), topic=m.topic()))
        return out
    finally:
        consumer.close()


def test_the_engine_worker_decides_as_its_role(secured: Settings) -> None:
    """The real engine worker, as the `engine` principal, takes an admin's commands and a
    strategy's intent and writes its facts and decision: the role grants all it needs
    (groups, transactional id, the topics it reads and writes, offsets)."""
    from engine.client import ADMIN_ANSWER_TOPICS, IntentPublisher
    from engine.worker import EngineWorker
    from schemas.events import DetectorConfigChanged
    from tests.engine.helpers import _running, intent, world

    client = admin_client(secured)
    upsert_scram_user(client, Role.ADMIN.value, "admin-secret")
    as_admin, strategy = _as(secured, Role.ADMIN), _as(secured, Role.STRATEGY)
    account = f"acl-{uuid.uuid4().hex[:6]}"
    with _running(EngineWorker(_as(secured, Role.ENGINE), wid="acl0")) as worker:
        key = world(as_admin, [account], wait=False)
        sent = intent(key, account, "c1", limit="100")
        # The publisher watches for its answer as the strategy: its `watch-` group and
        # the answer topics are the strategy role's.
        with IntentPublisher(strategy, "strat1", key) as publisher:
            answer = None
            deadline = time.monotonic() + 60
            while answer is None and time.monotonic() < deadline and not worker.stopping:
                publisher.publish_event(sent)
                assert publisher.flush(30) == 0
                answer = publisher.await_decision(sent.correlation_id, timeout=5)
        # An admin awaits an accepted DetectorConfigChanged on surveillance.config, which
        # its role reads (h125: no watcher read it; the strategy's role still does not).
        with IntentPublisher(
            as_admin, "admin", watch=True, answer_topics=ADMIN_ANSWER_TOPICS
        ) as admin_pub:
            command = admin_pub.publish(
                DetectorConfigChanged(
                    detector="order_to_trade", config_version=2, params={}, changed_by="admin"
                ),
                admin=True,
            )
            config = admin_pub.await_decision(command.correlation_id, timeout=60)
    assert answer is not None, "the engine wrote no answer to the intent"
    assert answer.causation_id == sent.event_id
    assert config is not None, "the admin read no answer to its DetectorConfigChanged"
    assert (config.event_type, config.producer) == ("DetectorConfigChanged", "engine")
    opened = [e for e in _committed(secured, Topic.ACCOUNTS) if e.event_type == "AccountOpened"]
    assert [e.payload.account for e in opened] == [account]


def test_the_surveillance_apps_clients_authenticate_as_its_role(secured: Settings) -> None:
    """faust's aiokafka clients take `streams.app.faust_credentials`: the surveillance
    principal writes alerts and is refused on the engine's decisions."""
    import asyncio

    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import TopicAuthorizationFailedError
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    from streams.app import faust_credentials

    upsert_scram_user(admin_client(secured), Role.SURVEILLANCE.value, "surveillance-secret")
    settings = _as(secured, Role.SURVEILLANCE)
    auth = credentials_to_aiokafka_auth(faust_credentials(settings)["broker_credentials"])

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, **auth)
        await producer.start()
        try:
            key, value, headers = _record()
            await producer.send_and_wait(
                settings.topic(Topic.SURVEILLANCE_ALERTS), value, key=key, headers=headers
            )
            with pytest.raises(TopicAuthorizationFailedError):
                await producer.send_and_wait(settings.topic(Topic.DECISIONS), value, key=key)
        finally:
            await producer.stop()

    asyncio.run(send())


def test_the_surveillance_app_starts_without_creating_the_catalogue(secured: Settings) -> None:
    """`tradetape run streams` called `create_topics`, which as the surveillance role sees
    only its own topics, tries to create the rest and is refused: it crashed at start.
    It now creates topics only when one it uses is missing (`deploy.kafka.ensure_topics`)."""
    from deploy.kafka import ensure_topics
    from streams.app import SOURCES, WRITTEN

    upsert_scram_user(admin_client(secured), Role.SURVEILLANCE.value, "surveillance-secret")
    settings = _as(secured, Role.SURVEILLANCE)
    with pytest.raises(KafkaException, match="AUTHORIZATION_FAILED"):
        create_topics(settings)
    assert ensure_topics(settings, [*SOURCES, *WRITTEN]) == []


def test_a_topic_the_principal_may_not_describe_is_named_as_such(secured: Settings) -> None:
    """A strategy may not read `surveillance.config` (the detectors' thresholds). Asking
    for its partitions said "has no partitions" after the whole wait, as if the topic
    were missing (helper-125 met it): now the broker's refusal is named, at once, alone or
    among other topics."""
    from confluent_kafka import Consumer

    from deploy.groups import WATCH, group_id
    from deploy.kafka import consumer_config, partitions_of, partitions_of_many

    strategy = _as(secured, Role.STRATEGY)
    gid = group_id(PREFIX, WATCH, uuid.uuid4().hex)
    consumer = Consumer(consumer_config(strategy, group_id=gid))
    try:
        with pytest.raises(RuntimeError, match="not authorized") as one:
            partitions_of(consumer, strategy, Topic.SURVEILLANCE_CONFIG, timeout=60)
        assert "acl.surveillance.config" in str(one.value)
        with pytest.raises(RuntimeError, match="not authorized") as many:
            partitions_of_many(
                consumer, strategy, [Topic.DECISIONS, Topic.SURVEILLANCE_CONFIG], timeout=60
            )
        assert "acl.surveillance.config" in str(many.value)
        assert "acl.risk.decisions" not in str(many.value)
        assert partitions_of(consumer, strategy, Topic.DECISIONS)  # a topic it may read
    finally:
        consumer.close()


def test_the_export_reads_as_the_reporter_role(secured: Settings) -> None:
    """`tradetape export auth016` read in `tradetape stor`'s group, so with ACLs on it
    could run only as the surveillance role (which also writes alerts and reads market
    data and the detectors' thresholds). The reporter principal reads the two topics the
    export reads, in its own group, and is refused any other."""
    from datetime import timedelta

    from projections.reports.cli import read_inputs
    from schemas.events import AccountOpened
    from streams.cli import IncompleteRead, read_topic
    from tests.projections.iso20022_helpers import OWNERS, T0, fill

    engine = _as(secured, Role.ENGINE)
    traded = fill(1)
    opened = AccountOpened(account="ACC1", beneficial_owner=OWNERS["ACC1"], base_currency="USDC")
    for topic, payload in ((Topic.ORDERS, traded), (Topic.ACCOUNTS, opened)):
        assert _delivery(engine, topic, encode(new_event(payload, producer="engine"))) is None
    upsert_scram_user(admin_client(secured), Role.REPORTER.value, "reporter-secret")
    reporter = _as(secured, Role.REPORTER)
    orders, accounts = read_inputs(reporter, T0, T0 + timedelta(days=1), 60)
    assert [e.payload for e in orders] == [traded]
    assert opened in [e.payload for e in accounts]
    with pytest.raises(IncompleteRead, match="AUTHORIZATION"):
        read_topic(reporter, Topic.DECISIONS, 20)
