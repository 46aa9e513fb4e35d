"""`tradetape admin ...` sends a command again when the engine refused it only because its
view may have been stale (no effect), and gives up on any other refusal at once."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any
from uuid import uuid4

import pytest
import typer

import deploy.kafka
import engine.client
from engine import cli
from engine.control import stale_admin_reason
from schemas.events import KycVerified


class FakePublisher:
    """Answers each published command with the next of `answers` (None: no answer)."""

    answers: list[Any] = []
    published: list[Any] = []

    def __init__(self, settings: Any, producer: str) -> None:
        self.delivery_errors: list[str] = []
        self.undelivered = 0

    def publish(self, payload: Any, *, admin: bool) -> Any:
        event = SimpleNamespace(
            event_type=payload.EVENT_TYPE, event_id=uuid4(), correlation_id=uuid4()
        )
        FakePublisher.published.append(event)
        return event

    def flush(self, timeout: float) -> int:
        return 0

    def await_decision(self, correlation_id: Any, timeout: float) -> Any:
        return FakePublisher.answers.pop(0)

    def close(self) -> None:
        pass


def _rejected(reason: str) -> Any:
    return SimpleNamespace(
        event_type="AdminCommandRejected", payload=SimpleNamespace(reason=reason)
    )


ACCEPTED = SimpleNamespace(event_type="KycVerified", payload=None)
STALE = stale_admin_reason("KycVerified", "control topics not read to their end (timeout)") or ""


@pytest.fixture(autouse=True)
def _fake(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deploy.kafka, "broker_unreachable", lambda settings: None)
    monkeypatch.setattr(engine.client, "IntentPublisher", FakePublisher)
    monkeypatch.setattr(cli, "STALE_BACKOFF_SECONDS", 0.0)
    FakePublisher.published = []


def _payload() -> KycVerified:
    return KycVerified(account="A1", verified_by="admin")


def test_a_stale_refusal_is_sent_again_as_a_new_command() -> None:
    assert STALE.startswith("STALE_STATE: ")
    FakePublisher.answers = [_rejected(STALE), ACCEPTED]
    event = cli._publish_admin(_payload())
    sent = FakePublisher.published
    assert len(sent) == 2
    assert sent[0].event_id != sent[1].event_id
    assert event is sent[1]


def test_stale_every_time_gives_up_after_the_last_attempt() -> None:
    FakePublisher.answers = [_rejected(STALE)] * cli.STALE_ATTEMPTS
    refused: list[bool] = []
    with pytest.raises(typer.Exit) as exit_:
        cli._publish_admin(_payload(), refused=lambda: refused.append(True))
    assert exit_.value.exit_code == 1
    assert len(FakePublisher.published) == cli.STALE_ATTEMPTS
    assert refused == [True]


def test_any_other_refusal_is_not_sent_again() -> None:
    FakePublisher.answers = [_rejected("account A1 is not open"), ACCEPTED]
    with pytest.raises(typer.Exit):
        cli._publish_admin(_payload())
    assert len(FakePublisher.published) == 1
