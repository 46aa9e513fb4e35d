"""End-to-end latency of a FROST signing round across signer processes over Kafka, and
what the round's checks cost.

Starts a throwaway local stack on free ports, a 2-of-3 and a 3-of-5 dealer group, one
`tradetape run signer` process per share, and a warm coordinator whose requester key is
registered on the accounts topic; reports medians and p90 over N rounds.

Before that, in process (no broker): one whole round through the participant and
coordinator state machines (`ParticipantState`, `SigningRound`), with every check on and,
as the baseline, with the session-5 checks stubbed out in this process only (request,
package and message signatures, the package's message/signers/commitment checks). The
difference is the CPU the checks add to a round's critical path.

Run: `.venv/bin/python -m bench.bench_signing_round [--rounds N] [--in-process-rounds M]`.
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

if not __package__:  # `python bench/X.py`: import from this checkout, like `-m bench.X`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.measure import percentile, stack_settings
from deploy.local import LocalStack
from deploy.settings import Settings
from schemas import new_event
from schemas.events import (
    ProducerRegistered,
    SignatureSharePublished,
    SigningCommitmentPublished,
    SigningRequested,
)
from signer_ffi import authn, coordinator, participant
from signer_ffi.authn import Requester, RequesterRegistry, public_hex, sign_round_message
from signer_ffi.ceremony import dealer_keygen
from signer_ffi.coordinator import SigningCoordinator, SigningRound
from signer_ffi.frost import SigningPackage, generate_with_dealer
from signer_ffi.group import SignerGroup
from signer_ffi.participant import ParticipantState
from tests.signer_kafka.helpers import new_requester

TOPIC_PREFIX = "bsign."
POSTGRES_DB = "bench_signing_round"
"""Its own topic prefix and database (as every benchmark's stack): nothing it writes can
meet another stack's on this machine, nor another's its signers."""


def _round_trip(
    settings: Settings, threshold: int, signers: int, rounds: int, work: Path
) -> list[float]:
    passphrase = secrets.token_urlsafe(16)
    os.environ["TRADETAPE_SIGNER_PASSPHRASE"] = passphrase
    key_dir = work / f"g{threshold}of{signers}"
    group = dealer_keygen(threshold, signers, key_dir)
    requester = new_requester(settings)  # registered before the signers read the registry
    # every variable that puts a child on this stack (its prefix and database too)
    env = settings.child_env(TRADETAPE_SIGNER_KEY_DIR=str(key_dir))
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
            assert p.stderr is not None
            while "serving group" not in (line := p.stderr.readline()):
                assert line, "signer exited before serving"
        out = []
        with SigningCoordinator(settings, group, requester) as coord:
            for n in range(rounds + 3):
                t0 = time.perf_counter()
                coord.sign(secrets.token_bytes(32), purpose="bench", timeout=30)
                if n >= 3:  # warm-up rounds excluded
                    out.append((time.perf_counter() - t0) * 1000)
        return out
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)


# ---- in process: the checks' cost -------------------------------------------------------


@contextmanager
def _checks_stubbed() -> Iterator[None]:
    """The round without this session's checks: no message signatures made or verified,
    no package inspection (FROST itself still checks its own commitments)."""

    def same(payload: Any, _key: Any) -> Any:
        return payload

    def yes(_payload: Any, _key: str) -> bool:
        return True

    def no_problem(_self: Any, issued: Any, _accepted: Any) -> tuple[None, SigningPackage]:
        return None, SigningPackage(bytes.fromhex(issued.signing_package_hex))

    with (
        mock.patch.object(authn, "sign_round_message", same),
        mock.patch.object(participant, "sign_round_message", same),
        mock.patch.object(participant, "verify_round_message", yes),
        mock.patch.object(coordinator, "sign_round_message", same),
        mock.patch.object(coordinator, "verify_round_message", yes),
        mock.patch.object(ParticipantState, "_package_problem", no_problem),
    ):
        yield


def _in_process_round(threshold: int, signers: int) -> Callable[[], None]:
    shares, public = generate_with_dealer(threshold, signers)
    identities = {s.identifier: Ed25519PrivateKey.generate() for s in shares}
    group = SignerGroup(
        threshold=threshold,
        identifiers=public.identifiers,
        public_key_package=public,
        identity_keys={i: public_hex(k) for i, k in identities.items()},
        requesters=("bench",),
    )
    requester = Requester("bench", Ed25519PrivateKey.generate())
    registry = RequesterRegistry()
    registry.apply(
        new_event(
            ProducerRegistered(
                producer_id="bench",
                public_key=requester.public_key,
                accounts=(),
                registered_by="admin",
            ),
            producer=authn.REGISTRY_PRODUCER,
        )
    )
    states = [
        ParticipantState(share=s, group=group, identity=identities[s.identifier], registry=registry)
        for s in shares[:threshold]
    ]

    def one_round() -> None:
        digest = secrets.token_bytes(32)
        request = new_event(
            authn.sign_round_message(
                SigningRequested(
                    request_id=secrets.token_hex(8),
                    digest_hex=digest.hex(),
                    purpose="bench",
                    signers=group.identifiers,
                    group_public_key=group.verifying_key.hex(),
                    requester="bench",
                ),
                requester.key,
            ),
            producer="bench",
        )
        rnd = SigningRound(
            request=request.payload, group=group, message=digest, requester=requester
        )
        package: Any = None
        for s in states:
            out = s.on_request(request, 0.0)
            assert isinstance(out, SigningCommitmentPublished)
            package = rnd.on_commitment(new_event(out, producer=s.name)) or package
        signature = None
        for s in states:
            share = s.on_package(new_event(package, producer="bench"))
            assert isinstance(share, SignatureSharePublished)
            signature = rnd.on_share(new_event(share, producer=s.name)) or signature
        assert isinstance(signature, bytes)

    return one_round


def _median_us(fn: Callable[[], None], n: int) -> float:
    xs = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        xs.append((time.perf_counter() - t0) * 1e6)
    return statistics.median(xs)


def in_process(rounds: int) -> None:
    print("| group | checked round µs | checks stubbed µs | added µs | ratio |")
    print("|---|---:|---:|---:|---:|")
    for t, n in ((2, 3), (3, 5)):
        one_round = _in_process_round(t, n)
        for _ in range(20):
            one_round()
        checked, stubbed = [], []
        for _ in range(5):  # alternate blocks: drift on a shared machine hits both alike
            checked.append(_median_us(one_round, rounds // 5))
            with _checks_stubbed():
                stubbed.append(_median_us(one_round, rounds // 5))
        c, s = statistics.median(checked), statistics.median(stubbed)
        print(f"| {t}-of-{n} | {c:.0f} | {s:.0f} | {c - s:.0f} | {c / s:.2f} |")
    key = Ed25519PrivateKey.generate()
    payload = SigningRequested(
        request_id="x" * 32,
        digest_hex="ab" * 32,
        purpose="bench",
        signers=(1, 2, 3),
        group_public_key="cd" * 32,
        requester="bench",
    )
    signed = sign_round_message(payload, key)
    pub = public_hex(key)

    def sign_one() -> None:
        sign_round_message(payload, key)

    def verify_one() -> None:
        assert authn.verify_round_message(signed, pub)

    t_sign, t_verify = _median_us(sign_one, 500), _median_us(verify_one, 500)
    print(
        f"\none message: sign {t_sign:.0f} µs, verify {t_verify:.0f} µs (canonical bytes included)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--in-process-rounds", type=int, default=500)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    in_process(args.in_process_rounds)
    print()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        settings = stack_settings(
            work / "stack",
            postgres_fsync=False,
            topic_prefix=TOPIC_PREFIX,
            postgres_db=POSTGRES_DB,
        )
        stack = LocalStack(settings, echo=lambda m: print(m, file=sys.stderr))
        stack.up()
        try:
            print("| group | rounds | median ms | p90 ms | max ms |")
            print("|---|---|---|---|---|")
            for t, n in ((2, 3), (3, 5)):
                lat = sorted(_round_trip(settings, t, n, args.rounds, work))
                print(
                    f"| {t}-of-{n} | {len(lat)} | {statistics.median(lat):.1f} | "
                    f"{percentile(lat, 0.9):.1f} | {lat[-1]:.1f} |"
                )
        finally:
            stack.down()
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
