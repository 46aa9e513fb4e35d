"""Engine benchmark: throughput vs. a plain transactional pass-through, latency, memory.

`.venv/bin/python -m bench.bench_engine [--intents 20000] [--seconds 10] [--soak-minutes 10]
[--workers 1]`; `--pure N` only measures the in-process cost per intent (no broker).

One throwaway local stack; the engine runs as real `tradetape run engine` subprocesses
(`--workers` of them, one consumer group) next to a `tradetape run snapshotter`, as
`tradetape run` runs them (`--no-snapshotter` to leave it out).
(a) a backlog of signed intents, workers started, decisions committed per second;
(b) the same records through a bare consume-transform-produce loop with the same
transaction settings, batching and number of processes (the transport limit); then paced
publishing at 1k and 5k intents/s with latency from the intent's `occurred_at` to its
decision being visible to a read_committed consumer; worker RSS sampled throughout and
through a soak at 500 intents/s; at the end, with the engine stopped, the pass-through's
own latency at the same paced rates (the transport's floor on this machine). The engine
also overlaps each batch's commit with processing the next batch; the pass-through has
no processing to overlap.

All intents go through one publishing producer, warm before anything is timed (see
`Publisher`). For each paced phase and the soak the bench prints the worker's mean time
per transaction in each stage, from the worker's per-second report. Set
`TRADETAPE_ENGINE_GC_FREEZE=0` in the environment to run the worker without its
garbage-collector policy (`engine.heap`).
"""

from __future__ import annotations

import argparse
import calendar
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

if not __package__:  # `python bench/X.py`: import from this checkout, like `-m bench.X`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from confluent_kafka import Consumer, Producer, TopicPartition

from bench.measure import cpu_seconds, percentile, stack_settings
from deploy.kafka import consumer_config, create_topics, partitions_of, producer_config
from deploy.local import LocalStack
from deploy.settings import Settings
from engine import auth
from engine.partitioning import partition_for
from engine.worker import TXN_PRODUCER_TUNING
from schemas import Envelope, encode, new_event
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
    RiskLimits,
    RiskLimitsChanged,
    Side,
)
from schemas.topics import Topic

ROOT = Path(__file__).resolve().parents[1]
PARTITIONS = 6
"""Partitions of the intents topic in the catalogue (the bench stack keeps the default)."""


def _balanced_accounts(n: int, partitions: int = PARTITIONS) -> list[str]:
    """n account ids spread evenly over the partitions, so N workers share the load evenly
    (64 sequential ids would land 9/4/6/12/21/12 on six partitions)."""
    quota = -(-n // partitions)
    per: dict[int, int] = {}
    out: list[str] = []
    i = 0
    while len(out) < n:
        name = f"B{i:03d}"
        part = partition_for(name, partitions)
        if per.get(part, 0) < quota:
            per[part] = per.get(part, 0) + 1
            out.append(name)
        i += 1
    return out


ACCOUNTS = _balanced_accounts(64)
TEMPLATE_TIME = datetime(2000, 1, 1, tzinfo=UTC)
"""The intents' `occurred_at` before it is patched at send time (`--pure` keeps it, and
quotes at it: FRESHNESS v2 bounds the price age both ways)."""
BENCH_LIMITS = RiskLimits(
    max_price_age_seconds=86400,
    max_orders_per_window=10**9,
    max_open_orders=10**9,
    max_position=Decimal("1e12"),
    max_order_notional=Decimal("1e15"),
    max_consumer_lag=10**9,
)
"""Limits no bench intent reaches: the bench measures the engine's work, not its refusals
(the stack's run and `--pure` both use them)."""
PLACEHOLDER = b"2000-01-01T00:00:00.000000Z"


def _env(s: Settings, wid: str = "bench") -> dict[str, str]:
    return s.child_env(
        TRADETAPE_ENGINE_WORKER_ID=wid,
        # INFO: the worker's per-second report of where its time went (`stage_breakdown`).
        TRADETAPE_LOG_LEVEL=os.environ.get("BENCH_ENGINE_LOG_LEVEL", "INFO"),
        TRADETAPE_ENGINE_REPORT_SECONDS="1",
    )


_REPORT = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) INFO tradetape\.engine worker \S+: "
    r"(\{.*?\}), lag \d+, busy (\{.*\})$"
)
STAGES = ("poll", "refs+lag", "control", "process", "commit-wait", "produce", "offsets", "end")
"""`control` (the control topics read to their end, `engine.control`) is part of `refs+lag`."""


