"""`make demo`, engine stage: accounts, real BTCUSDT prices, a strategy, a decision table.

The real Binance capture is replayed (at 10x) as the BTC/USDC paper market: USDT is not a
permitted stablecoin under the default allow-list (USDC, EURC), so the demo trades the
same prices against USDC, and a few intents on BTC/USDT show the allow-list rejecting.

The capture is not part of the repository: it is read from the shared reference data
next to the project (`CAPTURE`, there in CI and on the dev machines). Without it (a
fresh clone) the stage says so and replays `marketdata simulate`'s seeded market
instead (`engine/marketdata/simulate.py`), so `make demo` runs anywhere.
"""

from __future__ import annotations

import random
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from deploy.demo import PERSONS
from deploy.kafka import producer_config
from deploy.settings import Settings
from engine import auth
from engine.cli import STALE_ATTEMPTS, STALE_BACKOFF_SECONDS
from engine.client import DecisionWatcher, intent_key
from engine.control import STALE_ADMIN_PREFIX
from engine.marketdata.binance import parse_file
from engine.marketdata.simulate import simulate
from engine.worker import EngineWorker
from schemas import Envelope, encode, new_event
from schemas.envelope import EventPayload
from schemas.events import (
    AccountOpened,
    BeneficialOwner,
    CancelIntent,
    DepositReceived,
    KycVerified,
    OrderIntent,
    OrderType,
    OwnerKind,
    ProducerRegistered,
    QuoteUpdated,
    Side,
)
from schemas.topics import Topic

CAPTURE = (
    Path(__file__).resolve().parents[1].parent
    / "shared"
    / "reference"
    / "marketdata"
    / "binance_spot_btcusdt_20240808.jsonl.gz"
)
INSTRUMENT = "BTC/USDC"
SPEED = 10.0
INTENTS = 300
SIMULATED_MINUTES = 6.0
"""Without the capture: this long a simulated market (the capture's length), seed 7."""


def market(
    path: Path,
) -> tuple[str, Iterator[tuple[float, Any]]]:  # receive times in seconds, not money
    """The demo's market: (what it is, (seconds since the first record, payload) in
    order): the capture at `path` if it is there, else a simulated BTC/USDC market."""
    if path.is_file():
        _parser, records = parse_file(path, instrument=INSTRUMENT)

        def replay() -> Iterator[tuple[float, Any]]:  # receive times in seconds, not money
            first: int | None = None
            for rec in records:
                if rec.payload is None or rec.recv_ns is None:
                    continue
                first = first if first is not None else rec.recv_ns
                yield (rec.recv_ns - first) / 1e9, rec.payload

        return "the BTCUSDT capture", replay()
    start = datetime.now(UTC)
    payloads = simulate(INSTRUMENT, SIMULATED_MINUTES, seed=7, start=start)
    return "a simulated market (no capture)", (
        ((p.exchange_ts - start).total_seconds(), p) for p in payloads
    )


class _Feed(threading.Thread):
    """Replays the market onto the market-data topic and remembers the latest mid."""

    def __init__(self, settings: Settings, path: Path) -> None:
        super().__init__(daemon=True)
        self.settings, self.path = settings, path
        self.mid: Decimal | None = None
        self.published = 0
        self.stop = False
        self.error: str | None = None
        if not path.is_file():
            print(
                f"engine: no Binance capture at {path} (shared reference data next to the "
                f"project); replaying a simulated {INSTRUMENT} market instead "
                "(`tradetape marketdata simulate`'s generator)",
                file=sys.stderr,
                flush=True,
            )
        self.source, self.records = market(path)

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # reported by the stage, not lost in the thread
            self.error = f"{type(exc).__name__}: {exc}"

    def _run(self) -> None:
        producer = Producer(producer_config(self.settings))
        t0 = time.monotonic()
        for at, p in self.records:
            if self.stop:
                break
            lag = at / SPEED - (time.monotonic() - t0)
            if lag > 0:
                time.sleep(lag)
            if isinstance(p, QuoteUpdated):
                self.mid = (p.bid_price + p.ask_price) / 2
            key, value, headers = encode(new_event(p, producer="marketdata-loader"))
            producer.produce(
                self.settings.topic(Topic.MARKETDATA), key=key, value=value, headers=headers
            )
            producer.poll(0)
            self.published += 1
        producer.flush(30)


