"""Publishing market data to Kafka: replayed captures (with dead letters) and simulations."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import Producer

from deploy.kafka import producer_config
from deploy.settings import Settings
from engine.marketdata.binance import parse_file
from engine.marketdata.simulate import simulate
from schemas import encode, new_event
from schemas.events import DeadLetter, MarketTrade, QuoteUpdated
from schemas.topics import Topic

PRODUCER = "marketdata-loader"


@dataclass
class LoadReport:
    published: int
    dead_letters: int
    counts: dict[str, int]


def _send(producer: Producer, settings: Settings, payload: object) -> None:
    event = new_event(payload, producer=PRODUCER)  # type: ignore[type-var]
    key, value, headers = encode(event)
    while True:
        try:
            producer.produce(
                settings.topic(Topic(event.topic)), key=key, value=value, headers=headers
            )
            break
        except BufferError:
            producer.poll(0.05)
    producer.poll(0)


def load_capture(
    settings: Settings,
    path: Path,
    *,
    speed: float | None = None,
    instrument: str | None = None,
    limit: int | None = None,
) -> LoadReport:
    """Replay a capture. `speed` None = as fast as possible; 1.0 = real time.

    Events are stamped with the replay time (`occurred_at`), keeping the capture's own
    time in `exchange_ts`, so the engine judges freshness against when prices arrived.
    """
    producer = Producer(producer_config(settings))
    parser, records = parse_file(path, instrument=instrument, limit=limit)
    published = dead = 0
    first_ns: int | None = None
    wall0 = time.monotonic()
    for rec in records:
        if rec.error is not None:
            dead += 1
            _send(
                producer,
                settings,
                DeadLetter(
                    source_topic=f"file:{path.name}",
                    source_offset=rec.line_no,
                    original_value_b64=base64.b64encode(rec.raw.encode()).decode(),
                    error_type="InvalidMarketData",
                    error=rec.error,
                    stage="loader",
                ),
            )
            continue
        if rec.payload is None:
            continue
        if speed and rec.recv_ns is not None:
            first_ns = first_ns if first_ns is not None else rec.recv_ns
            due = (rec.recv_ns - first_ns) / 1e9 / speed
            lag = due - (time.monotonic() - wall0)
            if lag > 0:
                producer.poll(0)
                time.sleep(lag)
        _send(producer, settings, rec.payload)
        published += 1
    producer.flush(60)
    return LoadReport(published, dead, dict(parser.counts))


def publish_payloads(
    settings: Settings,
    payloads: Iterable[MarketTrade | QuoteUpdated],
    *,
    speed: float | None = None,
) -> int:
    producer = Producer(producer_config(settings))
    n = 0
    first: datetime | None = None
    wall0 = time.monotonic()
    for p in payloads:
        if speed:
            first = first or p.exchange_ts
            lag = (p.exchange_ts - first).total_seconds() / speed - (time.monotonic() - wall0)
            if lag > 0:
                time.sleep(lag)
        _send(producer, settings, p)
        n += 1
    producer.flush(60)
    return n


def run_simulation(
    settings: Settings, instrument: str, minutes: float, seed: int, *, speed: float | None = None
) -> int:
    return publish_payloads(
        settings, simulate(instrument, minutes, seed, datetime.now(UTC)), speed=speed
    )