def worker_reports(path: Path) -> list[tuple[float, dict[str, int], dict[str, float]]]:
    """The worker's periodic reports in its log: (epoch s, cumulative counters, cumulative
    busy seconds per stage)."""
    import ast
    from datetime import datetime

    out = []
    for line in path.read_text(errors="replace").splitlines():
        m = _REPORT.match(line)
        if m:
            at = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").timestamp()
            out.append(
                (
                    at + int(m.group(2)) / 1000,
                    ast.literal_eval(m.group(3)),
                    ast.literal_eval(m.group(4)),
                )
            )
    return out


def stage_breakdown(logs: list[Path], t0: float, t1: float) -> dict[str, float]:
    """Mean milliseconds per transaction in each worker stage between wall times t0 and t1
    (from the last report before t0 to the first one after t1; summed over workers), plus
    `intents/txn`. Main thread: poll, refs+lag (incl. decoding and control), process, commit-wait;
    committer thread: produce, offsets (send_offsets_to_transaction), end (commit).

    A worker that went idle before t1 logs no report after it (it reports only when its
    counters change): its last report then stands for t1 (the soak's window, whose last
    decisions come well before the window closes, printed 0 transactions before)."""
    busy = dict.fromkeys(STAGES, 0.0)
    txns = intents = 0
    for path in logs:
        reps = worker_reports(path)
        before = [r for r in reps if r[0] <= t0]
        if not before or reps[-1] is before[-1]:
            continue
        after = [r for r in reps if r[0] >= t1]
        a, b = before[-1], (after[0] if after else reps[-1])
        txns += b[1]["transactions"] - a[1]["transactions"]
        intents += b[1]["intents"] - a[1]["intents"]
        for k in STAGES:
            busy[k] += b[2].get(k, 0.0) - a[2].get(k, 0.0)
    out = {k: v * 1000 / max(1, txns) for k, v in busy.items()}
    out["intents/txn"] = intents / max(1, txns)
    out["transactions"] = float(txns)
    return out


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
            limits=BENCH_LIMITS,
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