def _send(producer: Producer, settings: Settings, event: Envelope[Any], topic: Topic) -> None:
    key, value, headers = encode(event)
    producer.produce(settings.topic(topic), key=key, value=value, headers=headers)
    producer.poll(0)


def decision_table(table: Counter[tuple[str, str]]) -> list[str]:
    """The outcome/reason/count table, most frequent first. The reason column is as wide
    as its longest entry: it was cut at 44 characters, so a rejection for three rules
    read `STALE_STATE,STABLECOIN_NOT_PERMITTED,NO_REFE`."""
    width = max([44, *(len(reason) for _, reason in table)])
    lines = [f"{'outcome':<18} {'reason':<{width}} {'count':>5}"]
    for (outcome, reason), n in sorted(table.items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"{outcome:<18} {reason:<{width}} {n:>5}")
    return lines


BAD_AT = {
    25: "bad_signature",
    50: "unknown_producer",
    75: "over_limit",
    100: "unlisted_stablecoin",
    125: "fat_finger",
    150: "not_entitled",
    175: "bad_signature",
    200: "over_limit",
    225: "unlisted_stablecoin",
    250: "fat_finger",
}
"""The strategy's planted bad intents, by their index among the INTENTS sent."""

OUTCOMES = (
    "INTENT_REJECTED: refused before the risk rules (signature, producer, entitlement, "
    "the order a cancel names); REJECTED: failed pre-trade risk rules, each named"
)
"""What the table's two kinds of refusal mean, printed under it: a compliance reader
could not tell them apart from the codes alone (the newcomer's audit)."""

BAD_KINDS = {
    "bad_signature": "with a bad signature",
    "unknown_producer": "from an unregistered producer",
    "not_entitled": "on an account its producer may not trade",
    "over_limit": "over the order notional limit",
    "unlisted_stablecoin": "on BTC/USDT (USDT is not a permitted stablecoin)",
    "fat_finger": "fat-fingered (a limit at twice the price)",
}


def planted_line(bad_at: dict[int, str]) -> str:
    """The bad intents the demo plants, by kind, in the order first sent: so a reader
    knows which refusals were staged and that the others are the toy strategy's own."""
    kinds: Counter[str] = Counter(bad_at[i] for i in sorted(bad_at))
    parts = [f"{n} {BAD_KINDS[kind]}" for kind, n in kinds.items()]
    return (
        f"engine: {sum(kinds.values())} of the intents are planted bad ones: "
        + ", ".join(parts)
        + "; the other refusals are the strategy's own (cancels of orders that had filled "
        "or were refused, orders crossing its own resting ones)"
    )


def reason_examples(examples: dict[str, str], width: int = 120) -> list[str]:
    """One example detail per reason code, as the decision gave it (the rule's figures):
    the table's codes alone (`STALE_STATE`, `SELF_CROSS`) said little to a compliance
    reader. Each line is cut at `width` characters."""
    if not examples:
        return []
    code_width = max(len(code) for code in examples)
    lines = ["reasons, one example each (the decision's own words):"]
    for code in sorted(examples):
        line = f"  {code:<{code_width}}  {examples[code]}"
        lines.append(line if len(line) <= width else line[: width - 1] + "…")
    return lines


