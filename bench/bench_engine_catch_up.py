"""What matching the kept prints costs: after an assignment, live per print, and for a
lagging order.

`.venv/bin/python -m bench.bench_engine_catch_up [--orders 1000,10000] [--repeats 5]`

In process, no broker: the pure processor (tests/engine/pure.py) rests `--orders` signed
limit buys over 64 accounts, then 1,024 prints (a full `PRINT_HISTORY`) are read while
the worker owns no partition (a rebalance's gap). Timed, median of `--repeats` on a copy
of that state each:

- `catch_up` when no print crosses a resting order (the usual case after a rebalance: the
  kept prints were matched live or cross nothing) and when every print crosses (a worker
  was down while the market traded through every resting order);
- a live print that crosses nothing: with every account owned, with the ownership check
  the worker passes (`Context.owns`), and walking every open order as before session 10
  (`EngineState.may_cross` forced to True);
- an order decided after 1,024 newer prints were read (`_meet_kept_prints`), none of them
  crossing it: the first after them (it builds their `PrintScan`) and the next ones,
  against one decided after them all.

`--revocations 0,30,300 --padded 10000,100000`: `catch_up` with that many revoked
producers (their orders long cancelled: revocations are never undone, so they pile up)
over that many open orders (the 1,000-order world's orders copied under new ids into
`EngineState.orders`, what the revocation pass walks), best of 3. Session 20: 300 over
100,000 took 10.5 s when every revocation looked at every order, 78 ms with one pass.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest.mock import patch

if not __package__:  # `python bench/X.py`: import from this checkout, like `-m bench.X`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import auth
from engine.partitioning import partitioner
from engine.processor import catch_up, process
from engine.state import PRINT_HISTORY, EngineState
from engine.worker import Ownership
from schemas import new_event
from schemas.events import ProducerRegistered, ProducerRevoked, Side
from tests.engine.pure import Harness

ACCOUNTS = tuple(f"CU{i:02d}" for i in range(64))


def _everyone(_account: str) -> bool:
    return True


def _nobody(_account: str) -> bool:
    return False


def _always(_state: EngineState, _instrument: str, _price: Decimal) -> bool:
    return True


def _world(n_orders: int) -> Harness:
    h = Harness(cash=Decimal("1e12"), accounts=ACCOUNTS)
    h.quote(Decimal("29999"), Decimal("30001"), qty=Decimal("1e6"))
    for i in range(n_orders):
        limit = Decimal(29000 + (i % 900))
        h.order(Side.BUY, Decimal("0.01"), limit, account=ACCOUNTS[i % len(ACCOUNTS)])
    return h


def _print(h: Harness, price: Decimal) -> Any:
    """A print read from the market-data topic, not yet processed."""
    trade = h.market_trade(price)
    return new_event(trade, producer="md", occurred_at=h.tick())


def _with_gap(h: Harness, price: Decimal) -> Harness:
    g = copy.deepcopy(h)
    g.ctx.owns = _nobody
    for _ in range(PRINT_HISTORY):
        process(g.state, _print(g, price), g.ctx)
    g.ctx.owns = None
    return g


def _median_ms(runs: list[float]) -> float:
    return statistics.median(runs) * 1000


def _timed(setup: Callable[[], Any], run: Callable[[Any], Any], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        arg = setup()
        t0 = time.perf_counter()
        run(arg)
        out.append(time.perf_counter() - t0)
    return out


def measure(n: int, repeats: int) -> None:
    h = _world(n)
    none_cross = _with_gap(h, Decimal("30500"))
    all_cross = _with_gap(h, Decimal("28000"))
    fills: list[int] = []

    def run_catch_up(g: Harness) -> None:
        fills.append(sum(e.event_type == "Fill" for e in catch_up(g.state, g.ctx, _everyone)))

    quiet = _timed(lambda: copy.deepcopy(none_cross), run_catch_up, repeats)
    busy = _timed(lambda: copy.deepcopy(all_cross), run_catch_up, repeats)
    print(
        f"{n} resting orders, {PRINT_HISTORY} kept prints: catch_up "
        f"{_median_ms(quiet):.1f} ms when none crosses ({fills[0]} fills), "
        f"{_median_ms(busy):.1f} ms when all cross ({fills[-1]} fills)",
        flush=True,
    )
    owned = Ownership(partitioner(6), frozenset(range(6)))
    for label, owns, walk in (
        ("every account", None, False),
        ("ownership check", owned, False),
        ("walking every open order (before session 10)", None, True),
    ):
        g = copy.deepcopy(h)
        g.ctx.owns = owns
        events = [_print(g, Decimal("30500")) for _ in range(500)]
        process(g.state, _print(g, Decimal("30500")), g.ctx)  # builds the resting limits
        with ExitStack() as stack:
            if walk:
                stack.enter_context(patch.object(EngineState, "may_cross", _always))
            t0 = time.perf_counter()
            for e in events:
                process(g.state, e, g.ctx)
            per = (time.perf_counter() - t0) / len(events) * 1e6
        print(f"  live print crossing nothing, {label}: {per:.0f} us", flush=True)

    def order(g: Harness, *, lagged: bool = False) -> None:
        if lagged:
            g.tick(-(PRINT_HISTORY + 5) * 0.01)  # stamped before every kept print
        g.order(Side.BUY, Decimal("0.01"), Decimal("29500"), account=ACCOUNTS[0])

    def first_lagged(g: Harness) -> None:
        order(g, lagged=True)

    def warmed(lagged: bool) -> Harness:
        g = _with_gap(h, Decimal("30500"))
        order(g, lagged=True)  # the first lagged order builds the prints' scan
        return g

    first = _timed(lambda: _with_gap(h, Decimal("30500")), first_lagged, repeats)
    lag = _timed(lambda: warmed(True), first_lagged, repeats)
    plain = _timed(lambda: warmed(False), order, repeats)
    print(
        f"  an order decided after {PRINT_HISTORY} newer prints, none crossing it: first "
        f"after them {_median_ms(first):.2f} ms (builds their scan), next ones "
        f"{_median_ms(lag):.2f} ms; an order decided after them all: {_median_ms(plain):.2f} ms",
        flush=True,
    )


def measure_revocations(padded: list[int], revocations: list[int]) -> None:
    world = _world(1000)
    for n in padded:
        h = copy.deepcopy(world)
        seed = list(h.state.orders.values())
        for i in range(n - len(seed)):
            copied = dataclasses.replace(seed[i % len(seed)], order_id=f"pad-{i}")
            h.state.orders[copied.order_id] = copied
        for r in revocations:
            g = copy.deepcopy(h)
            for i in range(r):
                _, pub = auth.new_keypair()
                g.admin(
                    ProducerRegistered(
                        producer_id=f"x{i}", public_key=pub, accounts=(ACCOUNTS[0],),
                        registered_by="admin",
                    )
                )  # fmt: skip
                g.admin(ProducerRevoked(producer_id=f"x{i}", revoked_by="admin"))
            runs = []
            for _ in range(3):
                t0 = time.perf_counter()
                assert catch_up(g.state, g.ctx, _everyone) == []
                runs.append(time.perf_counter() - t0)
            print(
                f"{n} open orders, {r} revocations: catch_up {min(runs) * 1000:.1f} ms",
                flush=True,
            )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--orders", default="1000,10000", help="resting orders, comma-separated")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--revocations", help="revoked producers, comma-separated (see above)")
    ap.add_argument("--padded", default="10000,100000", help="open orders with --revocations")
    args = ap.parse_args()
    if args.revocations is not None:
        measure_revocations(
            [int(x) for x in args.padded.split(",")],
            [int(x) for x in args.revocations.split(",")],
        )
        return 0
    for n in (int(x) for x in args.orders.split(",")):
        measure(n, args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
