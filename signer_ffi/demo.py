"""Demo stage: a 2-of-3 signer group signs the demo's report digest across processes.

The coordinator's key is registered the way an operator does it (`tradetape producer add
signing-coordinator --accounts ""`: an admin command the engine accepts), so the signers
answer it; then a request from a producer the group does not allow is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from deploy import groups
from deploy.groups import group_id
from deploy.kafka import consumer_config, partitions_of
from deploy.settings import Settings
from projections.reports.demo import REPORT
from schemas import decode
from schemas.events import ProducerRegistered
from schemas.topics import Topic
from signer_ffi.authn import DEFAULT_REQUESTER, Requester, RequesterRegistry
from signer_ffi.ceremony import dealer_keygen
from signer_ffi.coordinator import SigningFailedError, sign_message


def _registered(settings: Settings, name: str, public_key: str, timeout: float) -> bool:
    """Wait until the engine's accepted registration of `name` is on the accounts topic."""
    consumer = Consumer(
        consumer_config(
            settings,
            group_id=group_id(settings.topic_prefix, groups.DEMO, f"registry-{os.getpid()}"),
        )
    )
    consumer.assign(
        [
            TopicPartition(settings.topic(Topic.ACCOUNTS), p, OFFSET_BEGINNING)
            for p in partitions_of(consumer, settings, Topic.ACCOUNTS)
        ]
    )
    registry = RequesterRegistry()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            try:
                registry.apply(decode(msg.value(), msg.headers()))
            except Exception:
                continue
            if registry.key_of(name) == public_key:
                return True
        return False
    finally:
        consumer.close()


def register_requester(settings: Settings, name: str = DEFAULT_REQUESTER) -> Requester:
    """`tradetape producer add NAME --accounts ""`, with an engine worker running meanwhile."""
    from engine import auth
    from engine.client import IntentPublisher
    from engine.worker import EngineWorker

    path = auth.key_path(settings.resolved_data_dir, name)
    if path.exists():
        key = auth.read_private_key(path)
    else:
        key, _ = auth.new_keypair()
        auth.write_private_key(path, key)
    requester = Requester(name=name, key=key)
    worker = EngineWorker(settings, wid=f"demo-signer-{os.getpid()}")
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    publisher = IntentPublisher(settings, "admin", watch=False)
    try:
        publisher.publish(
            ProducerRegistered(
                producer_id=name,
                public_key=requester.public_key,
                accounts=(),
                registered_by="admin",
            ),
            admin=True,
        )
        publisher.flush()
        if not _registered(settings, name, requester.public_key, timeout=90):
            raise RuntimeError(f"the engine did not accept the registration of {name}")
    finally:
        publisher.close()
        worker.stopping = True
        thread.join(60)
        if not thread.is_alive():
            worker.close()  # its producer: `run` closes only the consumers
    return requester


def _stack_env(settings: Settings, key_dir: Path, passphrase: str) -> dict[str, str]:
    return settings.child_env(
        TRADETAPE_SIGNER_KEY_DIR=str(key_dir), TRADETAPE_SIGNER_PASSPHRASE=passphrase
    )


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
        group = dealer_keygen(2, 3, key_dir, force=True)  # fresh keys every run
    finally:
        os.environ.pop("TRADETAPE_SIGNER_PASSPHRASE", None)
    requester = register_requester(settings)
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
        # The report stage's auth.016 file, signed as `tradetape sign` / `export --sign`
        # sign it; without one (a stage order without it), a made-up report's digest.
        path = settings.resolved_data_dir / REPORT
        if path.is_file():
            report, purpose, what = path.read_bytes(), "iso20022-auth016", str(path)
        else:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            report, purpose, what = f"tradetape demo report {stamp}".encode(), "demo-report", ""
        digest = hashlib.sha256(report).digest()
        started = time.perf_counter()
        done = sign_message(
            settings, group, digest, purpose=purpose, requester=requester, timeout=30
        )
        took_ms = (time.perf_counter() - started) * 1000
        if what:
            got = done.payload
            signature = path.with_name(path.name + ".sig.json")
            signature.write_text(
                json.dumps(
                    {
                        "request_id": got.request_id,
                        "digest_sha256": got.digest_hex,
                        "participants": list(got.participants),
                        "group_public_key": got.group_public_key,
                        "signature": got.signature_hex,
                    },
                    sort_keys=True,
                )
                + "\n"
            )
            what = f" of {path.name} (-> {signature})"
        mallory = Requester(name="mallory", key=Ed25519PrivateKey.generate())
        try:
            sign_message(
                settings, group, digest, purpose="demo-forged", requester=mallory, timeout=30
            )
            refused = "SIGNED (unexpected)"
        except SigningFailedError as exc:
            first = exc.event.payload.reason.split("; ")[:2]  # the count, then one reason
            refused = f"refused ({': '.join(first)})"
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
        f"{list(done.payload.participants)} signed the report digest{what} in {took_ms:.0f} ms "
        f"(signature {done.payload.signature_hex[:16]}…, recorded on signing.events)",
        f"signer: a request from the unregistered producer 'mallory' was {refused}",
    ]
