"""What the engine keeps per withdrawal and per admin change: the steps and the rest.

`.venv/bin/python -m bench.bench_engine_steps [--withdrawals 2000] [--changes 500]`

In process, no broker: the pure processor (tests/engine/pure.py), one account with a
resting buy. `--withdrawals` withdrawals of 1 USDC each requested, checked, released and
settled, read through `processor.control` as a worker reads transfers.events, by the
account's owner (its records folded as the live worker folds them) and by a worker not
owning it (it reads the facts, not the records). `--changes` global limits changes, and
as many global kill switches engaged and released, read from risk.config by the owner.
tracemalloc's retained bytes per withdrawal (per change, per switch) after 50 untimed
ones, and what clearing `transfer_steps` (`AccountState.flows`, `seen_reference`,
`limit_steps`, `switch_steps`) then frees: their share. Count-based, load-independent;
runs on older trees too (it reads the lists, not the bounds). Session 23 (helper-137): the owner kept
~4.9 KB per withdrawal in two steps, forever; trimmed to the newest committed pass, ~0.
Session 24 (s24-steps): the worker not owning the account, the limits changes and the
switches, kept to the newest `STEPS_KEPT`. Session 24 (s24-settled): a settled
withdrawal's fact ids dropped from `seen_reference`.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import sys
import tracemalloc
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

if not __package__:  # `python bench/X.py`: import from this checkout, like `-m bench.X`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.processor import control
from engine.state import EngineState
from schemas import EventPayload, new_event
from schemas.events import (
    KillSwitchEngaged,
    KillSwitchReleased,
    RiskLimits,
    RiskLimitsChanged,
    Side,
)
from tests.engine.pure import Harness, transfer_fact

D = Decimal


@dataclasses.dataclass
class Kept:
    total: float
    """Bytes retained per item."""
    freed: list[float]
    """Per item: what each clear freed."""
    entries: list[int]
    """The lists' lengths at the end."""


def _retained(
    h: Harness,
    n: int,
    one: Callable[[int], None],
    lists: Callable[[EngineState], list[int]],
    clears: list[Callable[[EngineState], None]],
) -> Kept:
    """Bytes kept per `one(i)` over `n` after 50 untimed, and what each of `clears` frees."""
    for i in range(50):
        one(i)
    gc.collect()
    tracemalloc.start()
    s0 = tracemalloc.take_snapshot()
    for i in range(50, 50 + n):
        one(i)
    gc.collect()
    s1 = tracemalloc.take_snapshot()
    entries = lists(h.state)
    total = sum(d.size_diff for d in s1.compare_to(s0, "filename"))
    freed: list[float] = []
    for clear in clears:
        clear(h.state)
        gc.collect()
        s2 = tracemalloc.take_snapshot()
        rest = sum(d.size_diff for d in s2.compare_to(s0, "filename"))
        freed.append(total - rest - sum(freed))
    tracemalloc.stop()
    return Kept(total / n, [f / n for f in freed], entries)


def _harness() -> Harness:
    h = Harness(RiskLimits(), cash=D("100000000"))
    h.quote(D("29999"), D("30001"))
    h.order(Side.BUY, D("0.1"), D("29000"))
    return h


def withdrawals(n: int, owned: bool) -> Kept:
    h = _harness()
    ctx = h.ctx if owned else dataclasses.replace(h.ctx, owns=lambda _a: False)

    def withdraw(i: int) -> None:
        for step in ("request", "check", "release", "settle"):
            p = transfer_fact(f"w{i}", step, amount="1", settled_at=h.now)
            control(h.state, new_event(p, producer="transfers", occurred_at=h.tick()), ctx)

    def no_steps(s: EngineState) -> None:
        s.transfer_steps.clear()

    def no_flows(s: EngineState) -> None:
        s.account("A1").flows.clear()

    def no_seen(s: EngineState) -> None:
        s.seen_reference.clear()

    return _retained(
        h, n, withdraw,
        lambda s: [len(s.transfer_steps.get("A1", ())), len(s.account("A1").flows),
                   len(s.seen_reference)],
        [no_steps, no_flows, no_seen],
    )  # fmt: skip


def admin(n: int, kind: str) -> Kept:
    h = _harness()

    def read(p: EventPayload) -> None:
        control(h.state, new_event(p, producer="engine", occurred_at=h.tick()), h.ctx)

    def change(i: int) -> None:
        if kind == "limits":
            limits = RiskLimits(max_open_orders=1000 + i % 7)
            read(RiskLimitsChanged(scope="*", config_version=i + 2, limits=limits,
                                   changed_by="admin"))  # fmt: skip
        else:
            read(KillSwitchEngaged(scope="*", engaged_by="admin", reason=f"t{i}"))
            read(KillSwitchReleased(scope="*", released_by="admin", reason=f"t{i}"))

    def no_list(s: EngineState) -> None:
        if kind == "limits":
            s.limit_steps.clear()
        else:
            s.switch_steps.clear()

    return _retained(
        h, n, change,
        lambda s: [len(s.limit_steps.get("*", ())) if kind == "limits" else len(s.switch_steps)],
        [no_list],
    )  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--withdrawals", type=int, default=2000)
    ap.add_argument("--changes", type=int, default=500)
    args = ap.parse_args()
    n, m = args.withdrawals, args.changes
    for owned in (True, False):
        w = withdrawals(n, owned)
        print(
            f"{'owner' if owned else 'not owner'}: {w.total:.0f} B kept per withdrawal,"
            f" {w.freed[0]:.0f} of them by transfer_steps, {w.freed[1]:.0f} by flows,"
            f" {w.freed[2]:.0f} by seen_reference ({w.entries[0]:.0f} steps,"
            f" {w.entries[1]:.0f} flows, {w.entries[2]:.0f} seen_reference ids for"
            f" {n + 50} withdrawals)"
        )
    for kind in ("limits", "switch"):
        a = admin(m, kind)
        what = "global limits change" if kind == "limits" else "switch engaged and released"
        lst = "limit_steps" if kind == "limits" else "switch_steps"
        print(
            f"{what}: {a.total:.0f} B kept each, {a.freed[0]:.0f} of them by {lst}"
            f" ({a.entries[0]:.0f} kept for {m + 50})"
        )


if __name__ == "__main__":
    main()
