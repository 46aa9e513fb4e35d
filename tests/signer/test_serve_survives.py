"""A participant's serve loop survives a record it cannot publish about (review
helper-46, d11): a produce that fails (before the fix: the oversized dead letter of a
~800 KB junk record, MSG_SIZE_TOO_LARGE raised by produce) is logged, and the next
request is still answered. Before, the exception escaped serve() and the signer died."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

import signer_ffi.participant as participant
from deploy.settings import Settings
from schemas import decode_message, encode, new_event
from schemas.events import SigningCommitmentPublished, SigningRequested
from schemas.topics import Topic
from signer_ffi.authn import sign_round_message

from .fakekafka import Broker, Record
from .test_coordinator_loop import DIGEST, Network


def test_failed_publish_is_logged_and_serving_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings()
    broker = Broker()
    net = Network(broker, settings)
    requests = settings.topic(Topic.SIGNING_REQUESTS)
    payload = SigningRequested(
        request_id="after-junk",
        digest_hex=DIGEST.hex(),
        purpose="t",
        signers=net.group.identifiers,
        group_public_key=net.group.verifying_key.hex(),
        requester=net.requester.name,
    )
    k, v, h = encode(new_event(sign_round_message(payload, net.requester.key), producer="coord"))
    queue: list[Any] = [Record(requests, 0, b"k", b"x" * 800_000, []), Record(requests, 1, k, v, h)]
    fake_producer = broker.producer_class()
    calls = {"n": 0}

    class FailingOnce(fake_producer):  # type: ignore[misc, valid-type]
        def produce(self, *a: Any, **kw: Any) -> None:
            calls["n"] += 1
            if calls["n"] == 1:
                raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
            super().produce(*a, **kw)

    class Consumer:
        def __init__(self, *_a: Any, **_k: Any) -> None:
            pass

        def poll(self, _t: float) -> Any:
            return queue.pop(0) if queue else None

        def incremental_assign(self, _tps: Any) -> None:
            pass

        def close(self) -> None:
            pass

    monkeypatch.setattr(participant, "Producer", FailingOnce)
    monkeypatch.setattr(participant, "Consumer", Consumer)
    monkeypatch.setattr(participant, "_load_registry", lambda *a, **k: None)
    monkeypatch.setattr(participant, "partitions_of", lambda *a, **k: [0])
    monkeypatch.setattr(participant, "admin_client", lambda *a, **k: None)
    monkeypatch.setattr(
        participant, "end_offsets", lambda _admin, tps: {(tp.topic, tp.partition): 0 for tp in tps}
    )
    stop = threading.Event()
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            participant.serve(settings, net.states[1], stop)
        except BaseException as exc:
            result["died"] = exc

    t = threading.Thread(target=run)
    t.start()
    messages = settings.topic(Topic.SIGNING_MESSAGES)
    for _ in range(300):
        if broker.records(messages) or not t.is_alive():
            break
        stop.wait(0.01)
    stop.set()
    t.join(10)
    assert "died" not in result, result
    answers = [decode_message(r).payload for r in broker.records(messages)]
    assert [type(a) for a in answers] == [SigningCommitmentPublished]
    assert any("could not publish DeadLetter" in r.getMessage() for r in caplog.records)
