"""Seeded surveillance scenario: market makers, takers and labelled abusive episodes.

The scenario is a list of *inputs* (admin commands, market data, signed intents) in
time order. `run_through_engine` drives them through the engine's pure processor, so the
order lifecycle and fills are the real engine's; `publish_scenario` publishes the same
inputs to the broker for the running engine. Labels say which owner did what, when.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from engine.marketdata.loader import Deliveries
from schemas import Envelope, new_event
from schemas.envelope import EventPayload
from schemas.events import (
    AccountOpened,
    BeneficialOwner,
    CancelIntent,
    DepositReceived,
    DetectorConfigChanged,
    KycVerified,
    MarketTrade,
    OrderIntent,
    OrderType,
    OwnerKind,
    ProducerRegistered,
    QuoteUpdated,
    RiskLimits,
    RiskLimitsChanged,
    Side,
    SurveillanceAlert,
)
from schemas.ids import derived_uuid7
from schemas.topics import Topic

INSTRUMENT = "BTC/USDC"
PRODUCER = "scenario"
CENT = Decimal("0.01")
PATTERNS = ("SPOOFING", "LAYERING", "WASH_TRADING", "ORDER_TO_TRADE", "MARKING_THE_CLOSE")
OTR_AT, OTR_ORDERS, OTR_RATE = 10, 160, 10
"""Quote stuffing: 160 orders at 10/s from second 10, each cancelled 50 ms later."""
OTR_PARAMS = {"window_s": "60", "min_orders": "150", "max_order_to_trade": "1000",
              "max_cancel_ratio": "0.999"}  # fmt: skip
"""Market makers here requote twice a second (~120 orders a minute, a few fills): below."""
MTC_LEAD, MTC_ORDERS = 55, 20
"""Marking the close: 20 market orders in the last 55 s before the reference time."""
MTC_PARAMS = {"minutes_before": "1", "lookback_minutes": "60", "min_aggressive_fills": "16",
              "min_share": "0.6"}  # fmt: skip
"""The reference time is the scenario's end; background takers make ~5 orders a minute."""


@dataclass
class Episode:
    pattern: str
    owner: str
    accounts: list[str]
    start: str
    end: str


@dataclass
class Scenario:
    seed: int
    inputs: list[Envelope[Any]] = field(default_factory=list)
    labels: list[Episode] = field(default_factory=list)


class _Builder:
    def __init__(self, seed: int, t0: datetime, producer: str = PRODUCER) -> None:
        self.seed = seed
        self.producer = producer
        self.rng = random.Random(seed)
        self.t0 = t0
        self.inputs: list[tuple[float, int, EventPayload, str]] = []  # at s, not money
        self.key = Ed25519PrivateKey.from_private_bytes(
            hashlib.sha256(f"scenario-{seed}".encode()).digest()
        )
        self.n = 0
        self.open: dict[str, tuple[str, str]] = {}  # client order id -> (account, strategy)

    def add(
        self,
        at: float,  # seconds of scenario time, not money
        payload: EventPayload,
        producer: str = PRODUCER,
    ) -> None:
        self.n += 1
        self.inputs.append((at, self.n, payload, producer))

    def order(
        self,
        at: float,  # seconds of scenario time, not money
        account: str,
        side: str,
        qty: Decimal,
        price: Decimal | None,
        tag: str,
    ) -> str:
        self.n += 1
        coid = f"{tag}-{self.n}"
        self.add(
            at,
            OrderIntent(
                producer_id=self.producer,
                strategy_id=tag,
                account=account,
                client_order_id=coid,
                instrument=INSTRUMENT,
                side=Side(side),
                order_type=OrderType.LIMIT if price is not None else OrderType.MARKET,
                quantity=qty,
                limit_price=price,
            ),
        )
        self.open[coid] = (account, tag)
        return coid

    def cancel(self, at: float, coid: str) -> None:  # seconds of scenario time, not money
        account, tag = self.open.pop(coid)
        self.n += 1
        self.add(
            at,
            CancelIntent(
                producer_id=self.producer,
                strategy_id=tag,
                account=account,
                client_order_id=f"x-{coid}"[:64],
                target_client_order_id=coid,
            ),
        )


