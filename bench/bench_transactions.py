"""What one small Kafka transaction costs on this machine, and in which order to make it.

The engine's latency at a steady 1,000 intents/s is a few transactions back to back: each
produces ~20 records over a dozen partitions, sends the input offsets and commits. This
bench makes exactly that loop with nothing else in the process (no Python work between
the calls), against one throwaway KRaft node (`deploy.local`), with the engine's
producer settings (`engine.worker.TXN_PRODUCER_TUNING`), in two orders, alternating:

- `produce-first` (what the engine does): begin, produce, `send_offsets_to_transaction`,
  commit. librdkafka registers the partitions (AddPartitionsToTxn) at the first produce,
  concurrently with AddOffsetsToTxn; the coordinator answers one of them
  CONCURRENT_TRANSACTIONS (also while the previous transaction's markers are still being
  written), and librdkafka retries AddPartitionsToTxn after a fixed 20 ms.
- `offsets-first`: begin, `send_offsets_to_transaction`, produce, commit: nothing runs
  concurrently on the coordinator, at the price of one more sequential round trip.

    .venv/bin/python -m bench.bench_transactions [--transactions 500] [--rounds 4]
        [--records 20] [--partitions 6] [--orders produce-first] [--debug]
        [--variant 'LABEL|JVM_OPTS|BROKER_PROPS' ...] [--busy [--no-reports]]
        [--switch-interval-ms MS ...]

Each `--variant` is a broker configuration (`TRADETAPE_KAFKA_JVM_OPTS`,
`TRADETAPE_KAFKA_BROKER_PROPS`): one node per variant, all running, the rounds alternating
between them, so a broker setting is compared on the same machine at the same time.
It prints, per round, the transaction's p50/p90/p99/max and its two halves (up to the
commit call; the commit), and at the end each combination's medians over the rounds. `--debug` passes `debug=eos,protocol` to librdkafka (its log on
stderr) to see the retries and each request's round trip. `--busy` runs the transactions
on a thread of their own, each record with a Python delivery report, while the main
thread runs pure-Python work, as the engine's committer and main threads do; with
`--switch-interval-ms` it shows what the interpreter lock costs each side
(docs/benchmarks.md, *Session 19: the interpreter lock between the worker's threads*).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

if not __package__:  # `python bench/X.py`: import from this checkout, like `-m bench.X`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

from bench.measure import percentile, stack_settings
from deploy.kafka import admin_client, consumer_config, producer_config
from deploy.local.kafka_node import KafkaNode
from deploy.settings import Settings
from engine.worker import TXN_PRODUCER_TUNING

T = TypeVar("T")
ORDERS = ("produce-first", "offsets-first")
VALUE = b"y" * 500
"""About the size of an encoded decision or order event."""


def run_round(
    producer: Producer,
    group: object,
    order: str,
    *,
    n: int,
    records: int,
    partitions: int,
    gap: float = 0.0,
    reports: bool = False,
) -> dict[str, list[float]]:
    """Seconds per transaction (and its halves) for `n` transactions made in `order`,
    `gap` seconds apart (not money): the time a worker spends deciding the next batch.
    `reports`: a Python delivery callback on every record, as the engine's `_transact`."""
    out: dict[str, list[float]] = {"txn": [], "to-commit": [], "commit": []}
    delivered = [0]

    def on_delivery(err: object, msg: object) -> None:
        delivered[0] += 1

    extra: dict[str, Any] = {"on_delivery": on_delivery} if reports else {}
    for k in range(n):
        if gap:
            time.sleep(gap)
        t0 = time.monotonic()
        producer.begin_transaction()
        offsets = [TopicPartition("in", p, k + 1) for p in range(partitions)]
        if order == "offsets-first":
            producer.send_offsets_to_transaction(offsets, group, 30)
        for j in range(records):
            topic = "out-a" if j % 2 else "out-b"
            producer.produce(
                topic, key=str(j).encode(), value=VALUE, partition=j % partitions, **extra
            )
        producer.poll(0)
        if order == "produce-first":
            producer.send_offsets_to_transaction(offsets, group, 30)
        t1 = time.monotonic()
        producer.commit_transaction(30)
        t2 = time.monotonic()
        out["txn"].append(t2 - t0)
        out["to-commit"].append(t1 - t0)
        out["commit"].append(t2 - t1)
    return out


