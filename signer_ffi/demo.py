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


def _wait_until_serving(
    procs: list[subprocess.Popen[bytes]], logs: list[Path], timeout: float
) -> None:
    """Every signer has said it serves its group, or the demo stops with its log."""
    deadline = time.monotonic() + timeout
    while True:
        pending = [
            (p, log)
            for p, log in zip(procs, logs, strict=True)
            if "serving group" not in log.read_text(errors="replace")
        ]
        if not pending:
            return
        for p, log in pending:
            if p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"signer did not start (log {log}):\n{log.read_text(errors='replace')}"
                )
        time.sleep(0.1)


def run(settings: Settings) -> list[str]:
    key_dir = settings.resolved_data_dir / "demo-signers"
    passphrase = secrets.token_urlsafe(24)  # per run, never written anywhere
    os.environ["TRADETAPE_SIGNER_PASSPHRASE"] = passphrase
    try:
        group = dealer_keygen(2, 3, key_dir)
    finally:
        os.environ.pop("TRADETAPE_SIGNER_PASSPHRASE", None)
    env = _stack_env(settings, key_dir, passphrase)
    # Each signer logs to a file: a pipe nobody drains would block a chatty signer, and
    # librdkafka writes its own lines to stderr before the one we wait for.
    logs = [settings.resolved_data_dir / f"demo-signer-{i}.log" for i in (1, 2, 3)]
    procs = []
    for i, log_path in zip((1, 2, 3), logs, strict=True):
        with log_path.open("w") as log_file:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "deploy.cli_entry", "run", "signer", "--id", str(i)],
                    env=env,
                    stderr=log_file,
                    stdout=subprocess.DEVNULL,
                )
            )
    try:
        _wait_until_serving(procs, logs, timeout=90.0)
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
