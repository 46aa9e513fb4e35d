"""What PostgreSQL's WAL costs a rebuild's bulk load: `orders`' history rows COPYed into a
fresh table by `wal_level` and by where the table was made, the backend's CPU each.

    flock /tmp/bench.lock .venv/bin/python -m bench.bench_copy_wal [--events 1000000]

Builds the `orders` projection of a synthetic log on a throwaway stack (real Kafka and
PostgreSQL, fsync on), dumps its `order_events` rows (COPY text) and stops the broker.
Then, per round and way (order alternating by round, PostgreSQL restarted for each, so
every way starts from the same cold shared buffers), one backend loads the dump into a
new table and builds `order_events`' key and index and analyzes it, as a rebuild does:

- `replica, other-tx`: the local stack's default `wal_level`; the table created and
  committed before the COPY, as `tradetape rebuild` makes its build schema today;
- `replica, same-tx+FREEZE`: created in the COPY's own transaction, `COPY ... (FREEZE)`;
- `minimal, other-tx` / `minimal, same-tx+FREEZE`: the same at `wal_level = minimal`
  (`max_wal_senders = 0`), where a table created or truncated in the loading transaction
  is not WAL-logged at all (its files are fsynced at COMMIT instead; likewise any index
  built in a transaction of its own).

Prints the backend's CPU and wall seconds of the COPY, of the key, index and ANALYZE, of
the COMMIT, the WAL bytes written, and the CPU of a first and second full read of the
table (hint bits a FREEZE would have set). docs/benchmarks.md, Projections, session 24.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if not __package__:  # `python bench/X.py`: import from this checkout, like `-m bench.X`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg

from bench.bench_projections import _env, produce_all
from bench.measure import stack_settings
from deploy.kafka import create_topics
from deploy.local import LocalStack

ROOT = Path(__file__).resolve().parents[1]

COLUMNS = (
    "(event_id uuid NOT NULL, order_id text NOT NULL, account text NOT NULL, "
    "event_type text NOT NULL, status text NOT NULL, occurred_at timestamptz NOT NULL, "
    "detail jsonb NOT NULL)"
)
"""`order_events` as projections/migrations/0101_proj_orders.sql makes it, keyless."""

BUILD = (
    "CREATE UNIQUE INDEX t_pk ON t (event_id)",
    "CREATE INDEX t_order ON t (order_id, occurred_at)",
    "ANALYZE t",
)
"""What a rebuild's finish builds on it (its key as a unique index, its index)."""

WAYS = (
    ("replica", "other-tx"),
    ("replica", "same-tx+FREEZE"),
    ("minimal", "other-tx"),
    ("minimal", "same-tx+FREEZE"),
)


