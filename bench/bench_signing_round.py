"""End-to-end latency of a FROST signing round across signer processes over Kafka.

Starts a throwaway local stack on free ports, a 2-of-3 and a 3-of-5 dealer group, one
`tradetape run signer` process per share, and a warm coordinator; reports medians and
p90 over N rounds. Run: `.venv/bin/python -m bench.bench_signing_round [--rounds N]`.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.measure import free_port
from deploy.local import LocalStack
from deploy.settings import Settings
from signer_ffi.ceremony import dealer_keygen
from signer_ffi.coordinator import SigningCoordinator


def _round_trip(
    settings: Settings, threshold: int, signers: int, rounds: int, work: Path
) -> list[float]:
    passphrase = secrets.token_urlsafe(16)
    os.environ["TRADETAPE_SIGNER_PASSPHRASE"] = passphrase
    key_dir = work / f"g{threshold}of{signers}"
    group = dealer_keygen(threshold, signers, key_dir)
    env = dict(os.environ)
    env.update(
        TRADETAPE_KAFKA_PORT=str(settings.kafka_port),
        TRADETAPE_POSTGRES_PORT=str(settings.postgres_port),
        TRADETAPE_DATA_DIR=str(settings.data_dir),
        TRADETAPE_SIGNER_KEY_DIR=str(key_dir),
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "deploy.cli_entry", "run", "signer", "--id", str(i)],
            env=env,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        for i in range(1, signers + 1)
    ]
    try:
        for p in procs:
            assert p.stderr is not None and "serving group" in p.stderr.readline()
        out = []
        with SigningCoordinator(settings, group) as coordinator:
            for n in range(rounds + 3):
                t0 = time.perf_counter()
                coordinator.sign(secrets.token_bytes(32), purpose="bench", timeout=30)
                if n >= 3:  # warm-up rounds excluded
                    out.append((time.perf_counter() - t0) * 1000)
        return out
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        settings = Settings(
            data_dir=work / "stack",
            kafka_port=free_port(),
            kafka_controller_port=free_port(),
            postgres_port=free_port(),
            postgres_fsync=False,
        )
        stack = LocalStack(settings, echo=lambda m: print(m, file=sys.stderr))
        stack.up()
        try:
            print("| group | rounds | median ms | p90 ms | max ms |")
            print("|---|---|---|---|---|")
            for t, n in ((2, 3), (3, 5)):
                lat = sorted(_round_trip(settings, t, n, args.rounds, work))
                p90 = lat[int(0.9 * (len(lat) - 1))]
                print(
                    f"| {t}-of-{n} | {len(lat)} | {statistics.median(lat):.1f} | {p90:.1f} | {lat[-1]:.1f} |"
                )
        finally:
            stack.down()


if __name__ == "__main__":
    main()
