"""Signer processes on the real broker: k-of-n signing, refused requesters, a forged
commitment, a missing signer, DKG over Kafka."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from deploy.kafka import consumer_config, producer_config
from deploy.settings import Settings
from schemas import decode, encode, new_event
from schemas.events import (
    SignatureSharePublished,
    SigningCommitmentPublished,
    SigningCompleted,
    SigningMessageRejected,
)
from schemas.topics import Topic
from signer_ffi.authn import DEFAULT_REQUESTER, Requester, sign_round_message
from signer_ffi.ceremony import dealer_keygen, run_dkg_participant
from signer_ffi.coordinator import SigningCoordinator, SigningFailedError, sign_message
from signer_ffi.frost import commit, generate_with_dealer
from signer_ffi.group import SignerGroup, load_identity, load_share
from signer_ffi.participant import ParticipantState, serve
from tests.signer_kafka.helpers import new_requester, register_as_engine

pytestmark = pytest.mark.integration
PASS = "correct horse battery staple"


def _env_for(settings: Settings, key_dir: Path, **extra: str) -> dict[str, str]:
    return settings.child_env(
        **{"TRADETAPE_SIGNER_KEY_DIR": str(key_dir), "TRADETAPE_SIGNER_PASSPHRASE": PASS, **extra}
    )


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
    dealer_keygen(2, 3, tmp_path / "keys", requesters=(DEFAULT_REQUESTER, "ops-signer"))
    return tmp_path / "keys"


@pytest.fixture
def requester(env: Settings) -> Requester:
    """Registered before the signers start, as `tradetape producer add` would have."""
    return new_requester(env)


@pytest.fixture
def signers(
    env: Settings, group_dir: Path, requester: Requester
) -> Iterator[dict[int, subprocess.Popen[str]]]:
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


def _forge(settings: Settings, request_id: str) -> None:
    """A commitment and a share in participant 1's name, signed with a key that is not its
    identity key, put on `signing.messages` before the round's request exists: the topic
    has one partition, so the coordinator reads them before any honest answer."""
    _n, fake = commit(generate_with_dealer(2, 3)[0][0])
    mallory = Ed25519PrivateKey.generate()
    producer = Producer(producer_config(settings))
    for payload in (
        SigningCommitmentPublished(
            request_id=request_id, participant=1, commitments_hex=fake.data.hex()
        ),
        SignatureSharePublished(request_id=request_id, participant=1, share_hex="11" * 32),
    ):
        key, value, headers = encode(
            new_event(sign_round_message(payload, mallory), producer="mallory")
        )
        producer.produce(
            settings.topic(Topic.SIGNING_MESSAGES), key=key, value=value, headers=headers
        )
    assert producer.flush(30) == 0


def test_two_of_three_sign_across_processes_then_refusals_then_one_alone_fails(
    env: Settings,
    group_dir: Path,
    requester: Requester,
    signers: dict[int, subprocess.Popen[str]],
) -> None:
    group = SignerGroup.load(group_dir)
    message = b"\x11" * 32
    done = sign_message(env, group, message, purpose="test", requester=requester, timeout=30)
    sig = bytes.fromhex(done.payload.signature_hex)
    Ed25519PublicKey.from_public_bytes(group.verifying_key).verify(sig, message)  # plain RFC 8032
    assert len(done.payload.participants) == 2

    # The group allows ops-signer, but it never registered a key: every signer refuses.
    unregistered = Requester("ops-signer", Ed25519PrivateKey.generate())
    with pytest.raises(SigningFailedError, match="no registered key"):
        sign_message(env, group, message, purpose="t", requester=unregistered, timeout=30)
    # Registered now (the engine accepted it): the running signers pick it up live.
    register_as_engine(env, unregistered)
    for attempt in range(5):
        try:
            sign_message(env, group, message, purpose="t", requester=unregistered, timeout=30)
            break
        except SigningFailedError as exc:  # the registration may still be in flight
            assert attempt < 4 and "no registered key" in str(exc), exc
            time.sleep(1)
    # The registered name with another key (a bad signature): refused too.
    impostor = Requester(requester.name, Ed25519PrivateKey.generate())
    with pytest.raises(SigningFailedError, match="signature missing or not by"):
        sign_message(env, group, message, purpose="t", requester=impostor, timeout=30)

    # A forged commitment and share in participant 1's name, read by the coordinator before
    # any honest answer, are refused: had the commitment counted, participant 1 would have
    # refused the package built on it and the round would have failed.
    with SigningCoordinator(env, group, requester) as coordinator:
        _forge(env, "forged-round")
        again = coordinator.sign(b"\x33" * 32, purpose="t", timeout=30, request_id="forged-round")
    assert len(again.payload.participants) == 2
    Ed25519PublicKey.from_public_bytes(group.verifying_key).verify(
        bytes.fromhex(again.payload.signature_hex), b"\x33" * 32
    )

    signers[2].kill()
    signers[3].kill()
    signers[2].wait(10)
    signers[3].wait(10)
    with pytest.raises(SigningFailedError, match="timed out") as info:
        sign_message(env, group, b"\x22" * 32, purpose="test", requester=requester, timeout=3)
    assert info.value.event.payload.participants == (1,)

    recorded = _signing_events(env)
    outcomes = [type(e).__name__ for e in recorded if not isinstance(e, SigningMessageRejected)]
    assert outcomes[0] == "SigningCompleted" and outcomes[1] == "SigningFailed"
    assert outcomes[-4:] == [
        "SigningCompleted",  # the newly registered requester
        "SigningFailed",  # the impostor
        "SigningCompleted",  # despite the forged commitment
        "SigningFailed",  # one signer left
    ]
    assert isinstance(recorded[0], SigningCompleted) and recorded[0].digest_hex == message.hex()
    rejected = [e for e in recorded if isinstance(e, SigningMessageRejected)]
    by_signers = {(e.rejected_by, e.message_type) for e in rejected if e.sender != "mallory"}
    assert {("signer-1", "SigningRequested"), ("signer-2", "SigningRequested")} <= by_signers
    forged = {
        e.message_type: e.reason
        for e in rejected
        if e.sender == "mallory" and e.rejected_by == "signing-coordinator"
    }
    assert set(forged) == {"SigningCommitmentPublished", "SignatureSharePublished"}
    assert all("not by participant 1's identity key" in why for why in forged.values())


def test_wrong_passphrase_refuses_to_start(env: Settings, group_dir: Path) -> None:
    proc = _start_signer(env, group_dir, 1, TRADETAPE_SIGNER_PASSPHRASE="wrong")
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2  # a configuration error: a `tradetape run` group stops
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

    requester = new_requester(env)
    stop = threading.Event()
    servers = []
    for i in (1, 3):
        ready = threading.Event()
        state = ParticipantState(
            share=load_share(tmp_path / f"p{i}", i),
            group=results[i],
            identity=load_identity(tmp_path / f"p{i}", i),
        )
        th = threading.Thread(target=serve, args=(env, state, stop, ready), daemon=True)
        th.start()
        assert ready.wait(30)
        servers.append(th)
    try:
        done = sign_message(
            env, results[1], b"dkg works", purpose="test", requester=requester, timeout=30
        )
    finally:
        stop.set()
        for th in servers:
            th.join(10)
    assert done.payload.participants == (1, 3)
    assert all(len(g.identity_keys) == 3 for g in results.values())  # from round 1
    Ed25519PublicKey.from_public_bytes(keys.pop()).verify(
        bytes.fromhex(done.payload.signature_hex), b"dkg works"
    )


def test_a_stopped_signer_says_so(env: Settings, group_dir: Path, requester: Requester) -> None:
    """SIGTERM stops a signer cleanly, with a last line saying so, as an engine worker's
    `engine worker N stopped`. Before: it exited 0 without a word after `serving group`
    (the newcomer's audit, session 24)."""
    proc = _start_signer(env, group_dir, 1)
    try:
        _wait_ready(proc)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, err[-3000:]
    lines = err.strip().splitlines()
    assert lines and lines[-1] == "signer 1 stopped", err[-3000:]