def _q(value: float, step: str = "0.01") -> Decimal:  # a random draw, not money
    """A random draw (float) converted once to a Decimal on the `step` grid.

    No arithmetic is done on money in float: sizes and prices are Decimal from here on.
    """
    return Decimal(str(value)).quantize(Decimal(step))


def build_scenario(
    seed: int,
    minutes: int,
    t0: datetime | None = None,
    *,
    namespace: str = "",
    dense: bool = False,
) -> Scenario:
    """Deterministic in `seed`: the same seed yields the same inputs, ids and labels.

    `namespace` prefixes owners, accounts and the producer so several scenarios can run
    one after another on one engine; `dense` packs episodes closer (short test runs).
    """
    start = t0 or datetime(2026, 1, 5, 14, 0, tzinfo=UTC)
    ns = namespace
    b = _Builder(seed, start, producer=f"{ns}{PRODUCER}")
    rng = b.rng
    owners: dict[str, list[str]] = {
        **{f"{ns}mm{i}": [f"{ns}MM{i}"] for i in range(3)},
        **{f"{ns}tk{i}": [f"{ns}TK{i}"] for i in range(3)},
        f"{ns}family": [f"{ns}FA1", f"{ns}FA2"],
        **{f"{ns}ab{i}": [f"{ns}AB{i}a", f"{ns}AB{i}b"] for i in range(3)},
        f"{ns}qs": [f"{ns}QS1"],
        f"{ns}mc": [f"{ns}MC1"],
    }
    accounts = [a for accs in owners.values() for a in accs]
    for owner, accs in owners.items():
        bo = BeneficialOwner(owner_id=owner, kind=OwnerKind.NATURAL, name=owner, country="DE")
        for acc in accs:
            b.add(0, AccountOpened(account=acc, beneficial_owner=bo, base_currency="USDC"), "admin")
            b.add(0, KycVerified(account=acc, verified_by="scenario"), "admin")
            for asset, amount in (("USDC", "10000000"), ("BTC", "500")):
                b.add(
                    0,
                    DepositReceived(
                        deposit_id=f"d-{acc}-{asset}",
                        account=acc,
                        asset=asset,
                        amount=Decimal(amount),
                    ),
                    "admin",
                )
    pub = b.key.public_key().public_bytes_raw().hex()
    b.add(0, ProducerRegistered(producer_id=b.producer, public_key=pub, accounts=tuple(accounts),
                                registered_by="admin"), "admin")  # fmt: skip
    limits = RiskLimits(
        max_order_notional=Decimal("10000000"),
        max_position=Decimal("100000"),
        max_open_orders=1000,
        max_orders_per_window=1000,
        # `publish_scenario` runs scenario time ahead of the clock (speed > 1, scenarios
        # back to back): its intents and prices lie minutes after the broker's append
        # times, which FRESHNESS v2 bounds (1 s ahead, 30 s price age by default).
        max_intent_ahead_ms=86_400_000,
        # and its orders stay on its market data's clock (`processor.order_events_at`).
        order_events_ahead_ms=86_400_000,
        max_price_age_seconds=86_400,
    )
    b.add(0, RiskLimitsChanged(scope="*", config_version=1, limits=limits, changed_by="admin"),
          "admin")  # fmt: skip

    seconds = minutes * 60
    close = start + timedelta(seconds=seconds)
    version = int(start.timestamp())  # a later scenario's settings win
    b.add(
        0,
        DetectorConfigChanged(
            detector="order_to_trade",
            config_version=version,
            params=dict(OTR_PARAMS),
            changed_by="scenario",
        ),
        "admin",
    )
    b.add(0, DetectorConfigChanged(
        detector="marking_close", config_version=version, changed_by="scenario",
        params={**MTC_PARAMS, "reference_times": close.time().isoformat(timespec="seconds")},
    ), "admin")  # fmt: skip

    mid = Decimal("100.00")
    mm_orders: dict[str, list[str]] = {
        acc: [] for o, accs in owners.items() if o.startswith(f"{ns}mm") for acc in accs
    }
    episodes: list[Episode] = []
    abusive: list[Episode] = []
    busy_until = 0.0
    patterns = ["SPOOFING", "LAYERING", "WASH_TRADING"]
    update = 0
    for s in range(1, seconds):
        if s % 5 == 0 and s > busy_until + 2:
            mid += CENT * rng.choice([-1, 0, 1])
        bid, ask = mid - CENT, mid + CENT
        depth = _q(rng.uniform(2, 5), "0.1")
        update += 1
        b.add(s, QuoteUpdated(venue="paper", instrument=INSTRUMENT, bid_price=bid, bid_quantity=depth,
                              ask_price=ask, ask_quantity=depth, update_id=update,
                              exchange_ts=start + timedelta(seconds=s)), "marketdata")  # fmt: skip
        if rng.random() < 0.5:
            aggressor = rng.choice(["BUY", "SELL"])
            b.add(s + 0.5, MarketTrade(venue="paper", instrument=INSTRUMENT, trade_id=f"t{s}",
                                       price=ask if aggressor == "BUY" else bid,
                                       quantity=_q(rng.uniform(0.1, 1), "0.001"),
                                       aggressor_side=Side(aggressor),
                                       exchange_ts=start + timedelta(seconds=s + 0.5)),
                  "marketdata")  # fmt: skip
        # market makers: requote every second, cancelling the previous quotes
        for acc, live in mm_orders.items():
            t = s + 0.1 + rng.random() * 0.3
            for coid in live:
                b.cancel(t, coid)
            spread = CENT * rng.randint(2, 6)
            qty = _q(rng.uniform(0.5, 1.5), "0.001")
            mm_orders[acc] = [
                b.order(t + 0.01, acc, "BUY", qty, mid - spread, "mm"),
                b.order(t + 0.01, acc, "SELL", qty, mid + spread, "mm"),
            ]
        # takers and the two-account family (independent, different sizes)
        for acc in (f"{ns}TK0", f"{ns}TK1", f"{ns}TK2", f"{ns}FA1", f"{ns}FA2"):
            if rng.random() < 0.08:
                side = rng.choice(["BUY", "SELL"])
                b.order(s + 0.6, acc, side, _q(rng.uniform(0.1, 1.5), "0.001"), None, "tk")
        # quote stuffing: one account enters and cancels far more orders than anyone
        if s == OTR_AT:
            acc = f"{ns}QS1"
            for i in range(OTR_ORDERS):
                at = s + i / OTR_RATE
                coid = b.order(at, acc, "BUY", Decimal("0.1"), mid - CENT * 50, "qs")
                b.cancel(at + 0.05, coid)
            end = s + OTR_ORDERS / OTR_RATE + 1
            episodes.append(Episode("ORDER_TO_TRADE", f"{ns}qs", [acc], _iso(start, s),
                                    _iso(start, end)))  # fmt: skip
        # marking the close: one owner's market orders bunched in the last minute
        if s == seconds - MTC_LEAD:
            acc = f"{ns}MC1"
            for i in range(MTC_ORDERS):
                side = "BUY"
                b.order(s + i * (MTC_LEAD - 5) / MTC_ORDERS, acc, side,
                        _q(rng.uniform(0.1, 0.3), "0.001"), None, "mc")  # fmt: skip
            episodes.append(Episode("MARKING_THE_CLOSE", f"{ns}mc", [acc],
                                    _iso(start, seconds - 60), _iso(start, seconds)))  # fmt: skip
        # an abusive episode every ~40 s (every ~10 s when dense)
        first, gap, rate = (8, 3, 0.5) if dense else (20, 10, 0.15)
        if s >= first and s > busy_until + gap and s < seconds - 15 and rng.random() < rate:
            pattern = patterns[len(abusive) % 3]
            owner = f"{ns}ab{rng.randrange(3)}"
            a1, a2 = owners[owner]
            if pattern == "SPOOFING":
                big = b.order(s + 0.2, a1, "BUY", depth * 4 + 1, bid - CENT * 3, "sp")
                b.order(s + 1.2, a2, "SELL", _q(rng.uniform(0.2, 0.8), "0.001"), None, "sp")
                b.cancel(s + 1.2 + rng.uniform(0.5, 3), big)
                end = s + 5
            elif pattern == "LAYERING":
                layers = [
                    b.order(s + 0.2 + i * 0.05, a1, "BUY", _q(rng.uniform(0.5, 1.2), "0.001"),
                            bid - CENT * (2 + i), "ly")
                    for i in range(rng.randint(3, 5))
                ]  # fmt: skip
                b.order(s + 1.2, a2, "SELL", _q(rng.uniform(0.2, 0.8), "0.001"), None, "ly")
                for i, coid in enumerate(layers):
                    b.cancel(s + 2 + i * 0.1, coid)
                end = s + 4
            else:
                qty = _q(rng.uniform(0.2, 1.0), "0.001")
                b.order(s + 0.2, a1, "BUY", qty, None, "wt")
                b.order(s + 0.2 + rng.uniform(0.3, 3), a2, "SELL", qty, None, "wt")
                end = s + 5
            abusive.append(Episode(pattern, owner, [a1, a2], _iso(start, s), _iso(start, end)))
            busy_until = end
    b.inputs.sort(key=lambda x: (x[0], x[1]))
    inputs = []
    for i, (at, _n, payload, producer) in enumerate(b.inputs):
        if isinstance(payload, OrderIntent | CancelIntent):
            from engine.auth import sign

            payload = sign(payload, b.key)
        when = start + timedelta(microseconds=round(at * 1_000_000))
        inputs.append(
            new_event(payload, producer=producer, occurred_at=when,
                      event_id=derived_uuid7(when, "scenario", str(seed), str(i)))
        )  # fmt: skip
    labels = sorted([*abusive, *episodes], key=lambda e: (e.start, e.pattern))
    return Scenario(seed=seed, inputs=inputs, labels=labels)


