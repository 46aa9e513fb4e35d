"""The `tax_lots` fold in memory, against `balances` (the same topics), per event.

    flock /tmp/bench.lock .venv/bin/python -m bench.bench_tax_lots [--events 200000]

Generates a synthetic log (`projections.synthetic.generate`), decodes it once, then folds
each projection's share in batches of 5,000 into a fresh in-memory `State`, alternating
which goes first each round; prints the process CPU time per event folded and the
medians. No Kafka, no PostgreSQL: the fold's own cost (a live projector adds its I/O).
"""

from __future__ import annotations

import argparse
import statistics
import time

from projections.core import PROJECTIONS
from projections.framework import State
from projections.store import RawRecord, prepare
from projections.synthetic import generate
from schemas import encode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    records: list[RawRecord] = []
    ends: dict[str, int] = {}
    for e in generate(7, args.events):
        _k, v, h = encode(e)
        topic = str(e.topic)
        ends[topic] = ends.get(topic, -1) + 1
        records.append(RawRecord(topic, 0, ends[topic], v, h))
    names = ("tax_lots", "balances")
    per: dict[str, list[float]] = {n: [] for n in names}  # microseconds, not money
    for rnd in range(args.rounds):
        for name in names if rnd % 2 == 0 else tuple(reversed(names)):
            p = PROJECTIONS[name]
            topics = {str(t) for t in p.topics}
            items = prepare([r for r in records if r.topic in topics], [p])[0].items
            state = State()
            t0 = time.process_time()  # seconds, not money
            for i in range(0, len(items), 5000):
                p.fold(state, items[i : i + 5000])
            spent = time.process_time() - t0  # seconds, not money
            per[name].append(spent / len(items) * 1e6)
            print(f"round {rnd} {name}: {len(items)} events, {per[name][-1]:.1f} us/event")
    for name, values in per.items():
        print(f"{name}: median {statistics.median(values):.1f} us/event")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
