"""Engine failover: how long a dead worker's partitions go undecided, with and without
snapshot slices.

`.venv/bin/python -m bench.bench_engine_takeover [--prefill 60000] [--rate 500]
[--before 10] [--after 40] [--rounds 2] [--variants kill-slices,kill-rebuild,kill-full,term-slices]`

One throwaway local stack; each scenario gets its own topic prefix (fresh topics, fresh
consumer group). Two `tradetape run engine` workers share the intents topic's six
partitions. A backlog of `--prefill` signed intents is decided first, so each worker's
state, and the log a takeover must fold, is that large (a `tradetape run snapshotter`
next to them takes slices every `--snapshot-every` own records per partition). Then intents are offered at `--rate`/s;
`--before` seconds in, one worker is stopped — `kill` is SIGKILL (a crash), `term` is
SIGTERM (a clean stop) — and offering goes on for `--after` seconds.

Measured, with a read_committed reader timing every decision (partition, time visible):
- **outage**, per partition: the longest time in which no decision became visible on it,
  from the stop on. The dead worker's partitions wait for the group to notice (the
  session timeout: static membership means even a clean stop does not leave the group)
  and then for the survivor's take-over. Since session 7 the survivor keeps its state and
  folds only the dead worker's partitions (`kill-slices`); `kill-rebuild` turns that off
  (`TRADETAPE_ENGINE_INCREMENTAL_HANDOVER=false`: the survivor rebuilds all six
  partitions at the assignment, so its own stall too). Reported for the worst partition,
  and apart for the moved partitions and the survivor's own (kept) ones.
- the survivor's rebuild (from its log): seconds, own records replayed, slices used;
- latency (decision visible - intent `occurred_at`) of the intents offered after the stop:
  p50 / p99 / max, and all of them decided exactly once (no loss, no duplicate).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

if not __package__:  # `python bench/X.py`: import from this checkout, like `-m bench.X`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_engine import (
    ROOT,
    DecisionClock,
    Publisher,
    _env,
    setup_world,
    stop_workers,
    templates,
)
from bench.measure import percentile, stack_settings
from deploy.kafka import create_topics
from deploy.local import LocalStack
from deploy.settings import Settings

_REBUILT = re.compile(
    r"rebuilt partitions (\[[\d, ]*\]) from (\d+) events in ([\d.]+)s.*?own records replayed "
    r"(\d+), snapshot slices (.*)$"
)


def _wait(pred: Any, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


def _last_rebuild(log: Path) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for line in log.read_text(errors="replace").splitlines():
        if (m := _REBUILT.search(line)) is not None:
            found = {
                "partitions": m.group(1),
                "events": int(m.group(2)),
                "seconds": float(m.group(3)),
                "own_replayed": int(m.group(4)),
                "slices": m.group(5).strip(),
            }
    return found


def scenario(
    base: Settings,
    tmp: Path,
    name: str,
    *,
    stop: str,
    slices: bool,
    handover: bool,
    args: argparse.Namespace,
) -> dict[str, Any]:
    s = base.model_copy(update={"topic_prefix": f"bt{uuid.uuid4().hex[:6]}."})
    create_topics(s)
    key = setup_world(s)
    env_extra = {
        "TRADETAPE_ENGINE_SNAPSHOT_EVERY": str(args.snapshot_every),
        "TRADETAPE_ENGINE_SNAPSHOT_LOAD": "true" if slices else "false",
        "TRADETAPE_ENGINE_INCREMENTAL_HANDOVER": "true" if handover else "false",
    }
    logs = [tmp / f"{name}-w{i}.log" for i in range(2)]
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "deploy.cli_entry", "run", "engine"],
            cwd=ROOT,
            env={**_env(s, f"{name}-w{i}"), **env_extra},
            stderr=logs[i].open("wb"),
        )
        for i in range(2)
    ]
    if slices:
        workers.append(
            subprocess.Popen(
                [sys.executable, "-m", "deploy.cli_entry", "run", "snapshotter"],
                cwd=ROOT,
                env={**_env(s, f"{name}-snap"), **env_extra},
                stderr=(tmp / f"{name}-snapshotter.log").open("wb"),
            )
        )
    clock = DecisionClock(s, trace=True)
    clock.start()

    def decided(tag: str) -> int:
        return len(clock.lat.get(tag, ()))

    try:
        pub = Publisher(s)
        pub.publish(templates(key, args.prefill, "p"), None)
        if not _wait(lambda: decided("p") >= args.prefill, 600):
            raise RuntimeError(f"{name}: the prefill was not decided in 600 s")
        time.sleep(3)  # the snapshotter's last round (every second) publishes the last slices
        paced = templates(key, int(args.rate * (args.before + args.after)), "t")
        stopped_at: list[float] = []

        def stop_one() -> None:
            time.sleep(args.before)
            stopped_at.append(time.time())
            workers[1].send_signal(signal.SIGKILL if stop == "kill" else signal.SIGTERM)

        killer = threading.Thread(target=stop_one, daemon=True)
        killer.start()
        pub.publish(paced, args.rate)
        killer.join()
        complete = _wait(lambda: decided("t") >= len(paced), 180)
        time.sleep(1)
    finally:
        clock.stop = True
        stop_workers(workers)
        clock.join(5)
    t_stop = stopped_at[0]
    trace = clock.trace or []
    seen_at: dict[int, list[float]] = {}
    for part, t, _at, _coid in trace:
        seen_at.setdefault(part, [])
        if t >= t_stop:
            seen_at[part].append(t)
    outage: dict[int, float] = {}
    for part, times in sorted(seen_at.items()):
        last, gap = t_stop, 0.0
        for t in sorted(times):
            gap, last = max(gap, t - last), t
        outage[part] = gap
    moved = {int(x) for x in re.findall(r"\d+", _last_rebuild(logs[1]).get("partitions", ""))}
    paced_coids = Counter(coid for *_, coid in trace if coid.startswith("t-"))
    after = [(t - at) * 1000 for _p, t, at, coid in trace if coid.startswith("t-") and at >= t_stop]
    return {
        "name": name,
        "complete": complete,
        "decided": decided("t"),
        "offered": len(paced),
        "duplicates": sum(1 for n in paced_coids.values() if n > 1),
        "outage": outage,
        "outage_moved": max((g for p, g in outage.items() if p in moved), default=0.0),
        "outage_kept": max((g for p, g in outage.items() if p not in moved), default=0.0),
        "rebuild": _last_rebuild(logs[0]),
        "p50": percentile(after, 0.5),
        "p99": percentile(after, 0.99),
        "max": max(after, default=0.0),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prefill", type=int, default=60000, help="intents decided before")
    ap.add_argument("--rate", type=float, default=500.0, help="intents/s offered around the stop")
    ap.add_argument("--before", type=float, default=10.0, help="seconds offered before the stop")
    ap.add_argument("--after", type=float, default=40.0, help="seconds offered after the stop")
    ap.add_argument("--rounds", type=int, default=2, help="repeats of every variant")
    ap.add_argument(
        "--variants",
        default="kill-slices,kill-full,term-slices",
        help="comma-separated STOP-LOAD: STOP is kill (SIGKILL) or term (SIGTERM); LOAD is "
        "slices (the default: incremental take-over from slices), rebuild (slices, but a full "
        "rebuild at every assignment: TRADETAPE_ENGINE_INCREMENTAL_HANDOVER=false) or full "
        "(TRADETAPE_ENGINE_SNAPSHOT_LOAD=false)",
    )
    ap.add_argument("--snapshot-every", type=int, default=5000, help="own records per slice")
    args = ap.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in variants:
        if v.split("-")[0] not in ("kill", "term") or v.split("-")[-1] not in (
            "slices",
            "rebuild",
            "full",
        ):
            ap.error(f"unknown variant {v!r}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-takeover-"))
    base = stack_settings(tmp, postgres_fsync=False, kafka_heap="1g", topic_prefix="bt.")
    stack = LocalStack(base, echo=lambda _m: None)
    stack.up()
    results: list[dict[str, Any]] = []
    print(f"load average at the start: {os.getloadavg()}", file=sys.stderr)
    try:
        for r in range(args.rounds):
            order = variants if r % 2 == 0 else variants[::-1]
            for v in order:
                stop, load = v.split("-")
                res = scenario(
                    base,
                    tmp,
                    f"{v}-{r}",
                    stop=stop,
                    slices=load != "full",
                    handover=load != "rebuild",
                    args=args,
                )
                results.append(res)
                worst = max(res["outage"].values(), default=0.0)
                print(
                    f"{res['name']}: outage max {worst:.2f} s (moved {res['outage_moved']:.2f}, "
                    f"kept {res['outage_kept']:.2f}); rebuild {res['rebuild']}; "
                    f"after the stop p50 {res['p50']:.0f} / p99 {res['p99']:.0f} / max "
                    f"{res['max']:.0f} ms; decided {res['decided']}/{res['offered']}, "
                    f"duplicates {res['duplicates']}",
                    file=sys.stderr,
                )
    finally:
        stack.down()
        shutil.rmtree(tmp, ignore_errors=True)  # the throwaway stack's data
    print("\n## Engine takeover results")
    print(
        f"prefill {args.prefill} intents, {args.rate:g}/s offered, stop after {args.before:g} s, "
        f"slices every {args.snapshot_every} own records; load average at the end "
        f"{os.getloadavg()}"
    )
    print(
        "| variant | rounds | outage, worst partition (median s) | moved / kept partitions "
        "(median s) | survivor rebuild (median s) "
        "| own records replayed | p99 after stop (median ms) | max (median ms) | lost / duplicated |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for v in variants:
        rs = [x for x in results if x["name"].rsplit("-", 1)[0] == v]
        lost = sum(x["offered"] - x["decided"] for x in rs)
        print(
            f"| {v} | {len(rs)} "
            f"| {statistics.median(max(x['outage'].values(), default=0.0) for x in rs):.2f} "
            f"| {statistics.median(x['outage_moved'] for x in rs):.2f} / "
            f"{statistics.median(x['outage_kept'] for x in rs):.2f} "
            f"| {statistics.median(x['rebuild'].get('seconds', float('nan')) for x in rs):.2f} "
            f"| {statistics.median(x['rebuild'].get('own_replayed', 0) for x in rs):.0f} "
            f"| {statistics.median(x['p99'] for x in rs):.0f} "
            f"| {statistics.median(x['max'] for x in rs):.0f} "
            f"| {lost} / {sum(x['duplicates'] for x in rs)} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
