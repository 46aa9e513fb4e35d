"""How long a split rebuild's parent waits for a silent other half (`_OtherHalf.wait`):
`SILENCE_LIMIT`, more for a half that read many records (its last commit is silent and
takes longer; review helper-60: a fixed 120 s would kill a healthy 20M-record half)."""

from __future__ import annotations

from typing import Any

import pytest

from projections import partitioned


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _Pipe:
    """Delivers its messages, then nothing; each poll lets `wait` seconds pass."""

    def __init__(self, clock: _Clock, messages: list[Any]) -> None:
        self.clock, self.messages = clock, messages

    def poll(self, wait: float = 0.0) -> bool:
        if self.messages:
            return True
        self.clock.now += wait
        return False

    def recv(self) -> Any:
        return self.messages.pop(0)


class _Alive:
    exitcode = None

    def is_alive(self) -> bool:
        return True


@pytest.mark.parametrize(("records", "limit"), [(100, 5), (1_000, 10), (5_000, 50)])
def test_the_silence_bound_grows_with_the_records_the_half_read(
    monkeypatch: pytest.MonkeyPatch, records: int, limit: int
) -> None:
    clock = _Clock()
    monkeypatch.setattr("projections.partitioned.time.monotonic", clock)
    monkeypatch.setattr(partitioned, "SILENCE_LIMIT", 5.0)
    monkeypatch.setattr(partitioned, "SILENT_RECORDS_PER_SECOND", 100)
    seen: list[int] = []
    half = partitioned._OtherHalf(_Pipe(clock, [("progress", records)]), _Alive())
    with pytest.raises(partitioned.HalfSilent, match=f"nothing for {limit} s"):
        half.wait(seen.append)
    assert seen == [records]
    assert limit <= clock.now <= limit + 1
