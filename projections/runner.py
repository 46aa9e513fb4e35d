"""`tradetape run projections`: every projector, one process per topic group.

Projections that read a common topic form a group with one consumer, so each record is
decoded once, except that the four heavy `orders.lifecycle` projections run as two
groups (`LIVE_SPLIT`) so their folds use two cores, `decisions` and `drawdown` share
one, and the projections with few events a second share one (`JOIN`): five processes (`tax_lots` apart).
Each group runs in its own process so groups never share a GIL. The parent supervises:
a group process that dies is restarted after a backoff (it resumes from the offsets
stored in PostgreSQL, never skipping ahead). On SIGTERM/SIGINT the parent stops every
group (each finishes or rolls back its batch) and exits 0. A group
process dies with its parent (PR_SET_PDEATHSIG), so `kill -9` of the parent leaves no
orphan projector behind.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Sequence
from multiprocessing.process import BaseProcess

from deploy.kafka import PartitionsChanged
from deploy.settings import Settings
from deploy.signals import handling_stop
from projections.bulkload import die_with_parent
from projections.core import PROJECTIONS
from projections.foldversion import FoldVersionMismatch
from projections.framework import Projection
from projections.projector import OffsetsOutOfRange, Projector, Target

log = logging.getLogger("projections.runner")

LIVE_BATCH = 5000
"""Upper bound of a live batch, reached only when behind. 20,000 was tried: cheaper per
record, but one such batch holds every record in it for seconds (lag p99 got worse)."""
POLL_SECONDS = 0.1
"""How long an idle live poll waits for a first record. Polls are eager: a batch is
whatever has arrived, so records never wait for a batch to fill."""


SPLIT: tuple[frozenset[str], ...] = (
    frozenset({"orders", "fills"}),
    frozenset({"positions", "balances"}),
    frozenset({"drawdown"}),
    frozenset({"decisions"}),
    frozenset({"tax_lots"}),
)
"""The groups of a parallel rebuild (`projections.rebuild`): projections that share
topics but build as separate groups, each with its own consumer, so their folds run on
different cores. The four projections of `orders.lifecycle` cost ~75 µs per record
together on one core (decoded once); split in two they cost ~45 µs each (the shared
record is decoded twice) in parallel. `drawdown` reads `risk.decisions` beside
`decisions`, the slowest fold: in one group a rebuild would fold both on one core, so
it builds apart and decodes the topic's records itself. Its `risk.config` (the
releases, fold version 3) joins `risk_config` and the light `JOIN` group into one
component with `decisions`: `decisions` is cut out too, so it builds alone. Live, the
runner cuts along `LIVE_SPLIT`. `tax_lots` reads the topics of `balances` and of the
light group (accounts.events): it builds and runs apart, so neither carries its fold."""


LIVE_SPLIT: tuple[frozenset[str], ...] = (
    frozenset({"orders", "fills"}),
    frozenset({"positions", "balances"}),
    frozenset({"decisions", "drawdown"}),
    frozenset({"tax_lots"}),
)
"""`SPLIT` for `tradetape run projections`: `decisions` and `drawdown`, the two
projections of `risk.decisions`, run as one group (five processes with `tax_lots`): each `RiskDecision`
is decoded once, and one consumer and one transaction a batch serve both. Live, a group
costs mostly per batch, not per record: each group process fetches, polls and commits a
transaction (lock, offsets, seen ids, state rows, writes, COMMIT) up to ~20 times a
second whatever it carries; at 5,000 events/s `decisions` and `drawdown` took 12-17 µs
of CPU per event offered each apart and 19 together (docs/benchmarks.md, session 22).
The light `JOIN` group stays apart: joined with them too (three processes) it saved
~10 µs more, but on a machine short of cores that one process then fell behind with
the others, and the light projections' lag went from under a second to the heavy
groups' seconds. A rebuild folds millions of records, where both cores win: `SPLIT`."""


JOIN: tuple[frozenset[str], ...] = (
    frozenset({"accounts", "alerts", "deadletters", "risk_config"}),
)
"""Projections with no topic in common that still share one group: few events a
second each, so apart they would mostly pay fixed costs (a consumer and its fetches,
a transaction per handful of records) four times over."""