def _iso(t0: datetime, s: float) -> str:  # seconds, not money
    return (t0 + timedelta(seconds=s)).isoformat()


def run_through_engine(scenario: Scenario) -> list[Envelope[Any]]:
    """The engine's pure processor over the inputs: inputs and outputs, in log order."""
    from engine.processor import Context, process
    from engine.state import EngineState

    # No broker here: an intent's stamp stands for its append time (FRESHNESS v2).
    state, ctx = EngineState(), Context(event_time_is_arrival=True)
    out: list[Envelope[Any]] = []
    for event in scenario.inputs:
        out.append(event)
        if event.topic != Topic.SURVEILLANCE_CONFIG:  # for surveillance, not the engine
            out.extend(process(state, event, ctx))
    return out


@dataclass
class Score:
    pattern: str
    episodes: int
    detected: int
    alerts: int
    true_alerts: int

    @property
    def recall(self) -> float:  # a ratio, not money
        return self.detected / self.episodes if self.episodes else 1.0

    @property
    def precision(self) -> float:  # a ratio, not money
        return self.true_alerts / self.alerts if self.alerts else 1.0


def hit(ep: Episode, a: SurveillanceAlert) -> bool:
    """The alert reports this episode: same pattern and owner, windows overlapping (±1 s)."""
    s, e = datetime.fromisoformat(ep.start), datetime.fromisoformat(ep.end)
    return (
        a.pattern == ep.pattern
        and a.beneficial_owner == ep.owner
        and a.window_end >= s - timedelta(seconds=1)
        and a.window_start <= e + timedelta(seconds=1)
    )


