"""`SigningCoordinator.close()` closes its producer too (issue #3, h62 item 5). Before, it
only flushed it: every coordinator's producer, with its librdkafka threads reconnecting to
the broker, lived on after the round (two per run of test_signer_processes)."""

from __future__ import annotations

from typing import Any, cast

import pytest

from deploy.settings import Settings
from signer_ffi import coordinator
from signer_ffi.coordinator import SigningCoordinator


def test_close_closes_the_producer_and_the_consumer(monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[str] = []

    class Producer:
        def __init__(self, *_a: Any, **_k: Any) -> None:
            pass

        def flush(self, _timeout: float | None = None) -> int:
            return 0

        def close(self) -> bool:
            closed.append("producer")
            return True

    class Consumer:
        def __init__(self, *_a: Any, **_k: Any) -> None:
            pass

        def close(self) -> None:
            closed.append("consumer")

    monkeypatch.setattr(coordinator, "Producer", Producer)
    monkeypatch.setattr(coordinator, "Consumer", Consumer)
    monkeypatch.setattr(coordinator, "assign_from_end", lambda *_a: None)
    with SigningCoordinator(Settings(), cast(Any, None), cast(Any, None)):
        pass
    assert sorted(closed) == ["consumer", "producer"]
