"""Shared helpers for engine tests: a world of accounts and prices, a worker, log reads."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol, TypeVar

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from deploy.kafka import consumer_config, end_offsets, partitions_of, producer_config
from deploy.settings import Settings
from engine import auth
from engine.snapshotter import Snapshotter
from engine.worker import EngineWorker
from schemas import Envelope, decode, encode, new_event
from schemas.envelope import EventPayload
from schemas.events import (
    AccountOpened,
    BeneficialOwner,
    DepositReceived,
    KycVerified,
    MarketTrade,
    OrderIntent,
    OrderType,
    OwnerKind,
    ProducerRegistered,
    QuoteUpdated,
    Side,
)
from schemas.topics import Topic

INSTRUMENT = "BTC/USDC"


def produce(settings: Settings, events: list[Envelope[Any]], *, admin: bool = False) -> None:
    producer = Producer(producer_config(settings))
    for ev in events:
        key, value, headers = encode(ev)
        topic = settings.topic(Topic.ADMIN) if admin else settings.topic(Topic(ev.topic))
        producer.produce(topic, key=key, value=value, headers=headers)
    assert producer.flush(30) == 0


def admin(payload: EventPayload) -> Envelope[Any]:
    return new_event(payload, producer="admin")


def world(
    settings: Settings,
    accounts: list[str],
    *,
    producer_id: str = "strat1",
    cash: Decimal = Decimal("10000000"),
    wait: bool = True,
) -> Ed25519PrivateKey:
    """Open, KYC and fund accounts and register one producer for them (admin commands)."""
    key, pub = auth.new_keypair()
    events: list[Envelope[Any]] = []
    for acc in accounts:
        owner = BeneficialOwner(
            owner_id=f"own-{acc}", kind=OwnerKind.NATURAL, name=acc, country="DE"
        )
        events.append(
            admin(AccountOpened(account=acc, beneficial_owner=owner, base_currency="USDC"))
        )
        events.append(admin(KycVerified(account=acc, verified_by="test")))
        events.append(
            admin(DepositReceived(deposit_id=f"dep-{acc}", account=acc, asset="USDC", amount=cash))
        )
    events.append(
        admin(
            ProducerRegistered(
                producer_id=producer_id,
                public_key=pub,
                accounts=tuple(accounts),
                registered_by="admin",
            )
        )
    )
    if wait:
        send_admin(settings, events)
    else:
        produce(settings, events, admin=True)
    return key


ADMIN_RESENDS = 5
"""How many times `send_admin` sends again the commands a worker refused on a stale view."""


def admin_answers(
    settings: Settings, commands: list[Envelope[Any]], *, timeout: float = 60.0
) -> dict[Any, Envelope[Any]]:
    """The engine's answer to each admin command, by the command's event id: the fact it
    was accepted as (caused by it, of its type) or its `AdminCommandRejected`. A command
    with no answer within `timeout` seconds is missing from the result."""
    types = {c.event_id: c.event_type for c in commands}
    topics = {Topic.DECISIONS, *(Topic(c.topic) for c in commands)}
    found: dict[Any, Envelope[Any]] = {}
    deadline = time.monotonic() + timeout
    while True:
        for topic in topics:
            for e in read_topic(settings, topic, settle=0.3):
                if e.event_type == "AdminCommandRejected":
                    if e.payload.command_event_id in types:
                        found[e.payload.command_event_id] = e
                elif e.causation_id is not None and types.get(e.causation_id) == e.event_type:
                    found[e.causation_id] = e
        if len(found) == len(types) or time.monotonic() > deadline:
            return found
        time.sleep(0.3)


def rejected_stale(answer: Envelope[Any] | None) -> bool:
    """An admin command refused because the worker's view of the control topics may be
    stale (`engine.control.stale_admin_reason`: fail closed; send it again)."""
    return (
        answer is not None
        and answer.event_type == "AdminCommandRejected"
        and answer.payload.reason.startswith("STALE_STATE")
    )


def send_admin(settings: Settings, commands: list[Envelope[Any]]) -> None:
    """Send admin commands and wait for their answers, as a client would: while a worker
    refuses some on a stale view (STALE_STATE: its control drain missed its budget, as on
    a loaded machine), send again, in order and under new event ids, every command not
    accepted (one refused after a stale one may have been refused because of it, e.g. KYC
    for an account whose opening was refused). Before, the setup waited for the facts
    and went on without them: a producer whose registration was refused stale was then
    `UNKNOWN_PRODUCER` on a fresh view. Commands refused for another reason, or not
    answered within a minute, are left to the caller's own checks."""
    todo = commands
    produce(settings, todo, admin=True)
    for _ in range(ADMIN_RESENDS):
        answers = admin_answers(settings, todo)
        if not any(rejected_stale(answers.get(c.event_id)) for c in todo):
            return
        todo = [
            new_event(c.payload, producer=c.producer)
            for c in todo
            if (a := answers.get(c.event_id)) is None or a.event_type == "AdminCommandRejected"
        ]
        produce(settings, todo, admin=True)
    admin_answers(settings, todo)


def quote(
    bid: str = "60000",
    ask: str = "60001",
    qty: str = "1000",
    at: datetime | None = None,
    update_id: int = 1,
) -> Envelope[QuoteUpdated]:
    return new_event(
        QuoteUpdated(
            venue="binance",
            instrument=INSTRUMENT,
            bid_price=Decimal(bid),
            bid_quantity=Decimal(qty),
            ask_price=Decimal(ask),
            ask_quantity=Decimal(qty),
            update_id=update_id,
            exchange_ts=at or datetime.now(UTC),
        ),
        producer="md",
        occurred_at=at,
    )


