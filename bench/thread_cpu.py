"""Where a benchmarked worker's CPU goes, thread by thread (Linux `/proc`).

`.venv/bin/python -m bench.thread_cpu BENCH_PID [--match "run engine"] [--out FILE.json]`
follows every process under BENCH_PID whose command line contains `--match`, samples the
user+system CPU of each of its threads once a second until BENCH_PID exits, and prints
the totals by thread: the Python main thread (the loop), librdkafka's own threads
(`rdk:main`, `rdk:broker*`, `rdk:bg`) and the other Python threads (e.g. the engine's
committer), which `/proc` names after the process. `bench_engine` gives the CPU per
intent of the whole worker; this says which thread spent it, without touching the
worker (nothing is injected, unlike a profiler).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for t in tasks:
        try:
            kids += [int(k) for k in Path(f"/proc/{pid}/task/{t}/children").read_text().split()]
        except OSError:
            pass
    return kids


def _tree(root: int) -> list[int]:
    seen: list[int] = []
    todo = [root]
    while todo:
        pid = todo.pop()
        seen.append(pid)
        todo += _children(pid)
    return seen


def thread_seconds(pid: int) -> dict[int, tuple[str, float]]:
    """tid -> (thread name, user+system CPU seconds so far)."""
    out: dict[int, tuple[str, float]] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for t in tids:
        try:
            stat = Path(f"/proc/{pid}/task/{t}/stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(t)] = (name, (int(fields[11]) + int(fields[12])) / TICK)
    return out


def label(pid: int, tid: int, name: str) -> str:
    if tid == pid:
        return "python main thread"
    if name.startswith("rdk:broker"):
        return "rdk:broker*"
    if name.startswith("rdk:"):
        return name
    return "other python threads"


def _alive(pid: int) -> bool:
    """Running (a zombie, exited but not yet reaped by its parent, is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :].split()[0] != "Z"


def follow(root: int, match: str, every: float = 1.0) -> dict[tuple[int, int], tuple[str, float]]:
    """Each matching thread's last sample, until `root` exits."""
    last: dict[tuple[int, int], tuple[str, float]] = {}
    while _alive(root):
        for pid in _tree(root):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if match not in cmd:
                continue
            for tid, (name, cpu) in thread_seconds(pid).items():
                last[(pid, tid)] = (label(pid, tid, name), cpu)
        time.sleep(every)
    return last


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pid", type=int, help="the benchmark process to follow")
    ap.add_argument("--match", default="run engine", help="command-line text of the workers")
    ap.add_argument("--out", type=Path, default=None, help="also write the totals as JSON")
    args = ap.parse_args()
    last = follow(args.pid, args.match)
    totals: dict[str, float] = {}
    for name, cpu in last.values():
        totals[name] = totals.get(name, 0.0) + cpu
    whole = sum(totals.values()) or 1.0
    for name, cpu in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"{name:24s} {cpu:8.2f} s  {cpu / whole * 100:5.1f} %")
    if args.out is not None:
        args.out.write_text(json.dumps(dict(totals), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
