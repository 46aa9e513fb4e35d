"""An in-memory stand-in for confluent_kafka's Producer and Consumer (one partition per
topic), for the ceremony's Kafka loop without a broker. `Broker.fail_produce` makes every
delivery fail, as a broker refusing the records would."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import TIMESTAMP_NOT_AVAILABLE


class Record:
    def __init__(self, topic: str, offset: int, key: Any, value: Any, headers: Any) -> None:
        self._t, self._o, self._k, self._v, self._h = topic, offset, key, value, headers

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._o

    def key(self) -> Any:
        return self._k

    def value(self) -> Any:
        return self._v

    def headers(self) -> Any:
        return self._h

    def timestamp(self) -> tuple[int, int]:
        return (TIMESTAMP_NOT_AVAILABLE, -1)

    def error(self) -> None:
        return None


class Broker:
    def __init__(self) -> None:
        self.logs: dict[str, list[Record]] = {}
        self.lock = threading.Lock()
        self.fail_produce = False
        self.refuse: Callable[[str, Any], bool] | None = None
        """Refuse delivery of the records it returns True for (value bytes)."""

    def records(self, topic: str) -> list[Record]:
        with self.lock:
            return list(self.logs.get(topic, []))

    def producer_class(self) -> type[Any]:
        broker = self

        class Producer:
            def __init__(self, *_a: Any, **_k: Any) -> None:
                self._pending: list[tuple[Callable[..., None] | None, Any, Any]] = []

            def produce(
                self,
                topic: str,
                key: Any = None,
                value: Any = None,
                headers: Any = None,
                on_delivery: Callable[..., None] | None = None,
            ) -> None:
                if broker.fail_produce or (broker.refuse and broker.refuse(topic, value)):
                    err = SimpleNamespace(str=lambda: "Broker: Message size too large")
                    self._pending.append((on_delivery, err, None))
                    return
                with broker.lock:
                    log = broker.logs.setdefault(topic, [])
                    rec = Record(topic, len(log), key, value, headers)
                    log.append(rec)
                self._pending.append((on_delivery, None, rec))

            def poll(self, _t: float = 0) -> int:
                return self.flush()

            def flush(self, _t: float | None = None) -> int:
                pending, self._pending = self._pending, []
                for cb, err, rec in pending:
                    if cb is not None:
                        cb(err, rec)
                return 0

            def close(self) -> bool:
                return self.flush() == 0

        return Producer

    def consumer_class(self) -> type[Any]:
        broker = self

        class Consumer:
            def __init__(self, *_a: Any, **_k: Any) -> None:
                self._pos: dict[str, int] = {}

            def list_topics(self, topic: str, timeout: float | None = None) -> Any:
                return SimpleNamespace(topics={topic: SimpleNamespace(partitions={0: None})})

            def assign(self, tps: list[Any]) -> None:
                for tp in tps:
                    self._pos[tp.topic] = max(tp.offset, 0)

            def position(self, tps: list[Any]) -> list[Any]:
                return [
                    SimpleNamespace(
                        topic=tp.topic, partition=0, offset=self._pos.get(tp.topic, -1001)
                    )
                    for tp in tps
                ]

            def poll(self, timeout: float = 0) -> Record | None:
                for topic, pos in self._pos.items():
                    log = broker.records(topic)
                    if pos < len(log):
                        self._pos[topic] = pos + 1
                        return log[pos]
                time.sleep(min(timeout, 0.01))
                return None

            def close(self) -> None:
                pass

        return Consumer


def serve_from(monkeypatch: pytest.MonkeyPatch, queue: list[Any], producer_class: type) -> None:
    """Point `signer_ffi.participant.serve` at `queue` (read in order, then nothing) and
    `producer_class`, with no registry, one partition and empty topics: a participant's
    serve loop on records a test lays out, without a broker."""
    import signer_ffi.participant as participant

    class Consumer:
        def __init__(self, *_a: Any, **_k: Any) -> None:
            pass

        def poll(self, _t: float) -> Any:
            return queue.pop(0) if queue else None

        def incremental_assign(self, _tps: Any) -> None:
            pass

        def close(self) -> None:
            pass

    monkeypatch.setattr(participant, "Producer", producer_class)
    monkeypatch.setattr(participant, "Consumer", Consumer)
    monkeypatch.setattr(participant, "_load_registry", lambda *a, **k: None)
    monkeypatch.setattr(participant, "partitions_of", lambda *a, **k: [0])
    monkeypatch.setattr(participant, "admin_client", lambda *a, **k: None)
    monkeypatch.setattr(
        participant, "end_offsets", lambda _admin, tps: {(tp.topic, tp.partition): 0 for tp in tps}
    )
