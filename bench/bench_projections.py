"""Projection benchmarks on a throwaway local stack (real Kafka, real PostgreSQL, fsync on).

1. Rebuild throughput: N synthetic events (default 1,000,000) produced to Kafka, then
   `tradetape rebuild NAME` for each projection, `rebuild --all --parallel` (one process
   per topic group, the default) and `rebuild --all --one-consumer`, each as a subprocess:
   events/s
   (records on the projection's topics / rebuild seconds) and peak RSS (wait4 rusage;
   for `--all` also the process tree's summed PSS and RSS, sampled).
2. Incremental lag: `tradetape run projections` as a subprocess (one process per topic
   group, as deployed, in its own session) while events are offered at 5,000/s (paced
   in 1 ms ticks). The bench polls `projection_offsets` every 10 ms; a record's lag, per
   projection reading it, is the first time its offset is seen committed minus its
   Kafka CreateTime (p50/p99/max). Polling makes the figure an upper bound by at most
   the poll interval; the observer's own PostgreSQL backend is measured and reported
   apart. Two rounds run by default, each on topics and events of its own: the first
   (right after the rebuilds, if any) meets a broker still compiling the lag load's
   paths, the second a settled stack. Each round prints, by second, every role's cores,
   PostgreSQL's by process kind, the broker's by thread kind (GC, JIT, requests, log),
   checkpoints, WAL full-page images, blocks read, backends' own writes and autovacuum.

    .venv/bin/python -m bench.bench_projections [--events 1000000] [--lag-seconds 20]
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

if not __package__:  # `python bench/X.py`: import from this checkout, like `-m bench.X`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg
from confluent_kafka import Message, Producer

from bench.measure import cpu_seconds, stack_settings
from bench.thread_cpu import thread_seconds
from deploy.kafka import create_topics, producer_config
from deploy.local import LocalStack
from deploy.settings import Settings
from projections.core import PROJECTIONS
from projections.synthetic import BASE_TIME, generate
from schemas import encode

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 25_000

Encoded = tuple[str, bytes, bytes, list[tuple[str, str | bytes | None]]]


def _env(s: Settings) -> dict[str, str]:
    return s.child_env(TRADETAPE_LOG_LEVEL="WARNING")


CHUNK_SPAN = timedelta(minutes=1)
"""How far apart the chunks' clocks start (a chunk's events are a millisecond apart:
25,000 take 25 s), so the log's time runs forward as a real log's does. Until session
26 every chunk started at `BASE_TIME`: each account's time went back 40 times in a 1M
log, and `tax_lots`, which folds each book in time order, folded most of it again."""


def _chunk(args: tuple[int, int, str, int]) -> list[Encoded]:
    """One chunk of events, encoded (runs in a worker process)."""
    seed, n, prefix, index = args
    out = []
    start = BASE_TIME + index * CHUNK_SPAN
    for ev in generate(seed, n, namespace=f"s{seed}-", start=start):
        key, value, headers = encode(ev)
        out.append((prefix + ev.topic, key, value, headers))
    return out


_next_chunk = 0
"""The clock index the next chunk generated in this run starts at (`_reserve`)."""


def _reserve(n: int) -> int:
    """Clock indexes for the chunks of `n` events, after every chunk reserved before: the
    1M log, then each lag round's warm-up and measured events, run forward in time as
    one log (the lag rounds' events started at `BASE_TIME` too, before the log already
    folded, so a time-ordered fold met every one of them late)."""
    global _next_chunk
    first = _next_chunk
    _next_chunk += (n + CHUNK - 1) // CHUNK
    return first


def _chunks(n: int, prefix: str, seed: int, first: int) -> Iterator[list[Encoded]]:
    jobs = [
        (seed + i, min(CHUNK, n - i * CHUNK), prefix, first + i)
        for i in range((n + CHUNK - 1) // CHUNK)
    ]
    with multiprocessing.get_context("fork").Pool(max(1, (os.cpu_count() or 2))) as pool:
        yield from pool.imap(_chunk, jobs)


def produce_all(s: Settings, n: int, seed: int = 1) -> int:
    producer = Producer(
        producer_config(s, transactional_id=None, **{"linger.ms": 20, "batch.size": 1_000_000})
    )
    made = 0
    for chunk in _chunks(n, s.topic_prefix, seed, _reserve(n)):
        for topic, key, value, headers in chunk:
            while True:
                try:
                    producer.produce(topic, value, key, headers=headers)
                    break
                except BufferError:
                    producer.poll(0.05)
        made += len(chunk)
        producer.poll(0)
    assert producer.flush(120) == 0
    return made


def _tree_memory(pid: int) -> tuple[float, float]:
    """(sum of RSS, sum of PSS) in MB of `pid` and its descendants now. PSS splits a page
    shared by n processes (e.g. a forked child's copy-on-write pages) n ways, so its sum
    is what the tree holds together; the RSS sum counts shared pages once per process."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0, 0.0
    rss = pss = 0.0
    for p in procs:
        try:
            full = p.memory_full_info()
        except psutil.Error:
            continue
        rss += full.rss / 2**20
        pss += getattr(full, "pss", full.rss) / 2**20
    return rss, pss


def _cpu_with_children(pid: int | None) -> float:
    """User + system CPU seconds of `pid` and of its children it has reaped (a
    PostgreSQL server's finished backends); 0 if it is gone or unknown."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _run_measured(
    cmd: list[str],
    env: dict[str, str],
    tree: dict[str, float] | None = None,
    cwd: Path = ROOT,
    stdout: list[str] | None = None,
) -> tuple[str, float, float]:
    """(stderr, wall seconds, peak RSS MB) of one subprocess. With `tree`, also samples
    the process and its children every 0.2 s: `tree["rss"]`/`tree["pss"]` get the peak
    sums (a parallel rebuild's memory is that of all its processes together), and
    `tree["cpu"]` gets the CPU seconds of the process and the children it reaped (wait4:
    a split rebuild's forked half included). With `stdout`, its standard output lines (a
    rebuild prints its checksums) are appended."""
    with tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as out:
        started = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err)
        if tree is not None:
            tree.update(rss=0.0, pss=0.0)
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                rss, pss = _tree_memory(proc.pid)
                tree["rss"], tree["pss"] = max(tree["rss"], rss), max(tree["pss"], pss)
                time.sleep(0.2)
        else:
            _pid, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - started
        if tree is not None:
            tree["cpu"] = usage.ru_utime + usage.ru_stime
        err.seek(0)
        text = err.read().decode(errors="replace")
        if stdout is not None:
            out.seek(0)
            stdout.extend(out.read().decode(errors="replace").splitlines())
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{text[-3000:]}")
    return text, wall, usage.ru_maxrss / 1024


def _summary(text: str, name: str) -> tuple[int, float]:
    """(events, seconds) of `name`'s rebuild, from the line the command prints.

    The seconds come from the command's own events/s (its exact seconds), not from the
    "in 4.1s" it rounds to a tenth: at ~4 s that rounding alone moved a `decisions`
    rebuild by ±1.2 % (49,354 or 50,588 events/s for 4.05 s)."""
    line = [x for x in text.splitlines() if x.startswith(f"{name}:")][-1]
    events = int(line.split(":")[1].split()[0])
    rate = float(line.split("(")[1].split(" events/s")[0].replace(",", ""))
    seconds = events / rate if rate > 0 else float(line.split(" in ")[1].split("s")[0])
    return events, seconds


def _rows_of(text: str, name: str) -> str:
    """The row counts per table `tradetape rebuild` printed for `name` (its summary line's
    "t=n, ..." part): which table a checksum that differs between rounds differs in."""
    line = [x for x in text.splitlines() if x.startswith(f"{name}:")][-1]
    parts = line.split("; ")
    return parts[1] if len(parts) > 2 else "?"


def _checksum_of(lines: list[str], name: str) -> str:
    """The checksum `tradetape rebuild` printed for `name` ("NAME HEX" on stdout)."""
    found = [x.split()[1] for x in lines if x.startswith(f"{name} ") and len(x.split()) == 2]
    return found[-1] if found else "?"


def bench_rebuild(
    s: Settings,
    names: list[str],
    *,
    single: bool = True,
    all_rounds: int = 1,
    baseline: Path | None = None,
    single_rounds: int = 1,
    postgres: int | None = None,
) -> list[dict[str, Any]]:
    """`postgres`: the server's pid; each single rebuild also reports the CPU its backends
    used (those that ended by the command's end: all of a rebuild's), on a machine shared
    with other work a steadier measure than the seconds (session 13)."""
    out = []
    base = [sys.executable, "-m", "deploy.cli_entry", "rebuild"]
    # Per projection: with a baseline, each round runs both trees back to back, the
    # order alternating by round. The process tree is sampled too (since session 9 a
    # single rebuild decodes in a reader process of its own).
    trees: list[tuple[str, Path]] = [("", ROOT)]
    sums: dict[str, dict[str, str]] = {}
    rows: dict[str, dict[str, str]] = {}
    if baseline is not None:
        trees.append((f" ({baseline.name})", baseline))
    for r in range(single_rounds if single else 0):
        for name in names:
            for suffix, cwd in trees if r % 2 == 0 else trees[::-1]:
                sampled: dict[str, float] = {}
                lines: list[str] = []
                pg_before = _cpu_with_children(postgres)
                text, wall, rss = _run_measured([*base, name], _env(s), sampled, cwd, lines)
                sampled["pg_cpu"] = _cpu_with_children(postgres) - pg_before
                events, seconds = _summary(text, name)
                digest = _checksum_of(lines, name)
                label = f"{suffix.strip() or 'this code'} r{r + 1}"
                sums.setdefault(name, {})[label] = digest
                rows.setdefault(name, {})[label] = _rows_of(text, name)
                out.append(
                    {"name": name + suffix, "events": events, "seconds": seconds, "rss": rss,
                     "wall": wall, "checksum": digest, **sampled}
                )  # fmt: skip
                # The command's wall time also counts start-up, the swap and the checksum
                # it prints after the rebuild's own seconds.
                print(
                    f"rebuild {name + suffix:24} {events:>9,} events {seconds:7.2f}s "
                    f"{events / seconds:>9,.0f} ev/s  command {wall:5.1f}s  peak RSS "
                    f"{rss:5.0f} MB, tree {sampled['pss']:5.0f} MB PSS "
                    f"({sampled['rss']:.0f} MB summed RSS)  CPU: command {sampled['cpu']:.1f}s, "
                    f"PostgreSQL {sampled['pg_cpu']:.1f}s  load {os.getloadavg()[0]:.1f}  "
                    f"checksum {digest[:16]}",
                    flush=True,
                )
    # Every rebuild of a projection, by either tree in any round, must give one checksum.
    for name, by_tree in sums.items():
        same = len(set(by_tree.values())) == 1
        print(
            f"checksum {name}: {'equal' if same else 'DIFFERENT'} "
            + ", ".join(f"{t} {d}" for t, d in sorted(by_tree.items())),
            flush=True,
        )
        if not same:  # the row counts say which table (and whether events went missing)
            for t, counted in sorted(rows.get(name, {}).items()):
                print(f"  rows {name} {t}: {counted}", flush=True)
    # --all both ways in this run: one process per topic group (--parallel, the default
    # since session 8) and one process on one consumer (--one-consumer: each record
    # decoded once).
    ways: list[tuple[str, list[str], Path]] = [
        ("--all --parallel", ["--parallel"], ROOT),
        ("--all --one-consumer", ["--one-consumer"], ROOT),
    ]
    if baseline is not None:  # the same command on another checkout's code, same stack
        ways.insert(1, (f"--all --parallel ({baseline.name})", ["--parallel"], baseline))
    # Rounds alternate the order (AB, BA, ...), so a drift in the machine's load does not
    # favour one way.
    rounds = [ways if r % 2 == 0 else ways[::-1] for r in range(all_rounds)]
    for label, extra, cwd in [w for r in rounds for w in r]:
        tree: dict[str, float] = {}
        text, _wall, rss = _run_measured([*base, "--all", *extra], _env(s), tree, cwd)
        seconds = max(_summary(text, n)[1] for n in names)
        per = sum(_summary(text, n)[0] for n in PROJECTIONS)
        distinct = [x for x in text.splitlines() if x.startswith("all:")]
        records = int(distinct[-1].split()[1].replace(",", "")) if distinct else 0
        groups = [x for x in text.splitlines() if x.startswith("group ")]
        for line in groups:
            print(f"  {line}", flush=True)
        print(
            f"rebuild {label}: {records:,} records read ({per:,} projection-events) in "
            f"{seconds:.1f}s: {per / seconds:,.0f} projection-events/s; peak RSS: the command "
            f"{rss:.0f} MB (wait4, its largest process), its process tree together "
            f"{tree['pss']:.0f} MB PSS ({tree['rss']:.0f} MB summed RSS, sampled every 0.2 s)",
            flush=True,
        )
        out.append(
            {"name": label, "events": records, "seconds": seconds, "rss": rss, "per": per, **tree}
        )
    return out


def bench_decode(n: int = 20_000) -> None:
    """µs per event to validate one record: lean (Rust-only) vs the model's JSON
    validation vs `schemas.decode`, per hot event type (best of 3)."""
    from projections import lean
    from schemas import decode, payload_class
    from schemas.envelope import envelope_class

    by_type: dict[str, list[tuple[bytes, Any]]] = {}
    for ev in generate(5, n):
        _k, value, headers = encode(ev)
        by_type.setdefault(ev.event_type, []).append((value, headers))

    def best(fn: Any, items: list[tuple[bytes, Any]]) -> float:
        out = []
        for _ in range(3):
            t = time.perf_counter()
            for value, headers in items:
                fn(value, headers)
            out.append((time.perf_counter() - t) / len(items) * 1e6)
        return min(out)

    for et in (
        "Fill",
        "OrderSubmitted",
        "OrderAccepted",
        "RiskDecision",
        "MarketTrade",
        "QuoteUpdated",
    ):
        items = by_type.get(et, [])
        if not items:
            continue
        model: Any = envelope_class(payload_class(et, 1))
        fast = best(lean.lean_decode, items) if lean.validator_for(et, 1) else float("nan")
        print(
            f"decode {et:15} lean {fast:5.1f} us  model_validate_json "
            f"{best(lambda v, _h, m=model: m.model_validate_json(v), items):5.1f} us  "
            f"schemas.decode {best(lambda v, h: decode(v, h), items):5.1f} us",
            flush=True,
        )


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def _hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _machine_busy() -> float:
    """CPU seconds every process on the machine has used so far (/proc/stat)."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(f[:8]) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait


def _cpu_by_role(roles: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each role's process and its children (PostgreSQL's
    backends, the projector group processes) that are not a role of their own (the
    broker is a child of this process)."""
    own = set(roles.values())
    return {
        role: (_cpu_with_children(pid) if role == "postgres" else cpu_seconds(pid))
        + sum(cpu_seconds(c) for c in _children(pid) if c not in own)
        for role, pid in roles.items()
    }


def _pg_kind(pid: int) -> str:
    """What a PostgreSQL child process is, from its title ("postgres: autovacuum worker",
    "postgres: checkpointer", "postgres: USER DB HOST(PORT) idle", ...)."""
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return "gone"
    title = title.replace("\0", " ").removeprefix("postgres: ").strip()
    for kind in ("autovacuum", "checkpointer", "background writer", "walwriter", "io worker"):
        if title.startswith(kind):
            return {"background writer": "bgwriter"}.get(kind, kind)
    return "backends" if "(" in title else "other"


def _pg_cpu_by_kind(pid: int | None) -> dict[str, float]:
    """PostgreSQL's CPU seconds so far split by process kind; "reaped": the postmaster's
    own and its children that have exited (an autovacuum worker that finished, a
    rebuild's backends)."""
    if pid is None:
        return {}
    out = {"reaped": _cpu_with_children(pid)}
    for c in _children(pid):
        kind = _pg_kind(c)
        out[kind] = out.get(kind, 0.0) + cpu_seconds(c)
    return out


_PG_WATCH = """
SELECT (SELECT num_timed + num_requested FROM pg_stat_checkpointer),
       (SELECT buffers_written FROM pg_stat_checkpointer),
       (SELECT wal_fpi FROM pg_stat_wal),
       (SELECT wal_bytes FROM pg_stat_wal),
       (SELECT sum(blks_read) FROM pg_stat_database),
       (SELECT coalesce(sum(writes), 0) FROM pg_stat_io WHERE backend_type = 'client backend'),
       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'),
       (SELECT string_agg(schemaname || '.' || relname || ' ' || n_live_tup, ', '
                          ORDER BY schemaname, relname)
          FROM pg_stat_all_tables
         WHERE last_autovacuum > now() - interval '1 second'
            OR last_autoanalyze > now() - interval '1 second')
"""
"""Once a second during the lag phase (PostgreSQL 18's views): checkpoints, buffers the
checkpointer wrote, WAL full-page images and bytes, blocks read (not in shared
buffers), client backends' own buffer writes, autovacuum workers running now, and the
tables an autovacuum or autoanalyze finished in the last second (with their rows)."""


def _broker_kind(name: str) -> str:
    """A Kafka broker's JVM thread, by its name (/proc's 15 characters)."""
    if name.startswith(("GC Thread", "G1 ", "VM Thread")):
        return "gc"
    if "Compiler" in name:
        return "jit"
    if name.startswith("data-plane"):
        return "requests"
    if name.startswith(("kafka-scheduler", "kafka-log-clean")):
        return "log"
    return "other"


def _broker_cpu_by_kind(pid: int | None) -> dict[str, float]:
    """The broker's CPU seconds so far by thread kind (a thread that has ended drops
    out: compiler threads come and go)."""
    out: dict[str, float] = {}
    if pid is None:
        return out
    for name, seconds in thread_seconds(pid).values():
        kind = _broker_kind(name)
        out[kind] = out.get(kind, 0.0) + seconds
    return out


def _offer(
    producer: Producer,
    events: list[Encoded],
    rate: int,
    started: float,
    *,
    on_delivery: Callable[[Any, Message], None] | None = None,
    tick: Callable[[float], None] | None = None,
) -> None:
    """Produce `events` at `rate` a second from `started` (time.monotonic()), paced in
    ticks of 1 ms: every record due by now is produced, then one sleep (a wake-up per
    record cost the load generator, which shares the 2 cores with what it measures,
    about twice the CPU). `tick(now)` runs once per tick."""
    sent = 0
    while sent < len(events):
        now = time.monotonic()
        due = min(len(events), int((now - started) * rate) + 1)
        while sent < due:
            topic, key, value, headers = events[sent]
            if on_delivery is None:
                producer.produce(topic, value, key, headers=headers)
            else:
                producer.produce(topic, value, key, headers=headers, on_delivery=on_delivery)
            sent += 1
        producer.poll(0)
        if tick is not None:
            tick(now)
        time.sleep(0.001)


def bench_lag(
    s: Settings,
    seconds: float,
    rate: int,
    poll_ms: float = 10.0,
    same_session: bool = False,
    servers: dict[str, int] | None = None,
    linger_ms: float = 1.0,
    warmup_seconds: float = 10.0,
    cwd: Path = ROOT,
    seed: int = 99,
) -> dict[str, Any]:
    """`servers`: role -> pid of the broker and PostgreSQL, whose CPU is reported too.
    `warmup_seconds` of the same load come first, unmeasured. `cwd`: the checkout whose
    `run projections` is measured. `seed`: of the measured events (the warm-up's is
    `seed - 92`); another round on the same database needs other event ids, or its
    events would be duplicates of the first's."""
    warm_first = _reserve(int(warmup_seconds * rate))  # the warm-up is produced first
    measured = int(seconds * rate)
    events = [x for c in _chunks(measured, s.topic_prefix, seed, _reserve(measured)) for x in c]
    proc = subprocess.Popen(
        [sys.executable, "-m", "deploy.cli_entry", "run", "projections"],
        cwd=cwd,
        env=_env(s),
        stdout=subprocess.DEVNULL,
        # Its own session, so its own scheduling group (Linux autogroup, on here): the
        # projectors do not share one CPU share with this load generator and observer,
        # as a deployed service would not share a cgroup with the engine producing to
        # it. `--same-session` measures the way sessions 1-3 did.
        start_new_session=not same_session,
    )
    produced: list[tuple[str, int, int, float]] = []

    def delivered(err: Any, msg: Message) -> None:
        if err is None:
            produced.append(
                (msg.topic() or "", msg.partition() or 0, msg.offset() or 0,
                 msg.timestamp()[1] / 1000)
            )  # fmt: skip

    commits: dict[tuple[str, str, int], list[tuple[int, float]]] = {}
    try:
        time.sleep(8.0)  # processes up, partitions assigned
        producer = Producer(producer_config(s, transactional_id=None, **{"linger.ms": linger_ms}))
        # Warm-up (not measured), at the measured rate: the producer gets its
        # idempotence id, every projector process its connections and prepared
        # statements, and the broker, started a moment ago, compiles its hot paths
        # (its JIT: in the first ~8 s of load it used 0.93 cores against 0.5 after).
        warm = [
            x
            for c in _chunks(int(warmup_seconds * rate), s.topic_prefix, seed - 92, warm_first)
            for x in c
        ]
        _offer(producer, warm, rate, time.monotonic())
        producer.flush(30)
        time.sleep(3.0)
        with (
            psycopg.connect(s.dsn, autocommit=True) as conn,
            psycopg.connect(s.dsn, autocommit=True) as watch,
        ):
            last: dict[tuple[str, str, int], int] = {}
            # The observer's and the watcher's own backends: their CPU is in PostgreSQL's,
            # and is reported apart so the projectors' share can be told from the bench's.
            mine = [conn.info.backend_pid, watch.info.backend_pid]
            postgres = (servers or {}).get("postgres")
            broker = (servers or {}).get("broker")

            def pg_sample() -> dict[str, Any]:
                row = watch.execute(_PG_WATCH).fetchone() or ()
                kinds = _pg_cpu_by_kind(postgres)
                return {
                    **{f"pg {k}": v for k, v in kinds.items()},
                    "pg observer": cpu_seconds(mine[0]),
                    "pg watch": cpu_seconds(mine[1]),
                    **{f"group {c}": cpu_seconds(c) for c in _children(proc.pid)},
                    "checkpoints": float(row[0] or 0), "ckpt buffers": float(row[1] or 0),
                    "wal fpi": float(row[2] or 0), "wal MB": float(row[3] or 0) / 2**20,
                    "blks read": float(row[4] or 0), "backend writes": float(row[5] or 0),
                    **{f"broker {k}": v for k, v in _broker_cpu_by_kind(broker).items()},
                    "autovacuum": (f"{row[6]} running" if row[6] else "")
                    + (f"; done: {row[7]}" if row[7] else ""),
                }  # fmt: skip

            def snapshot() -> None:
                now = time.time()
                for pname, topic, part, nxt in conn.execute(
                    "SELECT projection, topic, partition, next_offset FROM projection_offsets"
                ):
                    key = (pname, topic, part)
                    if last.get(key) != nxt:
                        last[key] = nxt
                        commits.setdefault(key, []).append((nxt, now))

            snapshot()
            roles = {**(servers or {}), "projectors": proc.pid, "bench": os.getpid()}
            cpu_before = _cpu_by_role(roles)
            groups_before = {c: cpu_seconds(c) for c in _children(proc.pid)}
            busy_before = _machine_busy()
            started = time.monotonic()
            next_poll = started
            next_sample = started + 1.0
            timeline: list[dict[str, Any]] = [{**cpu_before, "machine": busy_before, **pg_sample()}]

            def tick(now: float) -> None:
                nonlocal next_poll, next_sample
                if now >= next_poll:
                    snapshot()
                    next_poll = now + poll_ms / 1000
                if now >= next_sample:
                    timeline.append(
                        {**_cpu_by_role(roles), "machine": _machine_busy(), **pg_sample()}
                    )
                    next_sample += 1.0

            _offer(producer, events, rate, started, on_delivery=delivered, tick=tick)
            producer.flush(30)
            window = time.monotonic() - started
            offered = len(events) / window
            cpu = {k: (v - cpu_before[k]) / window for k, v in _cpu_by_role(roles).items()}
            machine = (_machine_busy() - busy_before) / window
            end = time.monotonic() + 5
            drain_vacuum: list[str] = []
            next_sample = time.monotonic()
            while time.monotonic() < end:
                snapshot()
                if time.monotonic() >= next_sample:
                    drain_vacuum.append(pg_sample()["autovacuum"] or "-")
                    next_sample += 1.0
                time.sleep(poll_ms / 1000)
            # Effort per event, to the end of the drain: CPU seconds are what a change
            # to the projectors moves, whatever else the machine runs (the lag depends on
            # how much CPU is left over, which co-tenants decide as much as the code).
            drained = _cpu_by_role(roles)
            per_event = {k: (drained[k] - cpu_before[k]) / len(events) * 1e6 for k in drained}
            pg_after = pg_sample()
            pg_us = {
                k.removeprefix("pg "): (v - timeline[0].get(k, 0.0)) / len(events) * 1e6
                for k, v in pg_after.items()
                if k.startswith("pg ")
            }
            broker_us = {
                k.removeprefix("broker "): (v - timeline[0].get(k, 0.0)) / len(events) * 1e6
                for k, v in pg_after.items()
                if k.startswith("broker ")
            }
            # The observer's and the watcher's backends are client backends too.
            pg_us["backends"] = pg_us.get("backends", 0.0) - pg_us["observer"] - pg_us["watch"]
            groups = sorted(
                (cpu_seconds(c) - groups_before.get(c, 0.0)) / len(events) * 1e6
                for c in _children(proc.pid)
            )
        rss = {c: _hwm_mb(c) for c in _children(proc.pid)}
        rss[proc.pid] = _hwm_mb(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(30)
    readers: dict[str, list[str]] = {}
    for p in PROJECTIONS.values():
        for t in p.topics:
            readers.setdefault(s.topic(t), []).append(p.name)
    lags: list[float] = []
    by_projection: dict[str, list[float]] = {}
    missing = 0
    firsts = {k: [n for n, _t in seq] for k, seq in commits.items()}
    for topic, part, off, ts in produced:
        for pname in readers.get(topic, []):
            seq = commits.get((pname, topic, part), [])
            i = bisect.bisect_right(firsts.get((pname, topic, part), []), off)
            if i == len(seq):
                missing += 1
                continue
            lags.append(seq[i][1] - ts)
            by_projection.setdefault(pname, []).append(seq[i][1] - ts)
    t0 = min((ts for *_x, ts in produced), default=0.0)
    by_second: dict[int, list[float]] = {}
    for topic, part, off, ts in produced:
        if readers.get(topic) and "orders" in readers[topic]:
            seq = commits.get(("orders", topic, part), [])
            i = bisect.bisect_right(firsts.get(("orders", topic, part), []), off)
            if i < len(seq):
                by_second.setdefault(int(ts - t0), []).append(seq[i][1] - ts)
    for role in [*timeline[0]]:
        if role == "autovacuum":
            continue
        unit = "" if role in _PG_COUNTS else " cores"
        print(
            f"  {role + unit:20} by second offered: "
            + " ".join(
                f"{b.get(role, 0.0) - a.get(role, 0.0):.{0 if unit == '' else 2}f}"
                for a, b in itertools.pairwise(timeline)
            ),
            flush=True,
        )
    print(
        "  autovacuum by second offered: "
        + " | ".join(f"{i}: {b['autovacuum'] or '-'}" for i, b in enumerate(timeline[1:]))
        + "; in the drain: "
        + " | ".join(drain_vacuum),
        flush=True,
    )
    print(
        "  orders lag p50 by second offered (ms): "
        + " ".join(f"{sorted(v)[len(v) // 2] * 1000:.0f}" for _k, v in sorted(by_second.items())),
        flush=True,
    )
    for pname, xs in sorted(by_projection.items()):
        xs.sort()
        print(
            f"  lag {pname:12} n={len(xs):>7,} p50 {xs[len(xs) // 2] * 1000:8.1f} ms "
            f"p99 {xs[int(len(xs) * 0.99)] * 1000:8.1f} ms",
            flush=True,
        )
    lags.sort()
    q = statistics.quantiles(lags, n=100)
    return {
        "offered": offered,
        "records": len(lags),
        "missing": missing,
        "p50_ms": q[49] * 1000,
        "p99_ms": q[98] * 1000,
        "max_ms": lags[-1] * 1000,
        "rss": rss,
        "exit": rc,
        "cpu": cpu,
        "per_event_us": per_event,
        "group_us": groups,
        "committed_us": {k: v * len(events) / max(1, len(lags)) for k, v in per_event.items()},
        "pg_us": pg_us,
        "broker_us": broker_us,
        "by_second_p50": [sorted(v)[len(v) // 2] * 1000 for _k, v in sorted(by_second.items())],
        "machine": machine,
    }


_PG_COUNTS = frozenset(
    {"checkpoints", "ckpt buffers", "wal fpi", "wal MB", "blks read", "backend writes"}
)


def _print_lag(r: dict[str, Any], label: str) -> None:
    print(
        f"incremental lag ({label}) at {r['offered']:,.0f} events/s offered over "
        f"{r['records']:,} projected records ({r['missing']} not committed in time): "
        f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, max {r['max_ms']:.1f} ms; "
        f"run projections peak RSS per process (MB) "
        f"{sorted(round(v) for v in r['rss'].values())}, exit {r['exit']}",
        flush=True,
    )
    print(
        "CPU while offering (cores): "
        + ", ".join(f"{k} {v:.2f}" for k, v in r["cpu"].items())
        + f"; all processes on the machine {r['machine']:.2f} of {os.cpu_count()}",
        flush=True,
    )
    print(
        "CPU per event offered, to the end of the drain (us): "
        + ", ".join(f"{k} {v:.0f}" for k, v in r["per_event_us"].items())
        + "; projector processes "
        + " / ".join(f"{v:.0f}" for v in r["group_us"])
        + "; per projected record committed (a record read by n projections counts "
        + "n times; falling behind leaves work uncounted): projectors "
        + f"{r['committed_us']['projectors']:.1f}, postgres "
        + f"{r['committed_us'].get('postgres', float('nan')):.1f}",
        flush=True,
    )
    print(
        "PostgreSQL's CPU per event offered by process (us, to the end of the drain; "
        "backends: the projectors', observer and watch: the bench's own queries): "
        + ", ".join(f"{k} {v:.1f}" for k, v in sorted(r["pg_us"].items())),
        flush=True,
    )
    print(
        "The broker's CPU per event offered by thread (us): "
        + ", ".join(f"{k} {v:.1f}" for k, v in sorted(r["broker_us"].items())),
        flush=True,
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--lag-seconds", type=float, default=20.0)
    ap.add_argument("--lag-rate", type=int, default=5000)
    ap.add_argument(
        "--lag-warmup-seconds",
        type=float,
        default=10.0,
        help="offer the same load this long first, unmeasured (the broker's JIT warms up; "
        "before session 8 it was 2,000 events)",
    )
    ap.add_argument("--skip-rebuild", action="store_true")
    ap.add_argument(
        "--lag-rounds",
        type=int,
        default=None,
        help="lag phases one after the other, each on new topics and events (with "
        "--baseline-tree the trees alternate ABBA). Default 2: the first meets a broker "
        "whose JIT is still compiling the lag load's paths past the warm-up (session 23: "
        "~2 s of CPU a round, 17-23 us per event; 0.4-0.5 cores in its first seconds at "
        "load 12-17, three rounds long at load 20+), both are reported",
    )
    ap.add_argument(
        "--lag-poll-ms",
        type=float,
        default=10.0,
        help="the observer's poll of projection_offsets (an upper bound on the lag by this)",
    )
    ap.add_argument("--skip-lag", action="store_true")
    ap.add_argument(
        "--lag-linger-ms",
        type=float,
        default=1.0,
        help="the lag producer's linger.ms (its batching; counted in the lag, since a "
        "record's CreateTime is taken when it is produced)",
    )
    ap.add_argument(
        "--same-session",
        action="store_true",
        help="run the projectors in this process's session (one autogroup with the load "
        "generator, as sessions 1-3 measured)",
    )
    ap.add_argument("--projections", default=",".join(PROJECTIONS), help="comma-separated")
    ap.add_argument(
        "--skip-single", action="store_true", help="no per-projection rebuilds, only --all"
    )
    ap.add_argument(
        "--all-rounds",
        type=int,
        default=1,
        help="rounds of `rebuild --all` both ways (--parallel, one consumer), order alternating",
    )
    ap.add_argument(
        "--single-rounds",
        type=int,
        default=1,
        help="rounds of the per-projection rebuilds (with --baseline-tree, both trees in "
        "each, order alternating)",
    )
    ap.add_argument(
        "--baseline-tree",
        type=Path,
        help="a checkout of other code (e.g. `git worktree add DIR <commit>`): each round also "
        "runs its `rebuild --all --parallel` and its per-projection rebuilds on the same "
        "stack, for a before/after in one run",
    )
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()}", flush=True)
    bench_decode()
    with tempfile.TemporaryDirectory(prefix="tt-bench-proj-") as tmp:
        s = stack_settings(Path(tmp), kafka_heap="1g")
        stack = LocalStack(s, echo=lambda _m: None)
        stack.up()
        try:
            create_topics(s)
            if not args.skip_rebuild:
                t = time.monotonic()
                n = produce_all(s, args.events)
                print(f"produced {n:,} events in {time.monotonic() - t:.1f}s", flush=True)
                bench_rebuild(
                    s,
                    args.projections.split(","),
                    single=not args.skip_single,
                    all_rounds=args.all_rounds,
                    baseline=args.baseline_tree,
                    single_rounds=args.single_rounds,
                    postgres=stack.postgres.pid(),
                )
                print(f"load average: {os.getloadavg()}", flush=True)
            if not args.skip_lag:
                servers = {
                    k: pid
                    for k, pid in (
                        ("broker", stack.kafka.pid()),
                        ("postgres", stack.postgres.pid()),
                    )
                    if pid is not None
                }
                # Rounds, each on topics of its own and events of its own (fresh offsets,
                # fresh ids), on the same database: the first starts right after the
                # rebuilds (if any ran), the next ones after it. With a baseline, the
                # trees alternate ABBA.
                trees: list[tuple[str, Path]] = [("this code", ROOT)]
                if args.baseline_tree is not None:
                    trees.append((args.baseline_tree.name, args.baseline_tree))
                ended = time.monotonic()
                results: dict[str, list[dict[str, Any]]] = {}
                rounds = args.lag_rounds or 2
                for rnd in range(rounds):
                    label, cwd = trees[(0, 1, 1, 0)[rnd % 4] % len(trees)]
                    lag_settings = s.with_overrides(
                        topic_prefix="lag." if rnd == 0 else f"lag{rnd + 1}."
                    )
                    create_topics(lag_settings)
                    when = (
                        f"{time.monotonic() - ended:.0f} s after the rebuilds ended"
                        if not args.skip_rebuild
                        else "no rebuild in this run"
                    )
                    print(f"lag round {rnd + 1} ({label}; {when}):", flush=True)
                    r = bench_lag(
                        lag_settings,
                        args.lag_seconds,
                        args.lag_rate,
                        poll_ms=args.lag_poll_ms,
                        same_session=args.same_session,
                        servers=servers,
                        linger_ms=args.lag_linger_ms,
                        warmup_seconds=args.lag_warmup_seconds,
                        cwd=cwd,
                        seed=99 + 1000 * rnd,
                    )
                    results.setdefault(label, []).append(r)
                    _print_lag(r, f"round {rnd + 1}, {label}")
                    print(f"load average: {os.getloadavg()}", flush=True)
                if rounds > 1:
                    for label, rs in results.items():
                        print(
                            f"lag {label}, {len(rs)} rounds: p99 "
                            + " / ".join(f"{r['p99_ms']:.0f}" for r in rs)
                            + f" ms (median {statistics.median(r['p99_ms'] for r in rs):.0f}), p50 "
                            + " / ".join(f"{r['p50_ms']:.0f}" for r in rs)
                            + " ms; projectors "
                            + " / ".join(f"{r['per_event_us']['projectors']:.1f}" for r in rs)
                            + " us per event offered, postgres "
                            + " / ".join(f"{r['per_event_us'].get('postgres', 0):.1f}" for r in rs),
                            flush=True,
                        )
        finally:
            stack.down()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
