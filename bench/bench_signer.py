"""In-process latency of the FROST library calls (no Kafka): commit, sign, aggregate.

Measures the Python API over the release cdylib for 2-of-3 and 3-of-5 dealer
groups and prints medians as a markdown table. `sign` is per participant;
`aggregate` includes cheater-detection-ready share parsing. Informational only:
no assertions on time. Run: `.venv/bin/python -m bench.bench_signer [--rounds N]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

if not __package__:  # `python bench/X.py`: import from this checkout, like `-m bench.X`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import signer_ffi as sf


def _us(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1e6:.0f}"


def measure(threshold: int, signers: int, rounds: int) -> dict[str, list[float]]:
    shares, public = sf.generate_with_dealer(threshold, signers)
    chosen = shares[:threshold]
    out: dict[str, list[float]] = {
        "commit": [],
        "signing_package": [],
        "sign": [],
        "aggregate": [],
        "verify": [],
    }
    for r in range(rounds):
        msg = f"withdrawal {r}".encode()
        nonces: dict[int, sf.SigningNonces] = {}
        coms: dict[int, sf.SigningCommitments] = {}
        for s in chosen:
            t0 = time.perf_counter()
            n, c = sf.commit(s)
            out["commit"].append(time.perf_counter() - t0)
            nonces[s.identifier], coms[s.identifier] = n, c
        t0 = time.perf_counter()
        package = sf.signing_package(coms, msg)
        out["signing_package"].append(time.perf_counter() - t0)
        z: dict[int, sf.SignatureShare] = {}
        for s in chosen:
            t0 = time.perf_counter()
            z[s.identifier] = sf.sign(package, nonces[s.identifier], s)
            out["sign"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        sig = sf.aggregate(package, z, public)
        out["aggregate"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ok = sf.verify(public.verifying_key, msg, sig)
        out["verify"].append(time.perf_counter() - t0)
        if not ok:
            raise SystemExit("aggregate signature failed to verify")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=300)
    args = ap.parse_args()
    ops = ["commit", "signing_package", "sign", "aggregate", "verify"]
    print(f"FROST(Ed25519) library latency, median µs over {args.rounds} rounds\n")
    print("| group | " + " | ".join(ops) + " |")
    print("|---|" + "---:|" * len(ops))
    for t, n in ((2, 3), (3, 5)):
        res = measure(t, n, args.rounds)
        print(f"| {t}-of-{n} | " + " | ".join(_us(res[o]) for o in ops) + " |")


if __name__ == "__main__":
    main()
