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

from .fakekafka import Broker, Record, serve_from
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

    serve_from(monkeypatch, queue, FailingOnce)
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
