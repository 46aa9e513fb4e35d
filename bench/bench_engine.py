"""Engine benchmark: throughput vs. a plain transactional pass-through, latency, memory.

`.venv/bin/python -m bench.bench_engine [--intents 20000] [--seconds 20] [--soak-minutes 2]`

One throwaway local stack; the engine runs as a real `tradetape run engine` subprocess.
(a) a backlog of signed intents, worker started, decisions committed per second;
(b) the same records through a bare consume-transform-produce loop with the same
transaction settings (the transport limit); then paced publishing at 1k and 5k intents/s
with latency from the intent's `occurred_at` to its decision being visible to a
read_committed consumer; worker RSS sampled throughout.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from deploy.kafka import consumer_config, create_topics, producer_config
from deploy.local import LocalStack
from deploy.settings import Settings
from engine import auth
from engine.worker import partitions_of
from schemas import encode, new_event
from schemas.events import (
    AccountOpened,
    BeneficialOwner,
    DepositReceived,
    KycVerified,
    OrderIntent,
    OrderType,
    OwnerKind,
    ProducerRegistered,
    QuoteUpdated,
    RiskLimits,
    RiskLimitsChanged,
    Side,
)
from schemas.topics import Topic

ROOT = Path(__file__).resolve().parents[1]
ACCOUNTS = [f"B{i:03d}" for i in range(64)]
PLACEHOLDER = b"2000-01-01T00:00:00.000000Z"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(s: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        TRADETAPE_KAFKA_PORT=str(s.kafka_port),
        TRADETAPE_TOPIC_PREFIX=s.topic_prefix,
        TRADETAPE_POSTGRES_PORT=str(s.postgres_port),
        TRADETAPE_POSTGRES_DB=s.postgres_db,
        TRADETAPE_DATA_DIR=str(s.data_dir),
        TRADETAPE_ENGINE_WORKER_ID="bench",
        TRADETAPE_LOG_LEVEL="WARNING",
    )
    return env


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _ts(at: float) -> bytes:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)).encode() + (
        f".{int((at % 1) * 1e6):06d}Z".encode()
    )


def setup_world(s: Settings) -> Any:
    key, pub = auth.new_keypair()
    p = Producer(producer_config(s))
    owner = BeneficialOwner(owner_id="o", kind=OwnerKind.NATURAL, name="Bench", country="DE")
    events = []
    for acc in ACCOUNTS:
        events += [
            AccountOpened(account=acc, beneficial_owner=owner, base_currency="USDC"),
            KycVerified(account=acc, verified_by="admin"),
            DepositReceived(
                deposit_id=f"d-{acc}", account=acc, asset="USDC", amount=Decimal("1000000000")
            ),
        ]
    events.append(
        ProducerRegistered(
            producer_id="bench", public_key=pub, accounts=tuple(ACCOUNTS), registered_by="admin"
        )
    )
    events.append(
        RiskLimitsChanged(
            scope="*",
            config_version=1,
            changed_by="admin",
            limits=(
                RiskLimits(
                    max_price_age_seconds=86400,
                    max_orders_per_window=10**9,
                    max_open_orders=10**9,
                    max_position=Decimal("1e12"),
                    max_order_notional=Decimal("1e15"),
                    max_consumer_lag=10**9,
                )
            ),
        )
    )
    for payload in events:
        k, v, h = encode(new_event(payload, producer="admin"))
        p.produce(s.topic(Topic.ADMIN), key=k, value=v, headers=h)
    quote = QuoteUpdated(
        venue="bench",
        instrument="BTC/USDC",
        bid_price=Decimal("60000"),
        bid_quantity=Decimal("1e9"),
        ask_price=Decimal("60001"),
        ask_quantity=Decimal("1e9"),
        update_id=1,
        exchange_ts=__import__("datetime").datetime.now(__import__("datetime").UTC),
    )
    k, v, h = encode(new_event(quote, producer="md"))
    p.produce(s.topic(Topic.MARKETDATA), key=k, value=v, headers=h)
    p.flush(30)
    return key


def templates(key: Any, n: int, tag: str) -> list[tuple[bytes, bytes, list[Any]]]:
    """Pre-signed, pre-encoded intents whose occurred_at is patched at send time."""
    from datetime import UTC, datetime

    out = []
    at = datetime(2000, 1, 1, tzinfo=UTC)
    for i in range(n):
        acc = ACCOUNTS[i % len(ACCOUNTS)]
        payload = auth.sign(
            OrderIntent(
                producer_id="bench",
                strategy_id="s",
                account=acc,
                client_order_id=f"{tag}-{i}",
                instrument="BTC/USDC",
                side=Side.BUY if i % 2 else Side.SELL,
                order_type=OrderType.LIMIT,
                quantity=Decimal("0.001"),
                limit_price=Decimal("59990") if i % 2 else Decimal("60011"),
            ),
            key,
        )
        k, v, h = encode(new_event(payload, producer="bench", occurred_at=at))
        assert v.count(PLACEHOLDER) == 1
        out.append((k, v, h))
    return out


class DecisionClock(threading.Thread):
    """Reads decisions (read_committed); latency = seen - decision.occurred_at (= intent's)."""

    def __init__(self, s: Settings) -> None:
        super().__init__(daemon=True)
        self.c = Consumer(consumer_config(s, group_id=f"clock-{uuid.uuid4().hex}"))
        name = s.topic(Topic.DECISIONS)
        self.c.assign(
            [TopicPartition(name, p, 0) for p in partitions_of(self.c, s, Topic.DECISIONS)]
        )
        self.count = 0
        self.first = self.last = 0.0
        self.lat: dict[str, list[float]] = {}
        self.stop = False

    def run(self) -> None:
        from datetime import datetime

        while not self.stop:
            for m in self.c.consume(10000, 0.1):
                if m.error():
                    continue
                now = time.time()
                self.count += 1
                self.first = self.first or now
                self.last = now
                d = json.loads(m.value())
                tag = str(d["payload"].get("client_order_id", "")).split("-")[0]
                at = datetime.fromisoformat(d["occurred_at"].replace("Z", "+00:00")).timestamp()
                self.lat.setdefault(tag, []).append(now - at)
        self.c.close()


def publish(s: Settings, tpl: list[tuple[bytes, bytes, list[Any]]], rate: float | None) -> float:
    p = Producer(producer_config(s, **{"linger.ms": 1}))
    topic = s.topic(Topic.INTENTS)
    t0 = time.monotonic()
    for i, (k, v, h) in enumerate(tpl):
        if rate:
            due = t0 + i / rate
            while (lag := due - time.monotonic()) > 0:
                time.sleep(min(lag, 0.002))
        value = v.replace(PLACEHOLDER, _ts(time.time()))
        while True:
            try:
                p.produce(topic, key=k, value=value, headers=h)
                break
            except BufferError:
                p.poll(0.01)
        p.poll(0)
    p.flush(60)
    return time.monotonic() - t0


def passthrough(s: Settings, n: int, batch: int = 500) -> float:
    """The transport limit: consume intents, produce a same-size record, commit per batch."""
    out_topic = s.topic(Topic.ENGINE_SNAPSHOTS)
    c = Consumer(consumer_config(s, group_id=f"pt-{uuid.uuid4().hex}"))
    c.subscribe([s.topic(Topic.INTENTS)])
    p = Producer(
        producer_config(
            s,
            transactional_id=f"pt-{uuid.uuid4().hex}",
            **{"transaction.timeout.ms": 10_000, "linger.ms": 1},
        )
    )
    p.init_transactions(30)
    done = 0
    t0 = 0.0
    while done < n:
        msgs = c.consume(batch, 1.0)
        if not msgs:
            continue
        t0 = t0 or time.monotonic()
        p.begin_transaction()
        for m in msgs:
            if m.error():
                continue
            p.produce(out_topic, key=m.key(), value=m.value()[::-1], headers=m.headers())
            p.poll(0)
            done += 1
        p.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata())
        p.commit_transaction(30)
    dt = time.monotonic() - t0
    c.close()
    return n / dt


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--intents", type=int, default=20000)
    ap.add_argument("--seconds", type=int, default=20, help="per paced rate")
    ap.add_argument("--soak-minutes", type=float, default=2.0)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    s = Settings(
        data_dir=tmp,
        kafka_port=_port(),
        kafka_controller_port=_port(),
        postgres_port=_port(),
        postgres_fsync=False,
        kafka_heap="1g",
        topic_prefix="be.",
    )
    stack = LocalStack(s, echo=lambda _m: None)
    stack.up()
    worker: subprocess.Popen[bytes] | None = None
    try:
        create_topics(s)
        key = setup_world(s)
        print(f"building {args.intents} signed intents...", file=sys.stderr)
        backlog = templates(key, args.intents, "a")
        publish(s, backlog, None)
        clock = DecisionClock(s)
        clock.start()
        worker = subprocess.Popen(
            [sys.executable, "-m", "deploy.cli_entry", "run", "engine"], cwd=ROOT, env=_env(s)
        )
        want = args.intents + len(ACCOUNTS) * 0
        deadline = time.monotonic() + 900
        rss: list[tuple[float, float]] = []
        while clock.count < want and time.monotonic() < deadline:
            time.sleep(1)
            rss.append((time.monotonic(), _rss_mb(worker.pid)))
        engine_rate = clock.count / max(1e-9, clock.last - clock.first)
        print(f"(a) engine: {clock.count} decisions at {engine_rate:.0f}/s", file=sys.stderr)
        pt_rate = passthrough(s, args.intents)
        print(f"(b) pass-through: {pt_rate:.0f}/s", file=sys.stderr)
        results = {}
        for rate in (1000, 5000):
            tag = f"r{rate}"
            tpl = templates(key, rate * args.seconds, tag)
            publish(s, tpl, rate)
            end = time.monotonic() + 120
            while len(clock.lat.get(tag, [])) < len(tpl) and time.monotonic() < end:
                time.sleep(0.5)
                rss.append((time.monotonic(), _rss_mb(worker.pid)))
            lat = clock.lat.get(tag, [])
            results[rate] = (len(lat), len(tpl), pct(lat, 0.5), pct(lat, 0.99), pct(lat, 0.999))
            print(f"{rate}/s: {results[rate]}", file=sys.stderr)
        soak_end = time.monotonic() + args.soak_minutes * 60
        soak_rss = []
        i = 0
        while time.monotonic() < soak_end:
            tpl = templates(key, 500, f"s{i}")
            publish(s, tpl, 500)
            soak_rss.append(_rss_mb(worker.pid))
            i += 1
        clock.stop = True
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
        stack.down()
    print("\n## Engine results")
    print(f"(a) engine, backlog of {args.intents}: {engine_rate:.0f} intents/s")
    print(
        f"(b) transactional pass-through: {pt_rate:.0f} records/s; ratio "
        f"{engine_rate / pt_rate:.2f}"
    )
    for rate, (got, sent, p50, p99, p999) in results.items():
        print(
            f"offered {rate}/s: {got}/{sent} decided; p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
            f"p99.9 {p999:.1f} ms"
        )
    if soak_rss:
        print(
            f"soak {args.soak_minutes:g} min at 500/s: RSS {soak_rss[0]:.0f} -> "
            f"{soak_rss[-1]:.0f} MB (max {max(soak_rss):.0f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
