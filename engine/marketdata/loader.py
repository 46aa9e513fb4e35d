"""Publishing market data to Kafka: replayed captures (with dead letters) and simulations.

Every record is counted as delivered only when the broker acknowledged it (a delivery
report without an error); the reports say how many were not, so a load into an
unreachable broker or a missing topic is an error, not a success.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from deploy.deadletter import kept_value
from deploy.kafka import producer_config
from deploy.settings import Settings
from engine.marketdata.binance import CaptureReadError, parse_file
from engine.marketdata.simulate import simulate
from schemas import encode, new_event
from schemas.events import DeadLetter, MarketTrade, QuoteUpdated
from schemas.topics import Topic

PRODUCER = "marketdata-loader"
FLUSH_SECONDS = 60.0
"""How long, at the end, to wait for the broker to acknowledge what is still in flight."""
INTERRUPT_FLUSH_SECONDS = 10.0
"""The same after a Ctrl-C: shorter, since the operator wants out (a second Ctrl-C
leaves at once)."""
MAX_PACING_SLEEP_SECONDS = 5.0
"""The longest one pause of a paced replay (`--speed X`): a longer gap between two
records (a capture stopped for hours and resumed) is cut to this, with a progress line,
and the schedule of the records after it moves up by what was cut."""


class Pacer:
    """Paces records by their own time: a record `t` seconds after the first is due
    `t / speed` seconds after the replay started, less the gaps cut so far.

    One pause lasts at most `max_sleep` seconds; a longer one is cut to it and `say` is
    told so. Reads the clock and sleeps through this module's `time` at each call."""

    def __init__(
        self,
        speed: float,  # a speed factor, not money
        *,
        max_sleep: float = MAX_PACING_SLEEP_SECONDS,  # seconds, not money
        say: Callable[[str], None] | None = None,
    ) -> None:
        if not speed > 0 or not max_sleep > 0:
            raise ValueError("speed and max_sleep must be positive")
        self.speed = speed
        self.max_sleep = max_sleep
        self.say = say or (lambda line: print(line, file=sys.stderr, flush=True))
        self.first: float | None = None  # seconds, not money
        self.wall0 = 0.0
        self.cut = 0.0
        """Wall seconds of gaps skipped so far."""
        self.gaps_cut = 0

    def wait(
        self,
        at: float,  # the record's time in seconds, not money
        where: str,
        idle: Callable[[], object] = lambda: None,
    ) -> None:
        """Sleep until the record at `at` (seconds, its own clock) is due. `where` names
        the record in the progress line; `idle` is called before sleeping."""
        if self.first is None:
            self.first, self.wall0 = at, time.monotonic()
            return
        due = (at - self.first) / self.speed - self.cut
        lag = due - (time.monotonic() - self.wall0)
        if lag <= 0:
            return
        if lag > self.max_sleep:
            self.cut += lag - self.max_sleep
            self.gaps_cut += 1
            self.say(
                f"pacing: {where}: a gap of {lag * self.speed:,.1f} s in the records "
                f"({lag:,.1f} s at speed {self.speed:g}); waiting {self.max_sleep:g} s "
                f"instead (at most {self.max_sleep:g} s per pause)"
            )
            lag = self.max_sleep
        idle()
        time.sleep(lag)