def parse_variant(spec: str) -> tuple[str, str, str]:
    """`LABEL|JVM_OPTS|BROKER_PROPS` (the last two may be empty)."""
    parts = spec.split("|")
    if len(parts) != 3 or not parts[0]:
        raise argparse.ArgumentTypeError(f"{spec!r}: expected LABEL|JVM_OPTS|BROKER_PROPS")
    return parts[0], parts[1], parts[2]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--transactions", type=int, default=500, help="per round")
    ap.add_argument("--rounds", type=int, default=4, help="rounds of each combination")
    ap.add_argument(
        "--skip-rounds",
        type=int,
        default=1,
        help="rounds left out of the summary's medians (the broker's warm-up)",
    )
    ap.add_argument("--records", type=int, default=20, help="records per transaction")
    ap.add_argument("--partitions", type=int, default=6, help="per topic (two output topics)")
    ap.add_argument("--debug", action="store_true", help="librdkafka eos,protocol debug log")
    ap.add_argument(
        "--orders", default=",".join(ORDERS), help=f"comma-separated, of {', '.join(ORDERS)}"
    )
    ap.add_argument(
        "--retry-backoff-ms",
        type=int,
        nargs="*",
        default=[],
        help="also run each order with these `retry.backoff.ms` (the engine uses "
        f"{TXN_PRODUCER_TUNING['retry.backoff.ms']})",
    )
    ap.add_argument(
        "--gap-ms",
        type=float,
        nargs="*",
        default=[0.0],
        help="pause between one commit and the next transaction (each value a combination):"
        " whether a transaction that starts later escapes the previous one's markers",
    )
    ap.add_argument(
        "--variant",
        type=parse_variant,
        action="append",
        default=[],
        metavar="LABEL|JVM_OPTS|BROKER_PROPS",
        help="a broker configuration (`kafka_jvm_opts`, `kafka_broker_props`); one node per"
        " variant, all running, rounds alternating between them (default: one node as"
        " the product starts it)",
    )
    ap.add_argument(
        "--busy",
        action="store_true",
        help="run the transactions on a thread of their own while the main thread runs "
        "pure-Python work, as the engine's committer thread commits while its main thread "
        "decides the next batch; each record with a Python delivery callback as the "
        "engine's; prints the main thread's work done per second too",
    )
    ap.add_argument(
        "--no-reports",
        dest="reports",
        action="store_false",
        help="with --busy: no Python delivery callback on the records",
    )
    ap.add_argument(
        "--switch-interval-ms",
        type=float,
        nargs="*",
        default=[],
        help="also run each combination with these `sys.setswitchinterval` values (ms; "
        "CPython's default is 5): how long a thread waiting for the interpreter lock "
        "waits for a busy one to let go of it",
    )
    args = ap.parse_args()
    variants = args.variant or [("default", "", "")]
    orders = [o for o in args.orders.split(",") if o]
    if any(o not in ORDERS for o in orders):
        ap.error(f"--orders: each of {', '.join(ORDERS)}")
    backoffs = [TXN_PRODUCER_TUNING["retry.backoff.ms"], *args.retry_backoff_ms]
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-txn-")))
        nodes = {}
        for label, jvm, props in variants:
            s = stack_settings(tmp / label, kafka_jvm_opts=jvm, kafka_broker_props=props)
            node = KafkaNode(s)
            stack.callback(node.stop)
            node.start(echo=lambda _line: None)
            consumer = setup(s, args.partitions)
            stack.callback(consumer.close)
            nodes[label] = (s, consumer)
        print(
            f"{args.transactions} transactions per round, {args.records} records each;"
            f" variants: {', '.join(v[0] for v in variants)}",
            flush=True,
        )
        default_switch = sys.getswitchinterval() * 1000  # ms, not money
        switches = [default_switch, *args.switch_interval_ms]
        combos = [
            (v[0], o, b, g, sw)
            for v in variants
            for o in orders
            for b in backoffs
            for g in args.gap_ms
            for sw in switches
        ]
        results: dict[tuple[str, str, int, float, float], list[dict[str, float]]] = {
            c: [] for c in combos
        }
        extra = {"debug": "eos,protocol"} if args.debug else {}
        n = 0
        for r in range(args.rounds):
            for label, order, backoff, gap_ms, switch_ms in combos if r % 2 == 0 else combos[::-1]:
                sys.setswitchinterval(switch_ms / 1000)
                n += 1
                s, consumer = nodes[label]
                consumer.poll(0)  # a member past max.poll.interval.ms would leave the group
                group = consumer.consumer_group_metadata()
                tuning = {**TXN_PRODUCER_TUNING, "retry.backoff.ms": backoff}
                tuning["retry.backoff.max.ms"] = max(backoff, tuning["retry.backoff.max.ms"])
                producer = Producer(
                    producer_config(s, transactional_id=f"bench-txn-{n}", **tuning, **extra)
                )
                producer.init_transactions(30)

                def one_round(
                    producer: Producer = producer,
                    group: object = group,
                    order: str = order,
                    gap_ms: float = gap_ms,
                ) -> dict[str, list[float]]:
                    return run_round(
                        producer,
                        group,
                        order,
                        n=args.transactions,
                        records=args.records,
                        partitions=args.partitions,
                        gap=gap_ms / 1000,  # seconds, not money
                        reports=args.busy and args.reports,
                    )

                if args.busy:
                    got, work = busy_while(one_round)
                else:
                    got, work = one_round(), 0.0

                def ms(key: str, q: float, got: dict[str, list[float]] = got) -> float:
                    return percentile(got[key], q) * 1000  # milliseconds, not money

                results[(label, order, backoff, gap_ms, switch_ms)].append(
                    {
                        "p50": ms("txn", 0.5),
                        "p90": ms("txn", 0.9),
                        "p99": ms("txn", 0.99),
                        "work": work,
                    }
                )
                print(
                    f"round {r + 1} {label} {order:13s} backoff {backoff} ms gap {gap_ms:g} ms"
                    f" switch {switch_ms:g} ms:"
                    " transaction"
                    f" p50 {ms('txn', 0.5):.1f} p90 {ms('txn', 0.9):.1f}"
                    f" p99 {ms('txn', 0.99):.1f} max {max(got['txn']) * 1000:.1f} ms"
                    f" | up to the commit call p50 {ms('to-commit', 0.5):.1f}"
                    f" p99 {ms('to-commit', 0.99):.1f}"
                    f" | commit p50 {ms('commit', 0.5):.1f} p99 {ms('commit', 0.99):.1f}"
                    + (f" | main thread {work:.0f} units/s" if args.busy else "")
                    + f" | load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
                producer.flush(10)
                del producer  # its connections closed now, not when the nodes stop
        print(f"medians over rounds {args.skip_rounds + 1}-{args.rounds} (ms):")
        for combo, rounds in results.items():
            kept = rounds[args.skip_rounds :] or rounds
            med = {k: statistics.median(x[k] for x in kept) for k in ("p50", "p90", "p99", "work")}
            label, order, backoff, gap_ms, switch_ms = combo
            print(
                f"  {label} {order} backoff {backoff} gap {gap_ms:g} switch {switch_ms:g}:"
                f" p50 {med['p50']:.1f} p90 {med['p90']:.1f} p99 {med['p99']:.1f}"
                + (f" main thread {med['work']:.0f} units/s" if args.busy else "")
                + f" (p99 per round: {' '.join(format(x['p99'], '.1f') for x in kept)})"
            )
    return 0


def busy_while(run: Callable[[], T]) -> tuple[T, float]:
    """`run()` on a thread of its own while this thread does pure-Python work (units of
    `sum(range(2000))`) until it returns; the result and the units per second."""
    done = threading.Event()
    box: list[T] = []
    failed: list[BaseException] = []

    def target() -> None:
        try:
            box.append(run())
        except BaseException as exc:  # reported on the main thread
            failed.append(exc)
        finally:
            done.set()

    worker = threading.Thread(target=target, name="committer")
    t0 = time.monotonic()
    worker.start()
    units = 0
    while not done.is_set():
        sum(range(2000))
        units += 1
    elapsed = time.monotonic() - t0
    worker.join()
    if failed:
        raise failed[0]
    return box[0], units / elapsed


def setup(s: Settings, partitions: int) -> Consumer:
    """The topics, a few input records and a consumer in the group the offsets are sent for
    (it stays a member while the transactions run)."""
    admin = admin_client(s)
    topics = [NewTopic(t, partitions, 1) for t in ("in", "out-a", "out-b")]
    for fut in admin.create_topics(topics).values():
        fut.result()
    feeder = Producer(producer_config(s))
    for i in range(partitions * 10):
        feeder.produce("in", key=str(i).encode(), value=b"x")
    feeder.flush(30)
    consumer = Consumer(consumer_config(s, group_id="bench-txn"))
    consumer.subscribe(["in"])
    while not consumer.assignment():
        consumer.poll(0.1)
    return consumer


if __name__ == "__main__":
    raise SystemExit(main())
