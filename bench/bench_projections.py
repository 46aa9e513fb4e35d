"""Projection benchmarks on a throwaway local stack (real Kafka, real PostgreSQL).

1. Rebuild throughput: N synthetic events (default 1,000,000) produced to Kafka, then
   `tradetape rebuild NAME` for each projection as a subprocess; events/s and the
   rebuild process's peak RSS. Every event is read by every projection on its topics.
2. Incremental lag: all projectors running (one thread each, as `tradetape run
   projections`), events offered at 5,000/s; lag = commit time - Kafka CreateTime,
   per record, p50/p99.

    .venv/bin/python -m bench.bench_projections [--events 1000000] [--lag-seconds 20]
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from deploy.kafka import create_topics, producer_config
from deploy.local import LocalStack
from deploy.settings import Settings
from projections.core import PROJECTIONS
from projections.projector import Projector
from projections.store import BatchResult, RawRecord
from projections.synthetic import generate
from schemas import encode
from schemas.topics import Topic

ROOT = Path(__file__).resolve().parents[1]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(s: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        TRADETAPE_KAFKA_PORT=str(s.kafka_port),
        TRADETAPE_KAFKA_CONTROLLER_PORT=str(s.kafka_controller_port),
        TRADETAPE_POSTGRES_PORT=str(s.postgres_port),
        TRADETAPE_POSTGRES_DB=s.postgres_db,
        TRADETAPE_DATA_DIR=str(s.data_dir),
        TRADETAPE_TOPIC_PREFIX=s.topic_prefix,
    )
    return env


def produce_all(s: Settings, n: int, seed: int = 1) -> int:
    producer = Producer(
        producer_config(s, transactional_id=None, **{"linger.ms": 20, "batch.size": 1_000_000})
    )
    made = 0
    chunk = 50_000
    while made < n:
        for ev in generate(seed + made, min(chunk, n - made)):
            key, value, headers = encode(ev)
            while True:
                try:
                    producer.produce(s.topic(Topic(ev.topic)), value, key, headers=headers)
                    break
                except BufferError:
                    producer.poll(0.05)
            made += 1
        producer.poll(0)
    assert producer.flush(120) == 0
    return made


def bench_rebuild(s: Settings, names: list[str]) -> list[dict[str, Any]]:
    out = []
    for name in names:
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "deploy.cli_entry", "rebuild", name],
            cwd=ROOT,
            env=_env(s),
            capture_output=True,
            text=True,
            check=True,
        )
        wall = time.monotonic() - started
        rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        summary = [line for line in proc.stderr.splitlines() if line.startswith(f"{name}:")][-1]
        events = int(summary.split(":")[1].split()[0])
        seconds = float(summary.split(" in ")[1].split("s")[0])
        out.append(
            {"name": name, "events": events, "seconds": seconds, "wall": wall,
             "rate": events / seconds, "peak_rss_mb": rss_mb}
        )  # fmt: skip
        print(
            f"rebuild {name:12} {events:>9,} events {seconds:7.1f}s "
            f"{events / seconds:>9,.0f} ev/s  peak RSS (max so far) {rss_mb:6.0f} MB",
            flush=True,
        )
    return out


class TimedProjector(Projector):
    """Records commit time - CreateTime for every record it applies."""

    lags: list[float]

    def poll(self, timeout: float) -> list[RawRecord]:
        assert self.consumer is not None
        msgs = self.consumer.consume(self.batch_size, timeout)
        self._ts = [m.timestamp()[1] / 1000 for m in msgs if m.error() is None]
        return [
            RawRecord(m.topic() or "", m.partition() or 0, m.offset() or 0, m.value(), m.headers())  # type: ignore[arg-type]
            for m in msgs
            if m.error() is None
        ]

    def apply(self, records: Any) -> BatchResult:
        res = super().apply(records)
        now = time.time()
        self.lags.extend(now - t for t in self._ts)
        return res


def bench_lag(s: Settings, seconds: float, rate: int) -> dict[str, float]:
    stop = threading.Event()
    projectors = [TimedProjector(s, p, batch_size=5000) for p in PROJECTIONS.values()]
    for p in projectors:
        p.lags = []
        p.open()
        p.catch_up()
        p.lags.clear()

    def loop(p: TimedProjector) -> None:
        while not stop.is_set():
            p.step(0.05)

    threads = [threading.Thread(target=loop, args=(p,), daemon=True) for p in projectors]
    for t in threads:
        t.start()
    events = generate(99, int(seconds * rate))
    encoded = [(s.topic(Topic(e.topic)), *encode(e)) for e in events]
    producer = Producer(producer_config(s, transactional_id=None, **{"linger.ms": 1}))
    started = time.monotonic()
    for i, (topic, key, value, headers) in enumerate(encoded):
        due = started + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        producer.produce(topic, value, key, headers=headers)
        producer.poll(0)
    producer.flush(30)
    offered = len(encoded) / (time.monotonic() - started)
    time.sleep(2.0)
    stop.set()
    for t in threads:
        t.join(10)
    for p in projectors:
        p.close()
    lags = sorted(x for p in projectors for x in p.lags)
    q = statistics.quantiles(lags, n=100)
    return {
        "offered": offered,
        "records": len(lags),
        "p50_ms": q[49] * 1000,
        "p99_ms": q[98] * 1000,
        "max_ms": lags[-1] * 1000,
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--lag-seconds", type=float, default=20.0)
    ap.add_argument("--lag-rate", type=int, default=5000)
    ap.add_argument("--skip-rebuild", action="store_true")
    ap.add_argument("--projections", default=",".join(PROJECTIONS), help="comma-separated")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tt-bench-proj-") as tmp:
        s = Settings(
            data_dir=Path(tmp),
            kafka_port=_port(),
            kafka_controller_port=_port(),
            postgres_port=_port(),
            kafka_heap="1g",
        )
        stack = LocalStack(s, echo=lambda _m: None)
        stack.up()
        try:
            create_topics(s)
            if not args.skip_rebuild:
                t = time.monotonic()
                n = produce_all(s, args.events)
                print(f"produced {n:,} events in {time.monotonic() - t:.1f}s", flush=True)
                bench_rebuild(s, args.projections.split(","))
            lag_settings = s.with_overrides(topic_prefix="lag.")
            create_topics(lag_settings)
            r = bench_lag(lag_settings, args.lag_seconds, args.lag_rate)
            print(
                f"incremental lag at {r['offered']:,.0f} events/s offered over {r['records']:,} "
                f"projected records: p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
                f"max {r['max_ms']:.1f} ms",
                flush=True,
            )
        finally:
            stack.down()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