def backend_cpu(pid: int) -> float:
    """User + system CPU seconds of a PostgreSQL backend (same machine)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_once(dsn: str, dump: Path, level: str, how: str) -> dict[str, float]:
    """One load of `dump` into a new table `t` (dropped first) on one backend."""
    out: dict[str, float] = {}
    with psycopg.connect(dsn, autocommit=False) as c:
        row = c.execute("SHOW wal_level").fetchone()
        assert row is not None and row[0] == level, row
        c.execute("DROP TABLE IF EXISTS t")
        c.commit()
        c.execute("CHECKPOINT")
        c.commit()
        pid_row = c.execute("SELECT pg_backend_pid()").fetchone()
        lsn_row = c.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        assert pid_row is not None and lsn_row is not None
        pid, lsn = int(pid_row[0]), str(lsn_row[0])
        c.commit()
        c.execute("CREATE TABLE t " + COLUMNS)
        if how == "other-tx":
            c.commit()
        freeze = " (FREEZE)" if "FREEZE" in how else ""
        t0, c0 = time.monotonic(), backend_cpu(pid)
        with c.cursor().copy("COPY t FROM STDIN" + freeze) as cp, dump.open("rb") as f:
            while block := f.read(1 << 20):
                cp.write(block)
        t1, c1 = time.monotonic(), backend_cpu(pid)
        for stmt in BUILD:
            c.execute(stmt)
        t2, c2 = time.monotonic(), backend_cpu(pid)
        c.commit()
        t3, c3 = time.monotonic(), backend_cpu(pid)
        wal = c.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", (lsn,))
        wal_row = wal.fetchone()
        assert wal_row is not None
        c.commit()
        out.update(
            copy_cpu=c1 - c0, copy_s=t1 - t0, build_cpu=c2 - c1, build_s=t2 - t1,
            commit_cpu=c3 - c2, commit_s=t3 - t2, wal_mb=float(wal_row[0]) / 1e6,
        )  # fmt: skip
        for n in (1, 2):
            r0 = backend_cpu(pid)
            c.execute("SELECT sum(length(detail::text)), count(*) FROM t").fetchone()
            c.commit()
            out[f"read{n}_cpu"] = backend_cpu(pid) - r0
    return out


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n", 1)[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--events", type=int, default=1_000_000, help="synthetic log size")
    ap.add_argument("--rounds", type=int, default=5, help="rounds of the four ways")
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()}", flush=True)
    results: list[tuple[str, str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory(prefix="tt-bench-wal-") as tmp:
        s = stack_settings(Path(tmp), kafka_heap="1g")
        stack = LocalStack(s, echo=lambda _m: None)
        stack.up()
        try:
            create_topics(s)
            produce_all(s, args.events)
            subprocess.run(
                [sys.executable, "-m", "deploy.cli_entry", "rebuild", "orders"],
                env=_env(s), cwd=ROOT, check=True, capture_output=True,
            )  # fmt: skip
            stack.kafka.stop()
            pg = stack.postgres
            dsn = pg.admin_dsn(s.postgres_db)
            dump = Path(tmp) / "order_events.copy"
            with psycopg.connect(dsn, autocommit=True) as c:
                with (
                    c.cursor().copy("COPY proj_orders.order_events TO STDOUT") as cp,
                    dump.open("wb") as f,
                ):
                    for block in cp:
                        f.write(block)
                c.execute("DROP SCHEMA proj_orders CASCADE")
            print(f"order_events: {dump.stat().st_size / 1e6:.0f} MB of COPY text", flush=True)
            level = ""
            for r in range(args.rounds):
                for lv, how in WAYS if r % 2 == 0 else WAYS[::-1]:
                    if lv != level:
                        with psycopg.connect(pg.admin_dsn("postgres"), autocommit=True) as c:
                            c.execute(f"ALTER SYSTEM SET wal_level = '{lv}'")
                            senders = 0 if lv == "minimal" else 10
                            c.execute(f"ALTER SYSTEM SET max_wal_senders = {senders}")
                        level = lv
                    pg.stop()
                    pg.start()
                    d = load_once(dsn, dump, lv, how)
                    results.append((lv, how, d))
                    print(
                        f"round {r + 1} {lv:8} {how:15} COPY {d['copy_cpu']:.2f} s CPU "
                        f"({d['copy_s']:.2f} s) | key, index, ANALYZE {d['build_cpu']:.2f} s "
                        f"({d['build_s']:.2f} s) | COMMIT {d['commit_cpu']:.2f} s "
                        f"({d['commit_s']:.2f} s) | WAL {d['wal_mb']:.0f} MB | reads "
                        f"{d['read1_cpu']:.2f} / {d['read2_cpu']:.2f} s CPU | load "
                        f"{os.getloadavg()[0]:.1f}",
                        flush=True,
                    )
        finally:
            stack.down()
    print(f"load average after: {os.getloadavg()}", flush=True)
    for lv, how in WAYS:
        rs = [d for x, y, d in results if (x, y) == (lv, how)]

        def med(key: str, rs: list[dict[str, float]] = rs) -> float:
            return statistics.median(d[key] for d in rs)

        print(
            f"median {lv:8} {how:15} COPY {med('copy_cpu'):.2f} s, key+index+ANALYZE "
            f"{med('build_cpu'):.2f} s, COMMIT {med('commit_cpu'):.2f} s CPU "
            f"({med('commit_s'):.2f} s wall), WAL {med('wal_mb'):.0f} MB, reads "
            f"{med('read1_cpu'):.2f} / {med('read2_cpu'):.2f} s CPU",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