def topic_groups(
    projections: Sequence[Projection],
    split: Sequence[frozenset[str]] = SPLIT,
    join: Sequence[frozenset[str]] = JOIN,
) -> list[list[Projection]]:
    """Projections joined by shared topics or a common `join` set (connected
    components), each component cut along `split` (a name in no split set stays with
    the component's rest), in name order."""

    def related(p: Projection, q: Projection) -> bool:
        return bool(set(p.topics) & set(q.topics)) or any(
            p.name in names and q.name in names for names in join
        )

    groups: list[list[Projection]] = []
    for p in sorted(projections, key=lambda x: x.name):
        touching = [g for g in groups if any(related(p, q) for q in g)]
        merged = [p] + [q for g in touching for q in g]
        groups = [g for g in groups if g not in touching] + [sorted(merged, key=lambda x: x.name)]

    def label(p: Projection) -> int:
        return next((i for i, names in enumerate(split) if p.name in names), -1)

    cut: list[list[Projection]] = []
    for g in groups:
        parts: dict[int, list[Projection]] = {}
        for p in g:
            parts.setdefault(label(p), []).append(p)
        cut.extend(parts.values())
    return sorted(cut, key=lambda g: g[0].name)


def live_groups(projections: Sequence[Projection]) -> list[list[Projection]]:
    """The groups `tradetape run projections` runs, one process each (`LIVE_SPLIT`)."""
    return topic_groups(projections, split=LIVE_SPLIT)


def run_group(
    settings: Settings,
    projections: Sequence[Projection],
    stop: threading.Event,
    batch_size: int = LIVE_BATCH,
) -> None:
    """Run one group until `stop`; on a database or broker failure, reopen after a
    backoff from the stored offsets."""
    backoff = 0.5
    name = "+".join(p.name for p in projections)
    held = ""
    while not stop.is_set():
        try:
            targets = [Target.live(p) for p in projections]
            # Eager: a batch is whatever has arrived, so batches grow with the load and
            # nothing waits for a batch to fill. Read ahead: the next batch is polled
            # and decoded on a thread while this one waits for PostgreSQL (psycopg and
            # librdkafka release the GIL), which is what lets the orders.lifecycle
            # groups keep up at 5,000 events/s on a loaded machine.
            with Projector(
                settings, targets, batch_size=batch_size, eager=True, pipelined=True
            ) as proj:
                backoff = 0.5
                while not stop.is_set():
                    proj.step(POLL_SECONDS)
        except (PartitionsChanged, OffsetsOutOfRange, FoldVersionMismatch) as exc:
            # held until an operator acts (the partitions, a rebuild): said once per
            # change, looked at again, not a traceback at every retry
            if str(exc) != held:
                log.error("%s; looking again every 10 s", exc)
            held = str(exc)
            stop.wait(10.0)
        except Exception:
            log.exception("projector %s failed; restarting from stored offsets", name)
            stop.wait(backoff)
            backoff = min(backoff * 2, 10.0)


def _group_main(settings: Settings, names: list[str], parent: int) -> None:
    die_with_parent(parent)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda _s, _f: stop.set())
    signal.signal(signal.SIGINT, lambda _s, _f: stop.set())
    run_group(settings, [PROJECTIONS[n] for n in names], stop)


def main(settings: Settings, names: list[str] | None = None) -> int:
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    stop = threading.Event()

    def _stop(_signum: int, _frame: object) -> None:
        stop.set()

    with handling_stop(_stop):
        return _supervise(settings, names, stop)


def _supervise(settings: Settings, names: list[str] | None, stop: threading.Event) -> int:
    """`main`'s loop: each live group in a process of its own, restarted if it exits,
    until `stop` is set."""
    selected = [PROJECTIONS[n] for n in (names or list(PROJECTIONS))]
    groups = [[p.name for p in g] for g in live_groups(selected)]
    ctx = multiprocessing.get_context("fork")
    me = os.getpid()
    procs: dict[int, BaseProcess] = {}
    restarts: dict[int, float] = {}  # monotonic seconds of the last restart, not money

    def start(i: int) -> None:
        proc = ctx.Process(
            target=_group_main,
            args=(settings, groups[i], me),
            name=f"projector-{'+'.join(groups[i])}",
            daemon=False,
        )
        proc.start()
        procs[i] = proc

    for i in range(len(groups)):
        start(i)
    log.info(
        "projectors running: %s",
        "; ".join(f"{'+'.join(g)} (pid {procs[i].pid})" for i, g in enumerate(groups)),
    )
    backoff: dict[int, float] = {i: 0.5 for i in range(len(groups))}  # seconds, not money
    while not stop.is_set():
        stop.wait(0.2)
        now = time.monotonic()
        for i, proc in list(procs.items()):
            if stop.is_set() or proc.is_alive():
                continue
            if i not in restarts:
                log.error(
                    "projector group %s exited with %s; restarting in %.1fs",
                    "+".join(groups[i]), proc.exitcode, backoff[i],
                )  # fmt: skip
                restarts[i] = now + backoff[i]
                backoff[i] = min(backoff[i] * 2, 10.0)
            elif now >= restarts[i]:
                del restarts[i]
                start(i)
    for proc in procs.values():
        if proc.is_alive() and proc.pid is not None:
            os.kill(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    for proc in procs.values():
        proc.join(max(0.1, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
            proc.join(5)
    return 0