def run(settings: Settings) -> list[str]:
    started = time.monotonic()
    run_id = uuid.uuid4().hex[:6]
    accounts = [f"DEMO-{run_id}-{i}" for i in range(1, 5)]
    strategy = f"momo-{run_id}"
    key, pub = auth.new_keypair()
    rogue, _ = auth.new_keypair()
    producer = Producer(producer_config(settings))
    watcher = DecisionWatcher(settings)
    worker = EngineWorker(settings, wid=f"demo-{run_id}")
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    feed = _Feed(settings, CAPTURE)
    try:
        admin_events: list[Envelope[Any]] = []
        for acc in accounts:
            first, surname, _born = PERSONS[acc[-1]]
            owner = BeneficialOwner(
                owner_id=f"o-{acc}",
                kind=OwnerKind.NATURAL,
                name=f"{first} {surname}",
                country="DE",
            )
            admin_events += [
                new_event(
                    AccountOpened(account=acc, beneficial_owner=owner, base_currency="USDC"),
                    producer="admin",
                ),
                new_event(KycVerified(account=acc, verified_by="admin"), producer="admin"),
                new_event(
                    DepositReceived(
                        deposit_id=f"dep-{acc}",
                        account=acc,
                        asset="USDC",
                        amount=Decimal("1000000"),
                    ),
                    producer="admin",
                ),
            ]
        # EURC too, for the travel-rule stage's withdrawal to a self-hosted address (the
        # EU rule values EURC in EUR at par; streams/travel_rule/demo.py), on the account
        # the strategy may not trade: an account holding EURC cannot be valued (no EURC
        # price), so its orders would be refused NO_MARK.
        admin_events.append(
            new_event(
                DepositReceived(
                    deposit_id=f"dep-{accounts[3]}-eurc",
                    account=accounts[3],
                    asset="EURC",
                    amount=Decimal("10000"),
                ),
                producer="admin",
            )
        )
        admin_events.append(
            new_event(
                ProducerRegistered(
                    producer_id=strategy,
                    public_key=pub,
                    accounts=tuple(accounts[:3]),
                    registered_by="admin",
                ),
                producer="admin",
            )
        )
        pending = admin_events
        for attempt in range(1, STALE_ATTEMPTS + 1):
            for ev in pending:
                _send(producer, settings, ev, Topic.ADMIN)
            producer.flush(30)
            stale: list[Envelope[Any]] = []
            for ev in pending:
                # The answer is the accepted fact, re-published by the engine, or a rejection.
                answer = watcher.wait(ev.correlation_id, timeout=30)
                if answer is None or answer.event_type == "AdminCommandRejected":
                    detail = "no answer in 30 s" if answer is None else answer.payload.reason
                    # Refused only as decided on a stale view (no effect), or after such a
                    # refusal (a KYC for an account whose opening was refused): sent again,
                    # as new commands, in order.
                    again = answer is not None and (
                        bool(stale) or detail.startswith(STALE_ADMIN_PREFIX)
                    )
                    if again and attempt < STALE_ATTEMPTS:
                        stale.append(new_event(ev.payload, producer="admin"))
                        continue
                    raise RuntimeError(f"admin command {ev.event_type} not accepted: {detail}")
            if not stale:
                break
            print(
                f"{len(stale)} admin command(s) refused on a stale view, sent again",
                file=sys.stderr,
            )
            time.sleep(STALE_BACKOFF_SECONDS * attempt)
            pending = stale
        feed.start()
        deadline = time.monotonic() + 30
        while feed.mid is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if feed.mid is None:
            why = f": {feed.error}" if feed.error else ""
            raise RuntimeError(f"no market data from {feed.source}{why}")
        time.sleep(2.0)  # let the engine see the registrations and first prices
        sent = _strategy(settings, producer, key, rogue, strategy, accounts, feed)
        producer.flush(30)
        decisions = [watcher.wait(ev.correlation_id, 60, intent=intent_key(ev)) for ev in sent]
    finally:
        feed.stop = True
        worker.stopping = True
        thread.join(60)
        if not thread.is_alive():
            worker.close()  # its producer: `run` closes only the consumers
        watcher.close()
    table: Counter[tuple[str, str]] = Counter()
    examples: dict[str, str] = {}
    for d in decisions:
        if d is None:
            table[("NO DECISION", "-")] += 1
        elif d.event_type == "IntentRejected":
            table[("INTENT_REJECTED", str(d.payload.reason))] += 1
            examples.setdefault(str(d.payload.reason), d.payload.detail)
        elif d.payload.outcome == "APPROVED":
            table[(f"APPROVED {d.payload.intent_kind}", "-")] += 1
        else:
            table[("REJECTED", ",".join(d.payload.reason_codes))] += 1
            for result in d.payload.rule_results:
                if not result.passed and result.reason_code:
                    examples.setdefault(result.reason_code, result.detail)
    state = worker.state
    fills = sum(state.account(a).fills for a in accounts)
    positions = {a: state.account(a).positions.get(INSTRUMENT, Decimal(0)) for a in accounts}
    lines = [
        f"engine: {len(sent)} intents from strategy {strategy} on {len(accounts)} accounts, "
        f"{feed.published} market events from {feed.source} (as {INSTRUMENT}, {SPEED:g}x)",
        planted_line(BAD_AT),
        *decision_table(table),
        OUTCOMES,
        *reason_examples(examples),
    ]
    lines.append(
        f"engine: {fills} fills; positions "
        + ", ".join(f"{a}={q.normalize()}" for a, q in positions.items())
    )
    counters = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in worker.stats.items())
    lines.append(f"engine: worker: {counters}; stage took {time.monotonic() - started:.1f}s")
    for line in lines:
        print(line, flush=True)
    return lines


