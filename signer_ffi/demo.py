"""Demo stage: a 2-of-3 signer group signs the demo's report digest across processes."""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

from deploy.settings import Settings
from signer_ffi.ceremony import dealer_keygen
from signer_ffi.coordinator import sign_message


def _stack_env(settings: Settings, key_dir: Path, passphrase: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        TRADETAPE_KAFKA_PORT=str(settings.kafka_port),
        TRADETAPE_KAFKA_CONTROLLER_PORT=str(settings.kafka_controller_port),
        TRADETAPE_TOPIC_PREFIX=settings.topic_prefix,
        TRADETAPE_POSTGRES_PORT=str(settings.postgres_port),
        TRADETAPE_DATA_DIR=str(settings.resolved_data_dir),
        TRADETAPE_SIGNER_KEY_DIR=str(key_dir),
        TRADETAPE_SIGNER_PASSPHRASE=passphrase,
    )
    return env


def run(settings: Settings) -> list[str]:
    key_dir = settings.resolved_data_dir / "demo-signers"
    passphrase = secrets.token_urlsafe(24)  # per run, never written anywhere
    os.environ["TRADETAPE_SIGNER_PASSPHRASE"] = passphrase
    try:
        group = dealer_keygen(2, 3, key_dir)
    finally:
        os.environ.pop("TRADETAPE_SIGNER_PASSPHRASE", None)
    env = _stack_env(settings, key_dir, passphrase)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "deploy.cli_entry", "run", "signer", "--id", str(i)],
            env=env,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        for i in (1, 2, 3)
    ]
    try:
        for p in procs:
            assert p.stderr is not None
            line = p.stderr.readline()
            if "serving group" not in line:
                raise RuntimeError(f"signer failed to start: {line}{p.stderr.read()}")
        report = (
            f"tradetape demo report {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}".encode()
        )
        digest = hashlib.sha256(report).digest()
        started = time.perf_counter()
        done = sign_message(settings, group, digest, purpose="demo-report", timeout=30)
        took_ms = (time.perf_counter() - started) * 1000
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
    return [
        f"signer: 2-of-3 FROST group {group.verifying_key.hex()[:16]}…, signers "
        f"{list(done.payload.participants)} signed the report digest in {took_ms:.0f} ms "
        f"(signature {done.payload.signature_hex[:16]}…, recorded on signing.events)",
    ]
