"""Signer processes on the real broker: k-of-n signing, a missing signer, DKG over Kafka."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from deploy.kafka import consumer_config
from deploy.settings import Settings
from schemas import decode
from schemas.events import SigningCompleted
from schemas.topics import Topic
from signer_ffi.ceremony import dealer_keygen, run_dkg_participant
from signer_ffi.coordinator import SigningFailedError, sign_message
from signer_ffi.group import SignerGroup, load_share
from signer_ffi.participant import ParticipantState, serve

pytestmark = pytest.mark.integration
PASS = "correct horse battery staple"


def _env_for(settings: Settings, key_dir: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        TRADETAPE_KAFKA_PORT=str(settings.kafka_port),
        TRADETAPE_TOPIC_PREFIX=settings.topic_prefix,
        TRADETAPE_POSTGRES_PORT=str(settings.postgres_port),
        TRADETAPE_POSTGRES_DB=settings.postgres_db,
        TRADETAPE_DATA_DIR=str(settings.data_dir),
        TRADETAPE_SIGNER_KEY_DIR=str(key_dir),
        TRADETAPE_SIGNER_PASSPHRASE=PASS,
    )
    env.update(extra)
    return env


def _start_signer(
    settings: Settings, key_dir: Path, ident: int, **extra: str
) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "deploy.cli_entry", "run", "signer", "--id", str(ident)],
        env=_env_for(settings, key_dir, **extra),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    return proc


def _wait_ready(proc: subprocess.Popen[str], timeout: float = 60) -> None:
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if "serving group" in line:
            return
        if proc.poll() is not None:
            raise AssertionError(f"signer exited early: {line}{proc.stderr.read()}")
    raise AssertionError("signer did not become ready")


@pytest.fixture
def group_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TRADETAPE_SIGNER_PASSPHRASE", PASS)
    dealer_keygen(2, 3, tmp_path / "keys")
    return tmp_path / "keys"


@pytest.fixture
def signers(env: Settings, group_dir: Path) -> Iterator[dict[int, subprocess.Popen[str]]]:
    procs = {i: _start_signer(env, group_dir, i) for i in (1, 2, 3)}
    try:
        for p in procs.values():
            _wait_ready(p)
        yield procs
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
            p.wait(10)


def _signing_events(settings: Settings) -> list[object]:
    consumer = Consumer(consumer_config(settings, group_id=f"t-{uuid.uuid4().hex}"))
    topic = settings.topic(Topic.SIGNING)
    consumer.assign([TopicPartition(topic, 0, 0)])
    out: list[object] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        msg = consumer.poll(0.3)
        if msg is None:
            if out:
                break
            continue
        if not msg.error():
            out.append(decode(msg.value(), msg.headers()).payload)
    consumer.close()
    return out


def test_two_of_three_sign_across_processes_then_one_alone_fails(
    env: Settings, group_dir: Path, signers: dict[int, subprocess.Popen[str]]
) -> None:
    group = SignerGroup.load(group_dir)
    message = b"\x11" * 32
    done = sign_message(env, group, message, purpose="test", timeout=30)
    sig = bytes.fromhex(done.payload.signature_hex)
    Ed25519PublicKey.from_public_bytes(group.verifying_key).verify(sig, message)  # plain RFC 8032
    assert len(done.payload.participants) == 2

    signers[2].kill()
    signers[3].kill()
    signers[2].wait(10)
    signers[3].wait(10)
    with pytest.raises(SigningFailedError, match="timed out") as info:
        sign_message(env, group, b"\x22" * 32, purpose="test", timeout=3)
    assert info.value.event.payload.participants == (1,)

    recorded = _signing_events(env)
    assert [type(e).__name__ for e in recorded] == ["SigningCompleted", "SigningFailed"]
    assert isinstance(recorded[0], SigningCompleted) and recorded[0].digest_hex == message.hex()


def test_wrong_passphrase_refuses_to_start(env: Settings, group_dir: Path) -> None:
    proc = _start_signer(env, group_dir, 1, TRADETAPE_SIGNER_PASSPHRASE="wrong")
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "wrong passphrase" in err


def test_dkg_over_kafka_then_sign(
    env: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRADETAPE_SIGNER_PASSPHRASE", PASS)
    ceremony = uuid.uuid4().hex[:12]
    results: dict[int, SignerGroup] = {}
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            results[i] = run_dkg_participant(
                env,
                ceremony_id=ceremony,
                identifier=i,
                signers=3,
                threshold=2,
                out_dir=tmp_path / f"p{i}",
                timeout=60,
            )
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in (1, 2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert not errors, errors
    keys = {g.verifying_key for g in results.values()}
    assert len(keys) == 1, "every participant must derive the same group key"

    stop = threading.Event()
    servers = []
    for i in (1, 3):
        ready = threading.Event()
        state = ParticipantState(share=load_share(tmp_path / f"p{i}", i), group=results[i])
        th = threading.Thread(target=serve, args=(env, state, stop, ready), daemon=True)
        th.start()
        assert ready.wait(30)
        servers.append(th)
    try:
        done = sign_message(env, results[1], b"dkg works", purpose="test", timeout=30)
    finally:
        stop.set()
        for th in servers:
            th.join(10)
    assert done.payload.participants == (1, 3)
    Ed25519PublicKey.from_public_bytes(keys.pop()).verify(
        bytes.fromhex(done.payload.signature_hex), b"dkg works"
    )
