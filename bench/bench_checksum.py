"""The streamed checksum (`projections.checksum.checksum`) on one 200k-row table of every
column type the projections use, for one or more source trees, alternated in rounds.

    flock /tmp/bench.lock .venv/bin/python bench/bench_checksum.py --tree /tmp/base --tree .

Starts a throwaway PostgreSQL, fills the table once (`ROWS`), then per round and tree runs
a fresh process that imports that tree's `projections.checksum` and times `checksum`
(best of `--repeat`). Prints wall seconds, the client process's CPU seconds (the Python
side of the checksum, less disturbed by other load) and the digest per run. The jsonb column holds what
the projections hold: objects of strings (most rows), arrays of strings, objects with
numbers, SQL NULL, and a few top-level scalars and JSON nulls.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROWS = 200_000

FILL = """
CREATE TABLE ck.rows (
    id integer PRIMARY KEY, t text, u uuid, b boolean, big bigint,
    n numeric, n2 numeric, ts timestamptz, j jsonb
);
INSERT INTO ck.rows
SELECT i,
       'account-' || (i % 977),
       md5(i::text)::uuid,
       CASE WHEN i % 7 = 0 THEN NULL ELSE i % 2 = 0 END,
       i::bigint * 1000003,
       (i % 100000)::numeric / 1000,
       CASE WHEN i % 3 = 0 THEN NULL ELSE (i % 12345)::numeric(20, 8) END,
       timestamptz '2026-01-01 00:00:00+00' + i * interval '1.5 second',
       CASE
           WHEN i % 100 = 0 THEN 'null'::jsonb
           WHEN i % 100 = 1 THEN to_jsonb('s' || i)
           WHEN i % 10 = 2 THEN NULL
           WHEN i % 10 = 3 THEN jsonb_build_object('qty', i % 1000, 'px', (i % 77) / 4.0)
           WHEN i % 10 = 4 THEN jsonb_build_array('R' || (i % 13), 'LIMIT', 'x' || i)
           ELSE jsonb_build_object('asset', 'BNB', 'amount', ((i % 999) / 100.0)::text,
                                   'note', 'n' || i, 'gone', NULL)
       END
FROM generate_series(1, %s) AS i;
ANALYZE ck.rows;
"""

MEASURE = """
import sys, time
sys.path.insert(0, sys.argv[1])
import psycopg
from projections.checksum import checksum
from projections.framework import Projection, Table

class Sample(Projection):
    name = "cksample"
    tables = (Table("rows", ("id", "t", "u", "b", "big", "n", "n2", "ts", "j"), ("id",)),)

best = cpu = None
with psycopg.connect(sys.argv[2], autocommit=True) as conn:
    for _ in range(int(sys.argv[3])):
        t0, c0 = time.perf_counter(), time.process_time()
        digest, counts = checksum(conn, Sample(), "ck")
        s, c = time.perf_counter() - t0, time.process_time() - c0
        best = s if best is None else min(best, s)
        cpu = c if cpu is None else min(cpu, c)
print(f"{best:.3f} {cpu:.3f} {digest[:16]} {counts['rows']}")
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tree", action="append", required=True, help="a source tree (repeat)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import psycopg

    from bench.measure import stack_settings
    from deploy.local.postgres_node import PostgresNode

    data_dir = Path(tempfile.mkdtemp(prefix="bench-ck-"))
    node = PostgresNode(stack_settings(data_dir))
    node.start()
    try:
        dsn = node.admin_dsn("postgres")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA ck")
            conn.execute(FILL.replace("%s", str(ROWS)))
        trees = [str(Path(t).resolve()) for t in args.tree]
        times: dict[str, list[float]] = {t: [] for t in trees}
        cpus: dict[str, list[float]] = {t: [] for t in trees}
        for r in range(args.rounds):
            for tree in trees:
                out = subprocess.run(
                    [sys.executable, "-c", MEASURE, tree, dsn, str(args.repeat)],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout.split()
                times[tree].append(float(out[0]))
                cpus[tree].append(float(out[1]))
                print(
                    f"round {r} {tree}: {out[0]} s, client CPU {out[1]} s, "
                    f"digest {out[2]} rows {out[3]}",
                    flush=True,
                )
        for tree, ts in times.items():
            cs = sorted(cpus[tree])
            print(
                f"{tree}: wall best {min(ts):.3f} s, median {sorted(ts)[len(ts) // 2]:.3f} s; "
                f"client CPU best {cs[0]:.3f} s, median {cs[len(cs) // 2]:.3f} s"
            )
    finally:
        node.stop()
        time.sleep(0.2)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
