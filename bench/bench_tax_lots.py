"""The `tax_lots` fold in memory, against `balances` (the same topics), per event.

    flock /tmp/bench.lock .venv/bin/python -m bench.bench_tax_lots [--events 200000]

Generates a synthetic log (`projections.synthetic.generate`), decodes it once, then folds
each projection's share in batches of 5,000 into a fresh in-memory `State`, alternating
which goes first each round; prints the process CPU time per event folded and the
medians. No Kafka, no PostgreSQL: the fold's own cost (a live projector adds its I/O).

`--per-batch N`: batches of N events, each into a new `State` whose stateful rows are
the last batch's as a rebuild keeps them (`bulkload.freeze`, read back on demand as
`BulkBuild.thaw` does): a live projector likewise loads and renders each touched row
once a batch, so a state row's size costs per batch, not per event. `--live`: a jsonb
column is read back parsed, as psycopg returns it to a live batch (a rebuild's frozen
row keeps what the fold put: text stays text). `--order topics`: each topic whole, the
smallest first (accounts.events, transfers.events, then orders.lifecycle), as a rebuild's
reads drift apart at worst: most entries then sort before their book's last.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import orjson

from projections.bulkload import freeze
from projections.core import PROJECTIONS
from projections.framework import Key, Projection, Row, State, Table, WriteMode
from projections.store import RawRecord, prepare
from projections.synthetic import generate
from schemas import encode

JSONB = frozenset({"open_lots", "last_key", "tail", "entries", "opening", "tail_opening"})
"""`tax_lots`' jsonb state columns (migrations 0130, 0131): `--live` reads them parsed."""


def _fold_per_batch(p: Projection, items: list[Any], size: int, live: bool) -> None:
    """Fold `items` in batches of `size`, each into a new `State` (see the docstring)."""
    cold: dict[str, dict[Key, str]] = {}

    def thaw(table: Table, key: Key) -> Row | None:
        frozen = cold.get(table.name, {}).get(key)
        if frozen is None:
            return None
        row = orjson.loads(frozen)
        if live:  # as psycopg returns a jsonb column: parsed, whatever was written
            for i, c in enumerate(table.columns):
                if c in JSONB and isinstance(row[i], str):
                    row[i] = orjson.loads(row[i])
        return tuple(row)

    for i in range(0, len(items), size):
        state = State(loader=thaw)
        p.fold(state, items[i : i + size])
        for t in p.tables:
            if t.stateful and t.mode is WriteMode.UPSERT:
                kept = cold.setdefault(t.name, {})
                for key, row in state.dirty.get(t.name, {}).items():
                    kept[key] = freeze(row)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--per-batch", type=int, default=0, help="a new State every N events")
    ap.add_argument("--live", action="store_true", help="--per-batch, jsonb read parsed")
    ap.add_argument(
        "--order", choices=("log", "topics"), default="log",
        help="the generator's order, or each topic whole, the smallest first",
    )  # fmt: skip
    args = ap.parse_args()
    records: list[RawRecord] = []
    ends: dict[str, int] = {}
    for e in generate(7, args.events):
        _k, v, h = encode(e)
        topic = str(e.topic)
        ends[topic] = ends.get(topic, -1) + 1
        records.append(RawRecord(topic, 0, ends[topic], v, h))
    if args.order == "topics":
        sizes = {t: n for t, n in ends.items()}
        records.sort(key=lambda r: sizes[r.topic])  # stable: each topic in its own order
    names = ("tax_lots", "balances")
    per: dict[str, list[float]] = {n: [] for n in names}  # microseconds, not money
    for rnd in range(args.rounds):
        for name in names if rnd % 2 == 0 else tuple(reversed(names)):
            p = PROJECTIONS[name]
            topics = {str(t) for t in p.topics}
            items = prepare([r for r in records if r.topic in topics], [p])[0].items
            t0 = time.process_time()  # seconds, not money
            if args.per_batch:
                _fold_per_batch(p, items, args.per_batch, args.live)
            else:
                state = State()
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
