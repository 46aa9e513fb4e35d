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
    produce(settings, events, admin=True)
    if wait:
        wait_for(
            settings,
            Topic.TRANSFERS,
            lambda ev: {e.payload.account for e in ev} >= set(accounts),
            timeout=60,
        )
        wait_for(
            settings,
            Topic.ACCOUNTS,
            lambda ev: any(
                e.event_type == "ProducerRegistered" and e.payload.producer_id == producer_id
                for e in ev
            ),
            timeout=60,
        )
    return key


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
