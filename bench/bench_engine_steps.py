"""What the engine keeps per withdrawal: `EngineState.transfer_steps` and the rest.

`.venv/bin/python -m bench.bench_engine_steps [--withdrawals 2000]`

In process, no broker: the pure processor (tests/engine/pure.py), one account with a
resting buy, `--withdrawals` withdrawals of 1 USDC each requested, checked, released and
settled, read through `processor.control` as a worker reads transfers.events, by the
account's owner (its records folded as the live worker folds them) and by a worker not
owning it (a hand-over keeps what it needs). tracemalloc's retained bytes per withdrawal
after 50 untimed ones, and what clearing `transfer_steps` then frees: the steps' share.
Count-based, load-independent. Session 23 (helper-137): the owner kept ~4.9 KB per
withdrawal in two steps, forever; trimmed to the newest committed pass, ~0.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import sys
import tracemalloc
from decimal import Decimal
from pathlib import Path

if not __package__:  # `python bench/X.py`: import from this checkout, like `-m bench.X`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.processor import control
from schemas import new_event
from schemas.events import (
    RiskLimits,
    Side,
)
from tests.engine.pure import Harness, transfer_fact

D = Decimal


def measure(n: int, owned: bool) -> dict[str, float]:
    h = Harness(RiskLimits(), cash=D("100000000"))
    h.quote(D("29999"), D("30001"))
    h.order(Side.BUY, D("0.1"), D("29000"))
    ctx = h.ctx if owned else dataclasses.replace(h.ctx, owns=lambda _a: False)

    def withdraw(i: int) -> None:
        for step in ("request", "check", "release", "settle"):
            p = transfer_fact(f"w{i}", step, amount="1", settled_at=h.now)
            control(h.state, new_event(p, producer="transfers", occurred_at=h.tick()), ctx)

    for i in range(50):
        withdraw(i)
    gc.collect()
    tracemalloc.start()
    s0 = tracemalloc.take_snapshot()
    for i in range(50, 50 + n):
        withdraw(i)
    gc.collect()
    s1 = tracemalloc.take_snapshot()
    entries = len(h.state.transfer_steps.get("A1", ()))
    h.state.transfer_steps.clear()
    gc.collect()
    s2 = tracemalloc.take_snapshot()
    tracemalloc.stop()
    total = sum(d.size_diff for d in s1.compare_to(s0, "filename"))
    rest = sum(d.size_diff for d in s2.compare_to(s0, "filename"))
    return {"total": total / n, "steps": (total - rest) / n, "entries": entries}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--withdrawals", type=int, default=2000)
    n = ap.parse_args().withdrawals
    for owned in (True, False):
        m = measure(n, owned)
        print(
            f"{'owner' if owned else 'not owner'}: {m['total']:.0f} B kept per withdrawal,"
            f" {m['steps']:.0f} of them by transfer_steps"
            f" ({m['entries']:.0f} steps for {n + 50} withdrawals)"
        )


if __name__ == "__main__":
    main()