def score(labels: list[Episode], alerts: list[SurveillanceAlert]) -> dict[str, Score]:
    """An alert is true if its pattern, owner and window match a labelled episode."""
    out: dict[str, Score] = {}
    for pattern in PATTERNS:
        eps = [ep for ep in labels if ep.pattern == pattern]
        als = [a for a in alerts if a.pattern == pattern]
        out[pattern] = Score(
            pattern,
            len(eps),
            sum(1 for ep in eps if any(hit(ep, a) for a in als)),
            len(als),
            sum(1 for a in als if any(hit(ep, a) for ep in eps)),
        )
    return out


def write_labels(path: Path, scenario: Scenario) -> None:
    path.write_text(json.dumps([asdict(e) for e in scenario.labels], indent=2))


SCENARIO_FLUSH_SECONDS = 30.0
"""How long, at the end, `publish_scenario` waits for the broker to acknowledge what is
still in flight (seconds, not money)."""


@dataclass
class PublishReport(Deliveries):
    """What `publish_scenario` handed to the producer and what the broker acknowledged,
    per kind of input: `intent` (orders.intents), `admin` (admin.commands: accounts,
    deposits, registrations, limits, detector settings) and `marketdata`."""

    @property
    def ok(self) -> bool:
        return self.not_delivered == 0


