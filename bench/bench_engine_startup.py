"""Engine start-up (assignment -> ready) vs. the length of its own log, with and without
snapshot slices.

`.venv/bin/python -m bench.bench_engine_startup [--sizes 10000,50000,200000] [--repeats 3]
[--tail 5000]`

One throwaway local stack. The engine's own topics are filled with real engine output:
the pure processor (tests/engine/pure.py) decides signed intents over 64 accounts (market
buys and sells, resting limit orders and their cancels, so the state holds fills, open
orders and a full idempotency record), and every output is published to its topic in
order. For each size the slices of all six partitions are taken `--tail` own records
before the end (as a snapshotter taking one every N records would leave a tail),
published as the snapshotter publishes them; then `EngineWorker.rebuild` (what a worker does on
assignment) is timed with snapshots off (full replay) and on, alternately, `--repeats`
times. Also printed: the cost of capturing a slice and of rendering and encoding it (the
snapshotter's work per slice, in its own process since session 9) and the slices' size.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

if not __package__:  # `python bench/X.py`: import from this checkout, like `-m bench.X`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from confluent_kafka import Producer

from bench.bench_engine import ACCOUNTS
from bench.measure import stack_settings
from deploy.kafka import create_topics, producer_config
from deploy.local import LocalStack
from deploy.settings import Settings
from engine.partitioning import partitioner
from engine.snapshot import capture, encode_slice, render
from engine.snapshot_io import SnapshotWriter
from engine.worker import EngineWorker
from schemas import encode
from schemas.events import RiskLimits, Side
from schemas.topics import Topic

OWN = ("risk.decisions", "orders.lifecycle")


class LogFiller:
    """Decides intents in process and publishes every output where the worker would."""

    def __init__(self, s: Settings) -> None:
        from tests.engine.pure import Harness

        self.s = s
        limits = RiskLimits(
            max_price_age_seconds=10**7,
            max_orders_per_window=10**9,
            max_open_orders=10**9,
            max_position=Decimal("1e12"),
            max_order_notional=Decimal("1e15"),
            max_consumer_lag=10**9,
        )
        self.h = Harness(limits, cash=Decimal("1000000000"), accounts=tuple(ACCOUNTS))
        self.part = partitioner(6)
        self.h.state.partition_of = self.part
        self.producer = Producer(producer_config(s, **{"linger.ms": 20}))  # type: ignore[arg-type]
        self.counts: dict[tuple[str, int], int] = {}
        self.resting: dict[str, str] = {}
        self.own = 0
        self.i = 0
        self.h.quote(Decimal("59999"), Decimal("60001"), Decimal("1e9"))
        self._publish(self.h.inputs)
        self.h.inputs.clear()

    def _publish(self, events: list[Any]) -> None:
        for e in events:
            k, v, hd = encode(e)
            topic = Topic(e.topic)
            self.producer.produce(self.s.topic(topic), key=k, value=v, headers=hd)
            if e.topic in OWN:
                p = self.part(e.key)
                self.counts[(e.topic, p)] = self.counts.get((e.topic, p), 0) + 1
                self.own += 1
            self.producer.poll(0)

    def fill_to(self, own: int) -> None:
        h = self.h
        while self.own < own:
            acc = ACCOUNTS[self.i % len(ACCOUNTS)]
            kind = (self.i // len(ACCOUNTS)) % 4
            if kind == 0:
                outs = h.order(Side.BUY, Decimal("0.01"), account=acc)
            elif kind == 1:
                outs = h.order(Side.BUY, Decimal("0.01"), Decimal("59000"), account=acc)
                self.resting[acc] = f"c{h.n}"
            elif kind == 2 and self.i % 2 == 0:
                outs = h.cancel(self.resting[acc], account=acc)  # half of them stay open
            else:
                outs = h.order(Side.SELL, Decimal("0.01"), account=acc)  # kind 2 (odd), 3
            self._publish(outs + h.inputs)
            h.inputs.clear()
            self.i += 1
        assert self.producer.flush(60) == 0

    def offsets(self, p: int) -> dict[str, int]:
        return {t: self.counts.get((t, p), 0) for t in OWN}


def _rebuild(s: Settings, wid: str, phases: dict[str, float] | None = None) -> tuple[float, int]:
    w = EngineWorker(s, wid=wid)
    try:
        t0 = time.monotonic()
        w.rebuild(range(6))
        if phases is not None:
            phases.update(w.last_rebuild["phases"])
        return time.monotonic() - t0, int(w.last_rebuild["own_records"])
    finally:
        w.consumer.close()
        w.ref_consumer.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,50000,200000", help="own-topic records")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tail", type=int, default=5000, help="own records after the slices")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    s = stack_settings(tmp, postgres_fsync=False, kafka_heap="1g", topic_prefix="bs.")
    stack = LocalStack(s, echo=lambda _m: None)
    stack.up()
    rows = []
    try:
        create_topics(s)
        filler = LogFiller(s)
        writer = SnapshotWriter(s, 6)
        for size in sizes:
            print(f"filling the own topics to {size} records...", file=sys.stderr)
            filler.fill_to(max(size - args.tail, 0))
            take_ms, enc_ms, nbytes = [], [], 0
            for p in range(6):
                t0 = time.perf_counter()
                cap = capture(filler.h.state, p)
                t1 = time.perf_counter()
                sl = render(cap, filler.offsets(p))
                blob, _digest = encode_slice(sl)
                t2 = time.perf_counter()
                take_ms.append((t1 - t0) * 1000)
                enc_ms.append((t2 - t1) * 1000)
                nbytes += len(blob)
                writer.publish(sl)
            writer.flush(30)
            filler.fill_to(size)
            full: list[float] = []
            snap: list[float] = []
            own_full = own_snap = 0
            phases: dict[str, float] = {}
            for r in range(args.repeats):
                dt, own_full = _rebuild(s.with_overrides(engine_snapshot_load=False), f"f{r}")
                full.append(dt)
                dt, own_snap = _rebuild(s, f"s{r}", phases)
                snap.append(dt)
            row: dict[str, Any] = {
                "own": filler.own,
                "full": statistics.median(full),
                "snap": statistics.median(snap),
                "own_full": own_full,
                "own_snap": own_snap,
                "take_ms": max(take_ms),
                "enc_ms": max(enc_ms),
                "bytes": nbytes,
                "decisions": len(filler.h.state.decisions),
                "open_orders": sum(len(a.open_orders) for a in filler.h.state.accounts.values()),
                "runs": (full, snap),
            }
            rows.append(row)
            print(
                f"own records {row['own']:>7}: full replay median {row['full']:.2f}s "
                f"(read {own_full}), from slices median {row['snap']:.2f}s (read {own_snap}; "
                f"reference {phases['ref']:.2f}s, slices {phases['slices']:.2f}s, tail "
                f"{phases['own']:.2f}s), "
                f"ratio {row['full'] / row['snap']:.1f}x; slices {nbytes / 1e6:.2f} MB "
                f"(state: {row['decisions']} decisions, {row['open_orders']} open orders); "
                f"per partition max capture {row['take_ms']:.0f} ms, render+encode "
                f"{row['enc_ms']:.0f} ms (snapshotter)"
                f"; runs full {[round(x, 2) for x in full]} slices {[round(x, 2) for x in snap]}",
                flush=True,
            )
        writer.close()
    finally:
        stack.down()
        shutil.rmtree(tmp, ignore_errors=True)  # the throwaway stack's data
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