@dataclass
class Deliveries:
    """What was handed to the producer and what the broker acknowledged, per kind."""

    sent: dict[str, int] = field(default_factory=dict)
    delivered: dict[str, int] = field(default_factory=dict)
    first_error: str | None = None

    def on_delivery(self, kind: str) -> Callable[[KafkaError | None, Message], None]:
        def report(err: KafkaError | None, _msg: Message) -> None:
            if err is None:
                self.delivered[kind] = self.delivered.get(kind, 0) + 1
            elif self.first_error is None:
                self.first_error = str(err)

        return report

    def send(self, producer: Producer, settings: Settings, payload: Any, kind: str) -> None:
        event = new_event(payload, producer=PRODUCER)
        key, value, headers = encode(event)
        self.produce(producer, settings.topic(Topic(event.topic)), key, value, headers, kind)

    def produce(
        self, producer: Producer, topic: str, key: Any, value: bytes, headers: Any, kind: str
    ) -> None:
        """Hand one encoded record to the producer, counted as `kind` (waiting while its
        queue is full; a record it refuses outright is counted, not raised)."""
        self.sent[kind] = self.sent.get(kind, 0) + 1
        while True:
            try:
                producer.produce(
                    topic, key=key, value=value, headers=headers, on_delivery=self.on_delivery(kind)
                )
                break
            except BufferError:
                producer.poll(0.05)
            except KafkaException as exc:  # refused before sending: counted, not raised
                if self.first_error is None:
                    self.first_error = str(exc)  # one argument: its KafkaError{...} text
                break
        producer.poll(0)

    def finish(
        self,
        producer: Producer,
        timeout: float = FLUSH_SECONDS,  # seconds, not money
    ) -> None:
        remaining = producer.flush(timeout)
        if remaining and self.first_error is None:
            self.first_error = (
                f"{remaining} records not acknowledged by the broker within {timeout:g} s"
            )

    @property
    def not_delivered(self) -> int:
        return sum(self.sent.values()) - sum(self.delivered.values())


@dataclass
class LoadReport:
    published: int
    """Market-data events the broker acknowledged."""
    dead_letters: int
    """Dead letters (one per rejected line) the broker acknowledged."""
    counts: dict[str, int]
    """The parser's counts per kind of line (trade, bookTicker, skipped:..., rejected)."""
    not_delivered: int = 0
    """Records handed to the producer that the broker did not acknowledge."""
    delivery_error: str | None = None
    read_error: str | None = None
    """Why the file could not be read to its end (`... file corrupt after line N ...`)."""
    first_rejection: str | None = None
    """`line N: why` of the first line the parser rejected."""
    interrupted_after: int | None = None
    """Ctrl-C: the last line read before it (the records before were flushed)."""

    @property
    def nothing_usable(self) -> bool:
        """Lines were rejected and none was a market-data record: the wrong file (a
        README, a CSV), not a capture with a few bad lines. Before, such a load printed
        `"published": 0` and exited 0."""
        return self.counts.get("rejected", 0) > 0 and not any(
            n for kind, n in self.counts.items() if kind in ("trade", "bookTicker")
        )

    @property
    def ok(self) -> bool:
        return (
            self.not_delivered == 0
            and self.read_error is None
            and not self.nothing_usable
            and self.interrupted_after is None
        )


@dataclass
class PublishReport:
    published: int
    not_delivered: int = 0
    delivery_error: str | None = None

    @property
    def ok(self) -> bool:
        return self.not_delivered == 0