def _strategy(
    settings: Settings,
    producer: Producer,
    key: Any,
    rogue: Any,
    strategy: str,
    accounts: list[str],
    feed: _Feed,
) -> list[Envelope[Any]]:
    """A toy strategy: market and limit orders around the mid, cancels, and some bad apples."""
    rng = random.Random(7)
    sent: list[Envelope[Any]] = []
    resting: list[tuple[str, str]] = []

    def intent(payload: EventPayload, signer: Any = key, producer_id: str = strategy) -> None:
        signed = auth.sign(payload, signer)
        ev = new_event(signed, producer=producer_id)
        _send(producer, settings, ev, Topic.INTENTS)
        sent.append(ev)

    for i in range(INTENTS):
        mid = feed.mid or Decimal("60000")
        acc = accounts[i % 3]
        coid = f"{strategy}-{i}"
        side = Side.BUY if rng.random() < 0.6 else Side.SELL
        qty = Decimal(rng.choice(["0.01", "0.02", "0.05", "0.1"]))
        base: dict[str, Any] = dict(
            producer_id=strategy,
            strategy_id="momo",
            account=acc,
            client_order_id=coid,
            instrument=INSTRUMENT,
            side=side,
            quantity=qty,
        )
        kind = BAD_AT.get(i)
        if kind == "bad_signature":
            intent(OrderIntent(order_type=OrderType.MARKET, **base), signer=rogue)
        elif kind == "unknown_producer":
            intent(
                OrderIntent(order_type=OrderType.MARKET, **{**base, "producer_id": "ghost"}),
                signer=rogue,
                producer_id="ghost",
            )
        elif kind == "over_limit":
            intent(OrderIntent(order_type=OrderType.MARKET, **{**base, "quantity": Decimal("9")}))
        elif kind == "unlisted_stablecoin":
            intent(OrderIntent(order_type=OrderType.MARKET, **{**base, "instrument": "BTC/USDT"}))
        elif kind == "fat_finger":
            intent(
                OrderIntent(
                    order_type=OrderType.LIMIT,
                    limit_price=(mid * 2).quantize(Decimal("0.01")),
                    **{**base, "side": Side.BUY},
                )
            )
        elif kind == "not_entitled":
            intent(OrderIntent(order_type=OrderType.MARKET, **{**base, "account": accounts[3]}))
        elif resting and rng.random() < 0.1:
            target_acc, target = resting.pop(rng.randrange(len(resting)))
            intent(
                CancelIntent(
                    producer_id=strategy,
                    strategy_id="momo",
                    account=target_acc,
                    client_order_id=coid,
                    target_client_order_id=target,
                )
            )
        elif rng.random() < 0.45:
            side = Side.BUY
            intent(
                OrderIntent(
                    order_type=OrderType.MARKET,
                    stop_loss=(mid * Decimal("0.995")).quantize(Decimal("0.01")),
                    take_profit=(mid * Decimal("1.005")).quantize(Decimal("0.01")),
                    **{**base, "side": side},
                )
            )
        else:
            offset = Decimal(rng.randint(-40, 40)) / 100000  # within ±0.04 % of the mid
            price = (mid * (1 + offset)).quantize(Decimal("0.01"))
            intent(OrderIntent(order_type=OrderType.LIMIT, limit_price=price, **base))
            resting.append((acc, coid))
        if i % 20 == 19:
            producer.flush(10)
            time.sleep(0.5)
    return sent