def templates(
    key: Any, n: int, tag: str, *, cancels: bool = False
) -> list[tuple[bytes, bytes, list[Any]]]:
    """Pre-signed, pre-encoded intents whose occurred_at is patched at send time.

    Alternating resting limit buys and sells the accounts cannot cover (rejected:
    INSUFFICIENT_BALANCE), so open orders accumulate; with `cancels`, every buy is followed
    by a cancel of it instead — the soak's steady state, where orders come and go.
    """
    out = []
    at = TEMPLATE_TIME
    for i in range(n):
        acc = ACCOUNTS[(i // 2 if cancels else i) % len(ACCOUNTS)]
        payload: OrderIntent | CancelIntent
        if cancels and i % 2:
            payload = CancelIntent(
                producer_id="bench",
                strategy_id="s",
                account=acc,
                client_order_id=f"{tag}-{i}",
                target_client_order_id=f"{tag}-{i - 1}",
            )
        else:
            buy = cancels or i % 2 == 1
            payload = OrderIntent(
                producer_id="bench",
                strategy_id="s",
                account=acc,
                client_order_id=f"{tag}-{i}",
                instrument="BTC/USDC",
                side=Side.BUY if buy else Side.SELL,
                order_type=OrderType.LIMIT,
                quantity=Decimal("0.001"),
                limit_price=Decimal("59990") if buy else Decimal("60011"),
            )
        k, v, h = encode(new_event(auth.sign(payload, key), producer="bench", occurred_at=at))
        assert v.count(PLACEHOLDER) == 1
        out.append((k, v, h))
    return out


_OCCURRED = re.compile(rb'"occurred_at":"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{6})Z"')
_COID = re.compile(rb'"client_order_id":"([^"-]*)-')
_FULL_COID = re.compile(rb'"client_order_id":"([^"]*)"')


def _tag_and_time(value: bytes) -> tuple[str, float]:
    """The run tag of a decision's client order id and its `occurred_at` (epoch seconds).

    A regex over the bytes instead of `json.loads` of ~2 KB per decision: the clock runs in
    the bench process, next to the publisher, and must not steal CPU from what it measures.
    The first `occurred_at` is the envelope's (pydantic writes fields in declaration order).
    """
    t = _OCCURRED.search(value)
    c = _COID.search(value)
    if t is None:
        return "", time.time()
    y, mo, d, h, mi, sec, us = (int(x) for x in t.groups())
    at = calendar.timegm((y, mo, d, h, mi, sec)) + us / 1e6
    return (c.group(1).decode() if c else ""), at


_OUTCOME = re.compile(rb'"outcome":"([A-Z_]+)"')
_REASON = re.compile(rb'"reason_codes":\["([A-Z_]+)"')


def _outcome(value: bytes) -> str:
    """`APPROVED`, `REJECTED:<first reason code>`, or `other` (e.g. an IntentRejected)."""
    m = _OUTCOME.search(value)
    if m is None:
        return "other"
    r = _REASON.search(value)
    return m.group(1).decode() + (f":{r.group(1).decode()}" if r else "")


FIRST_COMMIT_WINDOW = 0.05
"""Seconds after the first decision within which decisions count as the first batch."""


class DecisionClock(threading.Thread):
    """Reads decisions (read_committed); latency = seen - decision.occurred_at (= intent's)."""

    def __init__(
        self,
        s: Settings,
        topic: Topic = Topic.DECISIONS,
        *,
        reverse: bool = False,
        trace: bool = False,
    ) -> None:
        super().__init__(daemon=True)
        self.reverse = reverse
        self.trace: list[tuple[int, float, float, str]] | None = [] if trace else None
        """With `trace`: every decision as (partition, seen at, occurred_at, client order
        id), for per-partition gaps and duplicates (bench_engine_takeover)."""
        # A latency-tuned reader: with the default fetch.wait.max.ms (500 ms) a
        # read_committed fetch can sit at the broker until the wait expires even though the
        # transaction committing the decision has completed, adding up to 500 ms that are
        # the reader's, not the engine's.
        extra: dict[str, Any] = {"fetch.wait.max.ms": 5}
        self.c = Consumer(consumer_config(s, group_id=f"clock-{uuid.uuid4().hex}", **extra))
        name = s.topic(topic)
        self.c.assign([TopicPartition(name, p, 0) for p in partitions_of(self.c, s, topic)])
        self.count = 0
        self.first = self.last = 0.0
        self.first_count = 0
        """Decisions seen with the first one: the first committed batch, whose processing
        time lies before `first` (so the rate leaves them out)."""
        self.lat: dict[str, list[float]] = {}
        self.at: dict[str, list[float]] = {}
        """Each latency's `occurred_at` (epoch seconds), in `lat`'s order: when it was."""
        self.outcomes: dict[str, int] = {}
        """Decisions by outcome and first reason code (rejections are cheaper than
        approvals, so a throughput figure means little without its mix)."""
        self.stop = False

    def run(self) -> None:
        while not self.stop:
            # Whatever is there now; else wait for the first record (no batching delay,
            # which would add up to the timeout to every measured latency).
            msgs = self.c.consume(10000, 0)
            if not msgs:
                first = self.c.poll(0.1)
                msgs = [first] if first is not None else []
            for m in msgs:
                if m.error():
                    continue
                now = time.time()
                self.count += 1
                if not self.first:
                    self.first = now
                if now - self.first < FIRST_COMMIT_WINDOW:
                    self.first_count = self.count
                self.last = now
                value = m.value() or b""
                tag, at = _tag_and_time(value[::-1] if self.reverse else value)
                self.lat.setdefault(tag, []).append(now - at)
                self.at.setdefault(tag, []).append(at)
                if self.trace is not None:
                    c = _FULL_COID.search(value)
                    coid = c.group(1).decode() if c else ""
                    self.trace.append((m.partition() or 0, now, at, coid))
                if not self.reverse:
                    kind = _outcome(value)
                    self.outcomes[kind] = self.outcomes.get(kind, 0) + 1
        self.c.close()


class Publisher:
    """The bench's one publishing producer, created once and warm before anything is timed.

    A freshly created idempotent producer holds its first records until InitProducerId and
    the topic metadata are back: measured, ~0.5 s in which acks took 365-520 ms, none later.
    A producer per paced phase (as in session 3) stamped those records' `occurred_at` at
    once, so 3-5 % of each phase carried the producer's start-up and the p99 was that.
    Here the untimed backlog publish (or `warm`) makes the round trips first and every
    paced phase reuses the same producer.
    """

    def __init__(self, s: Settings) -> None:
        extra: dict[str, Any] = {"linger.ms": 1}
        self.p = Producer(producer_config(s, **extra))
        self.topic = s.topic(Topic.INTENTS)
        self.warm = False

    def publish(self, tpl: list[tuple[bytes, bytes, list[Any]]], rate: float | None) -> float:
        """Publish `tpl` (paced at `rate`/s, else as fast as possible), stamping each
        record's `occurred_at` as it is handed to the producer; returns the seconds taken."""
        if rate and not self.warm:
            raise RuntimeError("a timed publish needs a warm producer: publish untimed first")
        p = self.p
        topic = self.topic
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
        if p.flush(60) == 0 and tpl:
            self.warm = True
        return time.monotonic() - t0


def _passthrough_worker(
    s: Settings, group: str, batch: int, q: Any, ready: Any = None, stop: Any = None
) -> None:
    """One pass-through process: the engine's transport without the engine.

    Same consumer group mechanics, transaction settings, poll strategy and batch cap as
    `engine.worker`: take what is there (or wait for one record), produce one output per
    input, send the offsets, commit. Stops 3 s after the last record.
    """
    out_topic = s.topic(Topic.ENGINE_SNAPSHOTS)
    c = Consumer(consumer_config(s, group_id=group))
    c.subscribe([s.topic(Topic.INTENTS)])
    p = Producer(
        producer_config(
            s,
            transactional_id=f"pt-{uuid.uuid4().hex}",
            **TXN_PRODUCER_TUNING,
        )
    )
    p.init_transactions(30)
    if ready is not None:
        # Paced mode: say when the partitions are assigned, so nothing published after
        # that waits for a group join.
        while not c.assignment():
            m = c.poll(0.1)
            if m is not None:
                raise RuntimeError("paced pass-through got a record before it was ready")
        ready.set()
    done = 0
    first = last = 0.0
    cpu0 = 0.0
    idle_since = time.monotonic()
    while True:
        msgs = c.consume(batch, 0)
        if not msgs:
            m = c.poll(0.05)
            msgs = [m] if m is not None else []
        msgs = [m for m in msgs if not m.error()]
        if not msgs:
            if stop is not None:
                if stop.is_set():
                    break
                continue
            if done and time.monotonic() - idle_since > 3:
                break
            if not done and time.monotonic() - idle_since > 120:
                break
            continue
        if not first:
            first, cpu0 = time.time(), time.process_time()
        p.begin_transaction()
        for m in msgs:
            while True:
                try:
                    p.produce(
                        out_topic, key=m.key(), value=(m.value() or b"")[::-1], headers=m.headers()
                    )
                    break
                except BufferError:
                    p.poll(0.01)
        p.poll(0)
        done += len(msgs)
        p.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata())
        p.commit_transaction(30)
        last = time.time()
        idle_since = time.monotonic()
    cpu = time.process_time() - cpu0
    c.close()
    q.put((done, first, last, cpu))


def passthrough(s: Settings, n: int, workers: int = 1, batch: int = 2000) -> tuple[float, float]:
    """The transport limit, with as many processes as engine workers."""
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    group = f"pt-{uuid.uuid4().hex}"
    procs = [
        ctx.Process(target=_passthrough_worker, args=(s, group, batch, q)) for _ in range(workers)
    ]
    for pr in procs:
        pr.start()
    results = [q.get(timeout=600) for _ in procs]
    for pr in procs:
        pr.join(30)
    total = sum(r[0] for r in results)
    t0 = min(r[1] for r in results if r[0])
    t1 = max(r[2] for r in results if r[0])
    if total < n:
        print(f"pass-through saw {total} of {n} records", file=sys.stderr)
    cpu_us = sum(r[3] for r in results) / max(1, total) * 1e6
    return float(total / max(1e-9, t1 - t0)), cpu_us


def passthrough_latency(
    s: Settings, pub: Publisher, key: Any, rates: list[int], seconds: int
) -> dict[int, tuple[int, int, float, float, float]]:
    """The transport's own latency at the paced rates: the same clock (intent
    `occurred_at` -> output visible to a read_committed consumer) over one pass-through
    process. Run after the engine workers stopped; the group starts at the current end of
    the intents topic."""
    from confluent_kafka.admin import AdminClient

    from deploy.kafka import end_offsets

    group = f"ptl-{uuid.uuid4().hex}"
    intents = s.topic(Topic.INTENTS)
    admin = AdminClient({"bootstrap.servers": s.bootstrap})
    c = Consumer(consumer_config(s, group_id=group))
    tps = [TopicPartition(intents, p) for p in partitions_of(c, s, Topic.INTENTS)]
    ends = end_offsets(admin, tps)
    c.commit(
        offsets=[TopicPartition(intents, p, ends[(intents, p)]) for (_t, p) in ends],
        asynchronous=False,
    )
    c.close()
    clock = DecisionClock(s, Topic.ENGINE_SNAPSHOTS, reverse=True)
    clock.start()
    ctx = multiprocessing.get_context("spawn")
    q, ready, stop = ctx.Queue(), ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_passthrough_worker, args=(s, group, 2000, q, ready, stop))
    proc.start()
    tpls = {rate: templates(key, rate * seconds, f"pt{rate}") for rate in rates}
    if not ready.wait(120):
        raise RuntimeError("paced pass-through never got its partitions")
    out = {}
    for rate in rates:
        tag = f"pt{rate}"
        tpl = tpls[rate]
        pub.publish(tpl, rate)
        end = time.monotonic() + 120
        while len(clock.lat.get(tag, [])) < len(tpl) and time.monotonic() < end:
            time.sleep(0.5)
        lat = clock.lat.get(tag, [])
        out[rate] = (len(lat), len(tpl), pct(lat, 0.5), pct(lat, 0.99), pct(lat, 0.999))
        print(f"pass-through {rate}/s: {out[rate]}", file=sys.stderr)
    stop.set()
    q.get(timeout=120)
    proc.join(30)
    clock.stop = True
    return out


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    for w in workers:
        if w.poll() is None:
            w.send_signal(signal.SIGTERM)
    for w in workers:
        try:
            w.wait(30)
        except subprocess.TimeoutExpired:
            w.kill()


