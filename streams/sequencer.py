"""Event-time ordering with bounded lateness, so detectors see one deterministic order.

The inputs come from many partitions of several topics, and their interleaving at the
consumer is an accident of fetch timing. The sequencer buffers events and releases them
sorted by (occurred_at, event_id) once the watermark (newest event time seen minus
`lateness`) has passed them. When the inputs go quiet, a tick with no event since the
previous tick flushes the buffer. Ticks are records on the sequenced log (they carry no
time), so a replay of that log releases exactly the same batches.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict

from schemas import Envelope, decode, encode


class SequencerState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    buffer: list[str] = []
    """Encoded events (JSON text) waiting for the watermark."""
    watermark: datetime | None = None
    pushes_since_tick: int = 0
    idle_ticks: int = 0


class Sequencer:
    def __init__(self, lateness: timedelta = timedelta(seconds=2), idle_ticks: int = 1) -> None:
        self.lateness = lateness
        self.idle_ticks = idle_ticks

    def push(
        self, state: SequencerState, event: Envelope[Any]
    ) -> tuple[SequencerState, list[Envelope[Any]]]:
        buffered = [*state.buffer, encode(event)[1].decode()]
        mark = event.occurred_at - self.lateness
        if state.watermark is not None:
            mark = max(mark, state.watermark)
        return self._release(buffered, mark, state.pushes_since_tick + 1)

    def tick(self, state: SequencerState) -> tuple[SequencerState, list[Envelope[Any]]]:
        """`idle_ticks` ticks in a row with no event in between flush everything buffered."""
        if state.pushes_since_tick > 0 or not state.buffer:
            return state.model_copy(update={"pushes_since_tick": 0, "idle_ticks": 0}), []
        if state.idle_ticks + 1 < self.idle_ticks:
            return state.model_copy(update={"idle_ticks": state.idle_ticks + 1}), []
        newest = max(decode(raw.encode()).occurred_at for raw in state.buffer)
        mark = max(newest, state.watermark) if state.watermark else newest
        return self._release(list(state.buffer), mark, 0)

    @staticmethod
    def _release(
        buffered: list[str], watermark: datetime, pushes: int
    ) -> tuple[SequencerState, list[Envelope[Any]]]:
        events = [decode(raw.encode()) for raw in buffered]
        ready = sorted(
            (e for e in events if e.occurred_at <= watermark),
            key=lambda e: (e.occurred_at, str(e.event_id)),
        )
        keep = [raw for raw, e in zip(buffered, events, strict=True) if e.occurred_at > watermark]
        return SequencerState(buffer=keep, watermark=watermark, pushes_since_tick=pushes), ready