def input_kind(event: Envelope[Any]) -> tuple[str, Topic]:
    """The kind (`PublishReport`'s key) and topic an input is published as."""
    if event.producer == "admin" or isinstance(event.payload, DepositReceived):
        return "admin", Topic.ADMIN
    topic = Topic(event.topic)
    if topic == Topic.INTENTS:
        return "intent", topic
    if topic == Topic.MARKETDATA:
        return "marketdata", topic
    return "other", topic


def publish_scenario(
    settings: Any,
    *,
    seed: int,
    minutes: int,
    labels_path: Path,
    speed: float = 1.0,  # a speed factor, not money
    namespace: str = "",
    dense: bool = False,
    t0: datetime | None = None,
    # (sent, total, at, end): `at` and `end` in seconds of scenario time
    progress: Callable[[int, int, float, float], None] | None = None,  # not money
) -> PublishReport:
    """Publish the inputs to their topics, paced in (scaled) real time from now.
    `progress(sent, total, at, end)` after each input: how many of them were handed to
    the producer, and where the scenario is and ends (seconds from its first input).

    Event times run from `t0` (default: now) at scenario pace, so with `speed` > 1 they
    run ahead of the wall clock; a scenario published after another must start after
    the other's last event time (`t0`), or its events would be older than those.
    Every input is counted as delivered only when the broker acknowledged it: the
    report says how many were not (an unreachable broker sends nothing).
    """
    from confluent_kafka import Producer

    from deploy.kafka import producer_config
    from schemas import encode
    from schemas.types import utc_now

    if not speed > 0:  # also NaN
        raise ValueError(f"speed must be positive, got {speed}")
    start = max(t0, utc_now()) if t0 is not None else utc_now()
    scenario = build_scenario(seed, minutes, t0=start, namespace=namespace, dense=dense)
    write_labels(labels_path, scenario)
    producer = Producer(producer_config(settings))
    report = PublishReport()
    began = time.monotonic()
    first = scenario.inputs[0].occurred_at
    end = (scenario.inputs[-1].occurred_at - first).total_seconds()
    for n, event in enumerate(scenario.inputs, start=1):
        at = (event.occurred_at - first).total_seconds()
        due = at / speed
        delay = due - (time.monotonic() - began)
        if delay > 0:
            producer.flush(delay)
            time.sleep(max(0.0, due - (time.monotonic() - began)))
        key, value, headers = encode(event)
        kind, topic = input_kind(event)
        report.produce(producer, settings.topic(topic), key, value, headers, kind)
        if progress is not None:
            progress(n, len(scenario.inputs), at, end)
    report.finish(producer, SCENARIO_FLUSH_SECONDS)
    return report
