"""DKG failure modes over an in-memory Kafka stand-in (review helper-46, d6 and d7).

* A participant that cannot save its share (no passphrase, unwritable directory) used to
  take part in the whole ceremony and then lose the share, the only copy, with an
  uncaught error: now it fails before publishing anything.
* Retrying with a ceremony id already on the log, or a round-2 package that does not open,
  raised a raw `InvalidTag`: now a CeremonyError that says why and names the sender.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

import signer_ffi.ceremony as ceremony
from deploy.settings import Settings
from schemas import decode_message, encode, new_event
from schemas.events import DkgRound1Published, DkgRound2Published
from schemas.topics import Topic
from signer_ffi.ceremony import CeremonyError, run_dkg_participant
from signer_ffi.frost import dkg_part1

from .fakekafka import Broker


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> Broker:
    b = Broker()
    monkeypatch.setattr(ceremony, "Producer", b.producer_class())
    monkeypatch.setattr(ceremony, "Consumer", b.consumer_class())
    monkeypatch.setattr(ceremony, "partitions_of", lambda *_a, **_k: [0])
    monkeypatch.setattr(
        ceremony,
        "_log_ends",
        lambda _s, tps: {(tp.topic, 0): len(b.records(tp.topic)) for tp in tps},
    )
    for var in ("TRADETAPE_SIGNER_PASSPHRASE", "TRADETAPE_SIGNER_PASSPHRASE_FILE"):
        monkeypatch.delenv(var, raising=False)
    for i in (1, 2, 3):
        monkeypatch.setenv(f"TRADETAPE_SIGNER_PASSPHRASE_{i}", f"pw{i}")
    return b


def _run_all(
    ids: tuple[int, ...], out: Path, ceremony_id: str = "C1", timeout: float = 20.0
) -> dict[int, Any]:
    results: dict[int, Any] = {}

    def run(i: int) -> None:
        try:
            results[i] = run_dkg_participant(
                Settings(),
                ceremony_id=ceremony_id,
                identifier=i,
                signers=3,
                threshold=2,
                out_dir=out / f"p{i}",
                timeout=timeout,
            )
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def _topic_events(broker: Broker) -> list[Any]:
    return [
        decode_message(r).payload for r in broker.records(Settings().topic(Topic.SIGNING_MESSAGES))
    ]


def test_dkg_over_the_stand_in(broker: Broker, tmp_path: Path) -> None:
    results = _run_all((1, 2, 3), tmp_path)
    keys = {g.verifying_key for g in results.values()}
    assert len(keys) == 1, results
    assert (tmp_path / "p3" / "participant-3.key").is_file()


def test_missing_passphrase_fails_before_round_one(
    broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TRADETAPE_SIGNER_PASSPHRASE_3")
    started = time.monotonic()
    with pytest.raises(CeremonyError, match="TRADETAPE_SIGNER_PASSPHRASE"):
        run_dkg_participant(
            Settings(), ceremony_id="C1", identifier=3, signers=3, threshold=2,
            out_dir=tmp_path / "p3", timeout=3,
        )  # fmt: skip
    assert time.monotonic() - started < 2
    assert _topic_events(broker) == []  # nothing published: the others cannot finish either


def test_unwritable_output_fails_before_round_one(broker: Broker, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(CeremonyError, match="cannot write the key directory"):
        run_dkg_participant(
            Settings(), ceremony_id="C1", identifier=1, signers=3, threshold=2,
            out_dir=blocker / "keys", timeout=3,
        )  # fmt: skip
    assert _topic_events(broker) == []


def test_existing_share_is_not_overwritten(broker: Broker, tmp_path: Path) -> None:
    (tmp_path / "p1").mkdir()
    (tmp_path / "p1" / "participant-1.key").write_bytes(b"old share")
    with pytest.raises(CeremonyError, match="already exists"):
        run_dkg_participant(
            Settings(), ceremony_id="C1", identifier=1, signers=3, threshold=2,
            out_dir=tmp_path / "p1", timeout=3,
        )  # fmt: skip
    assert (tmp_path / "p1" / "participant-1.key").read_bytes() == b"old share"


def test_retry_with_the_same_ceremony_id_is_refused(broker: Broker, tmp_path: Path) -> None:
    first = _run_all((1, 2), tmp_path / "a", timeout=2)
    assert all(isinstance(r, CeremonyError) for r in first.values()), first
    second = _run_all((1, 2, 3), tmp_path / "b", timeout=4)
    assert all(isinstance(r, CeremonyError) for r in second.values()), second
    for i in (1, 2):
        assert "already used" in str(second[i]), second[i]


def test_forged_round_two_names_its_sender(broker: Broker, tmp_path: Path) -> None:
    settings = Settings()
    topic = settings.topic(Topic.SIGNING_MESSAGES)
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["r"] = run_dkg_participant(
                settings, ceremony_id="C9", identifier=1, signers=2, threshold=2,
                out_dir=tmp_path / "p1", timeout=10,
            )  # fmt: skip
        except BaseException as exc:
            result["r"] = exc

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 10
    while not any(isinstance(p, DkgRound1Published) for p in _topic_events(broker)):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    _, package = dkg_part1(2, 2, 2)
    x_pub = X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    producer = broker.producer_class()()
    for payload in (
        DkgRound1Published(
            ceremony_id="C9", participant=2, package_hex=package.hex(),
            x25519_public_hex=x_pub.hex(), identity_public_hex="00" * 32,
        ),
        DkgRound2Published(
            ceremony_id="C9", sender=2, recipient=1, sealed_package_hex="ab" * 80
        ),
    ):  # fmt: skip
        key, value, headers = encode(new_event(payload, producer="dkg-2"))
        producer.produce(topic, key=key, value=value, headers=headers)
    t.join(30)
    assert isinstance(result["r"], CeremonyError), result
    assert "participant 2" in str(result["r"])


def test_missing_topic_is_a_ceremony_error(
    broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_partitions(*_a: Any, **_k: Any) -> list[int]:
        raise RuntimeError("topic signing.messages has no partitions")

    monkeypatch.setattr(ceremony, "partitions_of", no_partitions)
    with pytest.raises(CeremonyError, match="no partitions"):
        run_dkg_participant(
            Settings(), ceremony_id="C1", identifier=1, signers=3, threshold=2,
            out_dir=tmp_path / "p1", timeout=3,
        )  # fmt: skip