def load_capture(
    settings: Settings,
    path: Path,
    *,
    speed: float | None = None,  # a speed factor, not money
    instrument: str | None = None,
    limit: int | None = None,
    progress: Callable[[int, int, float], None] | None = None,  # (line, sent, at s), not money
) -> LoadReport:
    """Replay a capture. `speed` None = as fast as possible; 1.0 = real time, each pause
    at most `MAX_PACING_SLEEP_SECONDS` (a longer gap is cut, with a line on stderr).
    `progress(line, sent, at)` after each record handed to the producer: its line, the
    records sent so far and its time in the capture (seconds after the first record's).

    Events are stamped with the replay time (`occurred_at`), keeping the capture's own
    time in `exchange_ts`, so the engine judges freshness against when prices arrived.
    A line the parser rejects becomes a `DeadLetter` (its first 128 KiB, full length and
    SHA-256, and the reason). A file that cannot be read on (a truncated gzip) ends the
    load: what was read is still delivered, and the report's `read_error` says where.
    """
    producer = Producer(producer_config(settings))
    out = Deliveries()
    parser, records = parse_file(path, instrument=instrument, limit=limit)
    read_error: str | None = None
    first_rejection: str | None = None
    interrupted_after: int | None = None
    line_no = 0
    pacer = Pacer(speed) if speed else None
    sent = 0
    first_ns: int | None = None
    try:
        for rec in records:
            line_no = rec.line_no
            if rec.error is not None:
                if first_rejection is None:
                    first_rejection = f"line {rec.line_no}: {rec.error[:200]}"
                kept = kept_value(rec.raw.encode("utf-8", "replace"))
                if rec.raw_sha256 is not None:  # `raw` is only the line's beginning
                    kept.update(
                        original_value_bytes=rec.raw_bytes,
                        original_value_sha256=rec.raw_sha256,
                        original_truncated=True,
                    )
                dead = DeadLetter(
                    source_topic=f"file:{path.name}"[:249],
                    source_offset=rec.line_no,
                    **kept,
                    error_type="InvalidMarketData",
                    error=rec.error[:4000],
                    stage="loader",
                )
                out.send(producer, settings, dead, "dead_letter")
                continue
            if rec.payload is None:
                continue
            if pacer is not None and rec.recv_ns is not None:
                pacer.wait(rec.recv_ns / 1e9, f"line {rec.line_no}", lambda: producer.poll(0))
            out.send(producer, settings, rec.payload, "marketdata")
            if progress is not None:
                sent += 1
                if first_ns is None and rec.recv_ns is not None:
                    first_ns = rec.recv_ns
                at = (rec.recv_ns - first_ns) / 1e9 if rec.recv_ns and first_ns else 0.0
                progress(rec.line_no, sent, at)
    except CaptureReadError as exc:
        read_error = str(exc)
    except KeyboardInterrupt:
        # Ctrl-C in a long replay: what was handed to the producer is still delivered
        # and counted (before, it was dropped with the process, and nothing was said).
        interrupted_after = line_no
    out.finish(
        producer, INTERRUPT_FLUSH_SECONDS if interrupted_after is not None else FLUSH_SECONDS
    )
    return LoadReport(
        published=out.delivered.get("marketdata", 0),
        dead_letters=out.delivered.get("dead_letter", 0),
        counts=dict(parser.counts),
        not_delivered=out.not_delivered,
        delivery_error=out.first_error,
        read_error=read_error,
        first_rejection=first_rejection,
        interrupted_after=interrupted_after,
    )


def publish_payloads(
    settings: Settings,
    payloads: Iterable[MarketTrade | QuoteUpdated],
    *,
    speed: float | None = None,  # a speed factor, not money
    progress: Callable[[int, float], None] | None = None,  # (sent, at s), not money
) -> PublishReport:
    """Publish `payloads` (paced by their exchange time at `speed`, or at once);
    `progress(sent, at)` after each: how many were sent, and the stream's time then
    (seconds after the first payload's)."""
    producer = Producer(producer_config(settings))
    out = Deliveries()
    pacer = Pacer(speed) if speed else None
    first: float | None = None  # seconds, not money
    for n, p in enumerate(payloads, start=1):
        at = p.exchange_ts.timestamp()
        if pacer is not None:
            pacer.wait(at, f"record {n}", lambda: producer.poll(0))
        out.send(producer, settings, p, "marketdata")
        if progress is not None:
            first = at if first is None else first
            progress(n, at - first)
    out.finish(producer)
    return PublishReport(
        published=out.delivered.get("marketdata", 0),
        not_delivered=out.not_delivered,
        delivery_error=out.first_error,
    )


def run_simulation(
    settings: Settings,
    instrument: str,
    minutes: float,  # minutes, not money
    seed: int,
    *,
    start: datetime,
    speed: float | None = None,  # a speed factor, not money
    progress: Callable[[int, float], None] | None = None,  # (sent, at s), not money
) -> PublishReport:
    """Publish `simulate(instrument, minutes, seed, start)`: the same arguments give the
    same payloads (the envelopes' ids and `occurred_at` are new on each run)."""
    return publish_payloads(
        settings, simulate(instrument, minutes, seed, start), speed=speed, progress=progress
    )