def by_second(lat: list[float], at: list[float]) -> str:
    """p50 and max latency (ms) of each second offered: when a tail happened (a stall
    at one moment, or spread over the phase)."""
    if not at:
        return "by second: -"
    t0 = min(at)
    secs: dict[int, list[float]] = {}
    for x, a in zip(lat, at, strict=True):
        secs.setdefault(int(a - t0), []).append(x)
    return "p50/max by second offered (ms): " + " ".join(
        f"{pct(v, 0.5):.0f}/{max(v) * 1000:.0f}" for _k, v in sorted(secs.items())
    )


def pct(xs: list[float], q: float) -> float:
    """The `q` quantile of latencies in seconds, in ms."""
    return percentile(xs, q) * 1000


DECISIONS = ("RiskDecision", "IntentRejected")


_CALLGRIND_TOGGLE = (
    "#include <valgrind/callgrind.h>\nvoid toggle(void) { CALLGRIND_TOGGLE_COLLECT; }\n"
)


def callgrind_toggle() -> Any:
    """A function switching callgrind's collection on or off (a no-op outside valgrind),
    compiled from valgrind's header with the system C compiler (`--callgrind-process`)."""
    import ctypes

    out = Path(tempfile.mkdtemp(prefix="tt-cgtoggle-"))
    (out / "t.c").write_text(_CALLGRIND_TOGGLE)
    subprocess.run(
        ["cc", "-O2", "-shared", "-fPIC", "-o", str(out / "t.so"), str(out / "t.c")], check=True
    )
    return ctypes.CDLL(str(out / "t.so")).toggle


