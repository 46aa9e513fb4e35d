"""Surveillance benchmarks: detector throughput, and event-to-alert latency on a real broker.

    .venv/bin/python -m bench.bench_streams [--latency-episodes 60] [--skip-latency]

Latency: from producing the completing event (the spoof's cancel) to the alert being on
`surveillance.alerts` (the alert record's broker timestamp), through `tradetape run streams`.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

if not __package__:  # `python bench/X.py`: import from this checkout, like `-m bench.X`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def throughput(seed: int = 1, minutes: int = 5) -> tuple[int, float]:
    from streams.detectors import all_detectors
    from streams.scenario import build_scenario, run_through_engine
    from streams.surveillance_state import Surveillance

    events = run_through_engine(build_scenario(seed, minutes))
    s = Surveillance(all_detectors())
    started = time.perf_counter()
    s.process_batch(events)
    elapsed = time.perf_counter() - started
    return len(events), len(events) / elapsed


def table_fold(seed: int = 1, minutes: int = 3, flush_every: int = 60) -> tuple[float, float]:
    """µs per event folding through the app's table adapters (JSON like faust's changelog):
    every write dumped (the old way) vs write-behind flushed every `flush_every` events."""
    import json

    from streams.app import ModelTable, TableStore
    from streams.detectors import all_detectors
    from streams.scenario import build_scenario, run_through_engine
    from streams.surveillance_state import OwnerBook, QuoteRec, Surveillance

    class JsonTable(dict[str, Any]):
        def __setitem__(self, key: str, value: Any) -> None:
            super().__setitem__(key, json.loads(json.dumps(value)))

    events = run_through_engine(build_scenario(seed, minutes))
    out = []
    for behind in (False, True):
        books = ModelTable(JsonTable(), OwnerBook, write_behind=behind)
        quotes = ModelTable(JsonTable(), QuoteRec, write_behind=behind)
        s = Surveillance(all_detectors(), TableStore(JsonTable(), quotes, JsonTable(), books))
        started = time.perf_counter()
        for i, e in enumerate(events):
            s.process(e)
            if i % flush_every == 0:
                books.flush()
                quotes.flush()
        out.append((time.perf_counter() - started) / len(events) * 1e6)
    return out[0], out[1]


def scenario_scores(seeds: tuple[int, ...] = (1, 2, 3), minutes: int = 3) -> dict[str, Any]:
    """Precision/recall per pattern through the engine's pure processor, summed over seeds."""
    from streams.detectors import all_detectors
    from streams.scenario import PATTERNS, build_scenario, run_through_engine, score
    from streams.surveillance_state import Surveillance

    totals = {p: [0, 0, 0, 0] for p in PATTERNS}
    for seed in seeds:
        sc = build_scenario(seed, minutes)
        alerts = [a.payload for a in Surveillance(all_detectors()).process_batch(
            run_through_engine(sc))]  # fmt: skip
        for p, r in score(sc.labels, alerts).items():
            for i, v in enumerate((r.episodes, r.detected, r.alerts, r.true_alerts)):
                totals[p][i] += v
    return totals


def latency(episodes: int) -> list[float]:
    from confluent_kafka import Consumer, Producer

    from bench.measure import stack_settings
    from deploy.kafka import consumer_config, create_topics, producer_config
    from deploy.local.stack import LocalStack
    from schemas import encode
    from schemas.topics import Topic
    from schemas.types import utc_now
    from streams.synthetic import Tape
    from tests.streams.helpers import spawn, stop

    root = Path(tempfile.mkdtemp(prefix="bench-streams-"))
    settings = stack_settings(
        root / "stack", postgres_fsync=False, kafka_heap="512m", topic_prefix="bench."
    )
    stack = LocalStack(settings, echo=lambda _m: None)
    stack.up()
    proc = None
    try:
        create_topics(settings)
        proc = spawn(settings, root / "streams", "run", "streams")
        conf: dict[str, Any] = {**producer_config(settings), "linger.ms": 0}
        producer = Producer(conf)

        def send(events: list[Any]) -> None:
            for e in events:
                key, value, headers = encode(e)
                producer.produce(settings.topic(Topic(e.topic)), key=key, value=value,
                                 headers=headers)  # fmt: skip
            producer.flush(10)

        consumer = Consumer(consumer_config(settings, group_id="bench"))
        consumer.subscribe([settings.topic(Topic.SURVEILLANCE_ALERTS)])
        warm = Tape(seed="warm", t0=utc_now())
        for i in range(4):
            warm.open_account(f"A{i}", f"o{i // 2}", at=0)
        send(warm.events)
        time.sleep(20)  # the worker joins its group and recovers its tables
        sent_at: dict[str, float] = {}
        for n in range(episodes):
            t = Tape(seed=f"ep{n}", t0=utc_now())
            acc, other = ("A0", "A1") if n % 2 == 0 else ("A2", "A3")
            t.quote(0, "100.00", "100.10", "2", "2")
            t.submit(0.01, acc, f"big{n}", "BUY", "10", "99.95")
            t.submit(0.02, other, f"s{n}", "SELL", "1", "100.10")
            t.fill(0.03, f"s{n}")
            send(t.events)
            time.sleep(0.2)
            cancel = Tape(seed=f"c{n}", t0=t.t0)
            cancel.orders, cancel.filled = t.orders, t.filled
            cancel.cancel(timedelta(seconds=0.21).total_seconds(), f"big{n}")
            before = time.time()
            send(cancel.events)
            sent_at[f"big{n}"] = before
            # steady background flow, as live markets have, keeps the watermark moving
            for k in range(3):
                time.sleep(0.1)
                q = Tape(seed=f"q{n}-{k}", t0=utc_now())
                q.quote(0, "100.00", "100.10", "2", "2")
                send(q.events)
        out: list[float] = []
        deadline = time.time() + 30
        from schemas import decode

        while len(out) < episodes and time.time() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            alert = decode(msg.value(), msg.headers()).payload
            _kind, ts_ms = msg.timestamp()
            out.append(ts_ms / 1000 - sent_at[alert.evidence["order_id"]])
        consumer.close()
        return out
    finally:
        if proc is not None:
            stop(proc)
        stack.down()
        shutil.rmtree(root, ignore_errors=True)  # the throwaway stack's data


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency-episodes", type=int, default=60)
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args()
    n, rate = throughput()
    print(f"detector throughput: {n} engine events (5-min scenario), {rate:,.0f} events/s")
    every, behind = table_fold()
    print(
        f"fold through table adapters: {every:,.0f} µs/event dumping every write, "
        f"{behind:,.0f} µs/event write-behind (ratio {every / behind:.1f}x)"
    )
    for pattern, (eps, det, n_alerts, true) in scenario_scores().items():
        print(
            f"pure path seeds 1-3 {pattern}: {det}/{eps} episodes found, "
            f"{true}/{n_alerts} alerts true"
        )
    if not args.skip_latency:
        lat = sorted(latency(args.latency_episodes))
        if not lat:
            print("latency: no alerts arrived", file=sys.stderr)
            return 1
        p50 = statistics.median(lat)
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        print(
            f"event-to-alert latency over {len(lat)} alerts: p50 {p50 * 1000:.0f} ms, "
            f"p99 {p99 * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