def trade(price: str, qty: str = "5", trade_id: str | None = None) -> Envelope[MarketTrade]:
    return new_event(
        MarketTrade(
            venue="binance",
            instrument=INSTRUMENT,
            trade_id=trade_id or uuid.uuid4().hex,
            price=Decimal(price),
            quantity=Decimal(qty),
            aggressor_side=Side.BUY,
            exchange_ts=datetime.now(UTC),
        ),
        producer="md",
    )


def intent(
    key: Ed25519PrivateKey,
    account: str,
    coid: str,
    *,
    side: Side = Side.BUY,
    qty: str = "0.01",
    limit: str | None = None,
    producer_id: str = "strat1",
    **extra: Any,
) -> Envelope[OrderIntent]:
    payload = OrderIntent(
        producer_id=producer_id,
        strategy_id="s",
        account=account,
        client_order_id=coid,
        instrument=extra.pop("instrument", INSTRUMENT),
        side=side,
        order_type=OrderType.LIMIT if limit else OrderType.MARKET,
        quantity=Decimal(qty),
        limit_price=Decimal(limit) if limit else None,
        **extra,
    )
    return new_event(auth.sign(payload, key), producer=producer_id)


def read_topic(
    settings: Settings, topic: Topic, *, settle: float = 1.0, timeout: float = 30.0
) -> list[Envelope[Any]]:
    """Everything committed on `topic`, read_committed, up to the current end."""
    consumer = Consumer(consumer_config(settings, group_id=f"read-{uuid.uuid4().hex}"))
    name = settings.topic(topic)
    parts = partitions_of(consumer, settings, topic)
    admin = AdminClient({"bootstrap.servers": settings.bootstrap})
    all_tps = [TopicPartition(name, p) for p in parts]
    highs = end_offsets(admin, all_tps)
    lows = end_offsets(admin, all_tps, earliest=True)
    targets = {}
    tps = []
    for p in parts:
        low, high = lows[(name, p)], highs[(name, p)]
        tps.append(TopicPartition(name, p, low))
        if high > low:
            targets[p] = high
    consumer.assign(tps)
    out: list[Envelope[Any]] = []
    deadline = time.monotonic() + timeout
    idle = time.monotonic()
    while time.monotonic() < deadline:
        msgs = consumer.consume(5000, 0.2)
        for m in msgs:
            if m.error():
                continue
            idle = time.monotonic()
            out.append(decode(m.value(), m.headers(), topic=m.topic()))
        pos = {tp.partition: tp.offset for tp in consumer.position(tps)}
        if all(pos.get(p, -1) >= h - 1 for p, h in targets.items()) and (
            time.monotonic() - idle > settle or all(pos.get(p, -1) >= h for p, h in targets.items())
        ):
            break
    consumer.close()
    return out


def wait_for(
    settings: Settings, topic: Topic, pred: Any, timeout: float = 30.0
) -> list[Envelope[Any]]:
    deadline = time.monotonic() + timeout
    events: list[Envelope[Any]] = []
    while time.monotonic() < deadline:
        events = read_topic(settings, topic, settle=0.3)
        if pred(events):
            return events
        time.sleep(0.3)
    return events


class _Runnable(Protocol):
    stopping: bool

    def run(self) -> int: ...


R = TypeVar("R", bound=_Runnable)


@contextmanager
def _running(component: R) -> Iterator[R]:
    """`component.run()` on a thread until the block ends; its exception is re-raised."""
    error: list[BaseException] = []

    def _run() -> None:
        try:
            component.run()
        except BaseException as exc:  # surfaced to the test
            error.append(exc)

    thread = threading.Thread(target=_run, daemon=True)
    thread.start()
    try:
        yield component
    finally:
        component.stopping = True
        thread.join(30)
        close = getattr(component, "close", None)
        if close is not None and not thread.is_alive():
            close()  # its producer: `run` closes only the consumers
        if error:
            raise error[0]


def running_worker(settings: Settings, wid: str = "t0") -> AbstractContextManager[EngineWorker]:
    return _running(EngineWorker(settings, wid=wid))


def running_snapshotter(settings: Settings) -> AbstractContextManager[Snapshotter]:
    """The snapshotter (engine.snapshotter) on a thread, for slices in in-process tests."""
    return _running(Snapshotter(settings))


class RecordCounter:
    """Counts committed records on a topic without decoding them: cheap progress checks."""

    def __init__(self, settings: Settings, topic: Topic) -> None:
        self.consumer = Consumer(consumer_config(settings, group_id=f"cnt-{uuid.uuid4().hex}"))
        name = settings.topic(topic)
        parts = partitions_of(self.consumer, settings, topic)
        self.consumer.assign([TopicPartition(name, p, 0) for p in parts])
        self.count = 0

    def wait(self, n: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.count < n and time.monotonic() < deadline:
            self.count += sum(1 for m in self.consumer.consume(10000, 0.3) if not m.error())
        return self.count

    def close(self) -> None:
        self.consumer.close()


def fail_control_ends(monkeypatch: Any, times: int = 0) -> list[int]:
    """Make the control feed's next `times` end-offset queries fail (its drain then
    fails: the batch is decided as on a stale view); returns the counter, which the
    test may raise later and reads to see the failures happened."""
    from confluent_kafka import KafkaException

    from engine import control as control_mod

    real_ends_of = control_mod.ends_of
    to_fail = [times]

    def ends_of(query: Any, deadline: float) -> dict[tuple[str, int], int]:
        if to_fail[0] > 0:
            to_fail[0] -= 1
            raise KafkaException("injected: no answer for the end offsets")
        return real_ends_of(query, deadline)

    monkeypatch.setattr(control_mod, "ends_of", ends_of)
    return to_fail