def pure(n: int, *, heap_policy: bool = True, callgrind_process: bool = False) -> None:
    """In-process cost per intent, stage by stage, as the worker runs them (no broker);
    with the worker's garbage-collector policy (`engine.heap`) unless `heap_policy` is off.

    `callgrind_process`: under `valgrind --tool=callgrind --collect-atstart=no`, count the
    process stage's instructions only (the machine's load does not move them; seconds on
    a shared machine do). Instructions per intent = callgrind's "Collected" / n."""
    from engine.codec import decode_record
    from engine.heap import HeapPolicy
    from engine.processor import Context, preverify, process
    from engine.state import EngineState
    from engine.venue.paper import PaperVenue
    from tests.engine.pure import Harness

    h = Harness(BENCH_LIMITS, cash=Decimal("1000000000"), accounts=tuple(ACCOUNTS))
    h.now = TEMPLATE_TIME  # the intents' time: a fresh price for them
    h.quote(Decimal("60000"), Decimal("60001"), Decimal("1e9"))
    key = h.key
    h.state.producers["bench"] = h.state.producers["p1"]
    recs = templates(key, n, "p")
    assert isinstance(h.state, EngineState) and isinstance(h.ctx, Context)
    assert isinstance(h.ctx.venues["paper"], PaperVenue)
    t_dec = t_ver = t_proc = t_enc = 0.0
    outputs = 0
    clock = time.process_time
    chunk = 200  # a worker batch under load (the worker takes up to 2,000 at a time)
    heap = HeapPolicy()
    if heap_policy:
        heap.install()
        heap.after_rebuild()
    toggle = callgrind_toggle() if callgrind_process else (lambda: None)
    for start in range(0, n, chunk):
        t0 = clock()
        events = [decode_record(v, hd) for _k, v, hd in recs[start : start + chunk]]
        t1 = clock()
        preverify(h.state, events, h.ctx)
        t2 = clock()
        toggle()
        outs = [process(h.state, ev, h.ctx) for ev in events]
        toggle()
        h.ctx.preverified.clear()
        t3 = clock()
        for out in outs:
            outputs += len(out)
            for o in out:
                if isinstance(o, Envelope) and o.event_type not in DECISIONS:
                    encode(o)  # decisions: the worker reuses the bytes the state recorded
        t4 = clock()
        if heap_policy:
            heap.after_batch()
        t_dec, t_ver, t_proc, t_enc = (
            t_dec + t1 - t0,
            t_ver + t2 - t1,
            t_proc + t3 - t2,
            t_enc + t4 - t3,
        )
    heap.release()
    us = 1e6 / n
    total = t_dec + t_ver + t_proc + t_enc
    print(
        f"in-process, {n} intents ({outputs / n:.1f} outputs each), CPU us/intent: "
        f"decode {t_dec * us:.0f}, batched signature check {t_ver * us:.0f}, "
        f"process {t_proc * us:.0f}, encode {t_enc * us:.0f}, "
        f"total {total * us:.0f} (= {n / total:.0f}/s on one core; "
        f"heap policy {'on' if heap_policy else 'off'})"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--intents", type=int, default=20000, help="backlog size for (a) and (b)")
    ap.add_argument("--seconds", type=int, default=10, help="per paced rate")
    ap.add_argument("--soak-minutes", type=float, default=10.0)
    ap.add_argument(
        "--warmup-seconds",
        type=int,
        default=30,
        help="untimed 500/s (buy + cancel) before the paced phases: a broker just started "
        "runs its transaction paths cold (JIT) for the first minute",
    )
    ap.add_argument("--workers", type=int, default=1, help="engine worker processes")
    ap.add_argument(
        "--no-snapshotter",
        dest="snapshotter",
        action="store_false",
        help="run no snapshotter next to the workers (`tradetape run` runs one)",
    )
    ap.add_argument(
        "--snapshot-every",
        type=int,
        default=20_000,
        help="the snapshotter's TRADETAPE_ENGINE_SNAPSHOT_EVERY (own records per slice)",
    )
    ap.add_argument(
        "--keep-logs", type=Path, default=None, help="copy the workers' logs into this folder"
    )
    ap.add_argument("--rates", default="1000,5000", help="paced rates for latency, per second")
    ap.add_argument("--pure", type=int, default=0, help="only the in-process cost, N intents")
    ap.add_argument(
        "--no-heap-policy",
        dest="heap_policy",
        action="store_false",
        help="--pure without the worker's garbage-collector policy (engine.heap), to compare",
    )
    ap.add_argument(
        "--callgrind-process",
        action="store_true",
        help="--pure under `valgrind --tool=callgrind --collect-atstart=no`: collect inside "
        "the process stage only (instructions per intent = Collected / N; needs cc and "
        "valgrind's headers)",
    )
    ap.add_argument(
        "--no-transport-latency",
        dest="transport_latency",
        action="store_false",
        help="skip the pass-through's own latency at the paced rates (run at the end)",
    )
    args = ap.parse_args()
    if args.pure:
        pure(args.pure, heap_policy=args.heap_policy, callgrind_process=args.callgrind_process)
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    s = stack_settings(tmp, postgres_fsync=False, kafka_heap="1g", topic_prefix="be.")
    stack = LocalStack(s, echo=lambda _m: None)
    stack.up()
    workers: list[subprocess.Popen[bytes]] = []

    def rss() -> float:
        return sum(_rss_mb(w.pid) for w in workers)

    soak_rss: list[tuple[float, float]] = []
    snap_rss: list[float] = []
    windows: dict[int, tuple[float, float]] = {}
    breakdowns: dict[int, dict[str, float]] = {}
    logs = [tmp / f"worker{i}.log" for i in range(args.workers)]
    snap_log = tmp / "snapshotter.log"
    snapshotter: list[subprocess.Popen[bytes]] = []
    try:
        create_topics(s)
        key = setup_world(s)
        print(f"building {args.intents} signed intents...", file=sys.stderr)
        backlog = templates(key, args.intents, "a")
        pub = Publisher(s)
        pub.publish(backlog, None)  # untimed: also warms the producer for the paced runs
        clock = DecisionClock(s)
        clock.start()
        workers = [
            subprocess.Popen(
                [sys.executable, "-m", "deploy.cli_entry", "run", "engine"],
                cwd=ROOT,
                env=_env(s, f"bench{i}"),
                stderr=logs[i].open("wb"),
            )
            for i in range(args.workers)
        ]
        if args.snapshotter:
            snapshotter.append(
                subprocess.Popen(
                    [sys.executable, "-m", "deploy.cli_entry", "run", "snapshotter"],
                    cwd=ROOT,
                    env={
                        **_env(s, "snapshotter"),
                        "TRADETAPE_ENGINE_SNAPSHOT_EVERY": str(args.snapshot_every),
                    },
                    stderr=snap_log.open("wb"),
                )
            )
        deadline = time.monotonic() + 900
        cpu_at_first: tuple[int, float] | None = None
        while clock.count < args.intents and time.monotonic() < deadline:
            if cpu_at_first is None and clock.count:
                # Start-up (imports, rebuild) done: the steady-state CPU starts here.
                cpu_at_first = (clock.count, sum(cpu_seconds(w.pid) for w in workers))
            time.sleep(0.05)
        engine_rate = (clock.count - clock.first_count) / max(1e-9, clock.last - clock.first)
        cpu_now = sum(cpu_seconds(w.pid) for w in workers)
        engine_cpu_us = cpu_now / max(1, clock.count) * 1e6
        n0, cpu0 = cpu_at_first or (0, 0.0)
        steady_cpu_us = (cpu_now - cpu0) / max(1, clock.count - n0) * 1e6
        print(f"(a) engine: {clock.count} decisions at {engine_rate:.0f}/s", file=sys.stderr)
        print(
            "(a) outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(clock.outcomes.items())),
            file=sys.stderr,
        )
        pt_rate, pt_cpu_us = passthrough(s, args.intents, args.workers)
        print(f"(b) pass-through: {pt_rate:.0f}/s", file=sys.stderr)
        for w in range(args.warmup_seconds):
            pub.publish(templates(key, 500, f"w{w}", cancels=True), 500)
        results = {}
        rates = [int(r) for r in args.rates.split(",") if r.strip()]
        for rate in rates:
            tag = f"r{rate}"
            tpl = templates(key, rate * args.seconds, tag)
            w0 = time.time()
            print(f"{rate}/s: offered from {w0:.3f} (epoch s)", file=sys.stderr)
            pub.publish(tpl, rate)
            end = time.monotonic() + 120
            while len(clock.lat.get(tag, [])) < len(tpl) and time.monotonic() < end:
                time.sleep(0.05)
            windows[rate] = (w0, time.time())
            lat = clock.lat.get(tag, [])
            results[rate] = (len(lat), len(tpl), pct(lat, 0.5), pct(lat, 0.99), pct(lat, 0.999))
            print(f"{rate}/s: {results[rate]}", file=sys.stderr)
            print(f"{rate}/s {by_second(lat, clock.at.get(tag, []))}", file=sys.stderr)
            time.sleep(1.5)  # the worker's next report closes the window
        t_soak = time.monotonic()
        soak_w0 = time.time()
        soak_end = t_soak + args.soak_minutes * 60
        i = 0
        soak_rss.append((0.0, rss()))
        snap_rss.extend(_rss_mb(p.pid) for p in snapshotter)
        while time.monotonic() < soak_end:
            tpl = templates(key, 500, f"s{i}", cancels=True)
            pub.publish(tpl, 500)
            soak_rss.append((time.monotonic() - t_soak, rss()))
            snap_rss.extend(_rss_mb(p.pid) for p in snapshotter)
            i += 1
        time.sleep(2)
        if args.soak_minutes > 0:
            windows[-500] = (soak_w0, time.time() - 1.5)
        soak_lat = [x for k, v in clock.lat.items() if k.startswith("s") for x in v]
        clock.stop = True
        snap_cpu = sum(cpu_seconds(p.pid) for p in snapshotter if p.poll() is None)
        stop_workers(workers + snapshotter)
        pt_lat = (
            passthrough_latency(s, pub, key, rates, args.seconds) if args.transport_latency else {}
        )
    finally:
        stop_workers(workers + snapshotter)
        stack.down()
        slices = (
            re.findall(r"snapshot slice of partition \d+ at .*: (\d+) bytes", snap_log.read_text())
            if snap_log.exists()
            else []
        )
        # Read from the workers' logs before the stack's folder goes.
        breakdowns = {rate: stage_breakdown(logs, w0, w1) for rate, (w0, w1) in windows.items()}
        if args.keep_logs is not None:
            args.keep_logs.mkdir(parents=True, exist_ok=True)
            for log_file in [*logs, snap_log]:
                if log_file.exists():
                    shutil.copy(log_file, args.keep_logs / log_file.name)
        shutil.rmtree(tmp, ignore_errors=True)  # the throwaway stack's data
    print("\n## Engine results")
    print(f"workers: {args.workers}; load average at the end: {os.getloadavg()}")
    if args.snapshotter:
        print(
            f"snapshotter (every {args.snapshot_every} own records per partition, niced): "
            f"{len(slices)} slices, {sum(int(n) for n in slices) / 1e6:.1f} MB, "
            f"{snap_cpu:.1f} CPU-s over the run"
        )
    else:
        print("no snapshotter (--no-snapshotter)")
    print(f"(a) engine, backlog of {args.intents}: {engine_rate:.0f} intents/s")
    print(
        f"(b) transactional pass-through: {pt_rate:.0f} records/s; ratio "
        f"{engine_rate / pt_rate:.2f}"
    )
    print(
        f"CPU per record (user+sys, independent of contention): engine {engine_cpu_us:.0f} us "
        f"(incl. start-up and rebuild; {steady_cpu_us:.0f} us from the first decision on), "
        f"pass-through {pt_cpu_us:.0f} us; "
        f"= {1e6 / engine_cpu_us:.0f} vs {1e6 / pt_cpu_us:.0f} per CPU-second, "
        f"ratio {pt_cpu_us / engine_cpu_us:.2f}"
    )
    for rate, (got, sent, p50, p99, p999) in results.items():
        print(
            f"offered {rate}/s: {got}/{sent} decided; p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
            f"p99.9 {p999:.1f} ms"
        )
    for rate, b in breakdowns.items():
        what = "the soak (500/s)" if rate < 0 else f"{rate}/s"
        print(
            f"engine stages at {what}, mean ms per transaction "
            f"({b['transactions']:.0f} transactions, {b['intents/txn']:.1f} intents each): "
            + ", ".join(f"{k} {b[k]:.1f}" for k in STAGES)
        )
    for rate, (got, sent, p50, p99, p999) in pt_lat.items():
        print(
            f"pass-through alone, offered {rate}/s: {got}/{sent} seen; p50 {p50:.1f} ms, "
            f"p99 {p99:.1f} ms, p99.9 {p999:.1f} ms"
        )
    if len(soak_rss) > 2:
        mid = soak_rss[len(soak_rss) // 2]
        print(
            f"soak {args.soak_minutes:g} min at 500/s ({i * 500} intents, "
            f"{len(soak_lat)} decided, p50 {pct(soak_lat, 0.5):.1f} ms, "
            f"p99 {pct(soak_lat, 0.99):.1f} ms): worker RSS start {soak_rss[0][1]:.0f} MB, "
            f"middle ({mid[0] / 60:.1f} min) {mid[1]:.0f} MB, end {soak_rss[-1][1]:.0f} MB, "
            f"max {max(r for _, r in soak_rss):.0f} MB"
        )
        if snap_rss:
            print(
                f"snapshotter RSS over the soak: start {snap_rss[0]:.0f} MB, middle "
                f"{snap_rss[len(snap_rss) // 2]:.0f} MB, end {snap_rss[-1]:.0f} MB, "
                f"max {max(snap_rss):.0f} MB"
            )
        per_min = {int(t // 60): r for t, r in soak_rss}
        print("RSS by minute: " + ", ".join(f"{m}:{r:.0f}" for m, r in sorted(per_min.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
