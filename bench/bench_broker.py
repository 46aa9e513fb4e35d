"""What the local broker costs per record on this machine: CPU and produce latency.

The engine's and the projections' latency targets share two cores with the broker, so
its share bounds them. One throwaway KRaft node (`deploy.local`); a producer paced at
`--rate` records/s (idempotent, lz4, `--linger-ms`) into a 6-partition topic, and
`--consumers` read_committed readers with latency-tuned fetches (`fetch.min.bytes` 1,
`fetch.wait.max.ms` 10), each in its own group. After an untimed warm-up (JIT, heap,
idempotence id) it measures the broker process's CPU (user+sys from /proc) over the
timed phase and each record's produce-to-ack latency.

    .venv/bin/python -m bench.bench_broker [--rate 5000] [--consumers 0,3] [--linger-ms 1,5]
        [--jvm-opts "-XX:MaxGCPauseMillis=20 ..."] [--seconds 20]

Each combination starts its own broker, so they are comparable within one run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if not __package__:  # `python bench/X.py`: import from this checkout, like `-m bench.X`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

from bench.measure import cpu_seconds, percentile, stack_settings
from deploy.kafka import admin_client, consumer_config, producer_config
from deploy.local.kafka_node import KafkaNode

TOPIC = "bench.broker"
PARTITIONS = 6
VALUE = b"x" * 550
"""About the size of an encoded lifecycle event."""


def _acked(acks: list[float], sent: float) -> Callable[[Any, Any], None]:
    def done(_err: Any, _msg: Any) -> None:
        if _err is None:
            acks.append(time.monotonic() - sent)

    return done


def measure(
    *, rate: int, consumers: int, linger_ms: float, jvm_opts: str, seconds: float, warmup: float
) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-broker-") as tmp:
        s = stack_settings(Path(tmp), kafka_jvm_opts=jvm_opts)
        node = KafkaNode(s)
        node.start(echo=lambda _line: None)
        try:
            pid = int(node.pid_file.read_text())
            admin = admin_client(s)
            for fut in admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)]).values():
                fut.result()
            stop = threading.Event()

            def read(i: int) -> None:
                c = Consumer(
                    consumer_config(
                        s, group_id=f"reader-{i}", **{"fetch.wait.max.ms": 10, "fetch.min.bytes": 1}
                    )
                )
                c.assign([TopicPartition(TOPIC, p, 0) for p in range(PARTITIONS)])
                while not stop.is_set():
                    c.consume(10000, 0.1)
                c.close()

            readers = [threading.Thread(target=read, args=(i,)) for i in range(consumers)]
            for t in readers:
                t.start()
            extra: dict[str, Any] = {"linger.ms": linger_ms}
            producer = Producer(producer_config(s, **extra))
            acks: list[float] = []

            def offer(duration: float, timed: bool) -> None:
                t0 = time.monotonic()
                for i in range(int(duration * rate)):
                    due = t0 + i / rate
                    while (wait := due - time.monotonic()) > 0:
                        time.sleep(min(wait, 0.001))
                    producer.produce(
                        TOPIC,
                        key=str(i % 64).encode(),
                        value=VALUE,
                        on_delivery=_acked(acks, time.monotonic()) if timed else None,
                    )
                    producer.poll(0)
                producer.flush(30)

            offer(warmup, False)
            cpu0, wall0 = cpu_seconds(pid), time.monotonic()
            offer(seconds, True)
            cpu1, wall1 = cpu_seconds(pid), time.monotonic()
            stop.set()
            for t in readers:
                t.join()
            cores = (cpu1 - cpu0) / (wall1 - wall0)
            return {
                "cores": cores,
                "us_per_record": cores / rate * 1e6,
                "ack_p50_ms": percentile(acks, 0.5) * 1000,
                "ack_p99_ms": percentile(acks, 0.99) * 1000,
                "load": os.getloadavg()[0],
            }
        finally:
            node.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=int, default=5000, help="records/s offered")
    ap.add_argument("--consumers", default="0,3", help="comma-separated reader counts to try")
    ap.add_argument("--linger-ms", default="1", help="comma-separated producer lingers to try")
    ap.add_argument(
        "--jvm-opts",
        action="append",
        default=None,
        help="extra broker JVM flags; repeat to compare (default: none)",
    )
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--warmup", type=float, default=20.0)
    args = ap.parse_args()
    print(f"load before: {os.getloadavg()[0]:.1f}", flush=True)
    print("| JVM opts | readers | linger ms | broker cores | µs/record | ack p50 / p99 ms | load |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for opts in args.jvm_opts or [""]:
        for consumers in (int(c) for c in args.consumers.split(",")):
            for linger in (float(x) for x in args.linger_ms.split(",")):
                r = measure(
                    rate=args.rate,
                    consumers=consumers,
                    linger_ms=linger,
                    jvm_opts=opts,
                    seconds=args.seconds,
                    warmup=args.warmup,
                )
                print(
                    f"| {opts or '(default)'} | {consumers} | {linger:g} | {r['cores']:.2f} | "
                    f"{r['us_per_record']:.0f} | {r['ack_p50_ms']:.1f} / {r['ack_p99_ms']:.1f} | "
                    f"{r['load']:.1f} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
