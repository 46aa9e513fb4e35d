"""Event-time order across many input partitions, decided only by what is on the log.

The inputs come from many partitions of several topics, and their interleaving at the
consumer is an accident of fetch timing: a fetch that returns a second of one partition
and a second of another is handed over partition by partition, and a worker catching up
reads whole seconds of event time from one partition before the next. A watermark of
"newest event time minus a lateness" cannot survive that: one partition's newer events
push it past another partition's older events that are already fetched but not yet seen.

So the sequencer works in *arrival* time as well as event time. The intake stamps every
record with its arrival time (`rx`, wall clock at the intake) and its source partition;
ticks carry the intake's clock when the inputs are quiet. An event is released, in
`(occurred_at, event_id)` order, once

1. it has dwelt `dwell` in the buffer (arrival time), so anything fetched with it or just
   after it, from any partition, has arrived too; and
2. no *active* source (one that delivered within the last `dwell`) is still behind it in
   event time (its newest event is older), since such a source is evidently still
   delivering older events: a partition being caught up holds the others back.

Only the buffered events' arrival stamps and the log's own stamps are used, never the
clock of the process folding the log, so a replay of the sequenced log releases exactly
the same batches. An event that arrives later than the bound is still processed (never
dropped), just out of order, and counted in `late`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict

from schemas import Envelope, decode, encode


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Buffered(_Model):
    raw: str
    """The encoded event (JSON text) waiting for release."""
    at: datetime
    event_id: str
    rx: int
    """Arrival at the intake, µs since the epoch."""


class SourceClock(_Model):
    clock: datetime
    """Newest event time seen from this source partition."""
    rx: int
    """Arrival of its newest record, µs since the epoch."""


class SequencerState(_Model):
    buffer: list[Buffered] = []
    sources: dict[str, SourceClock] = {}
    now: int = 0
    """Newest arrival stamp seen on the log (records and ticks), µs."""
    released_at: datetime | None = None
    """Event time of the newest event released so far."""
    late: int = 0
    """Events released behind an already released newer event (beyond the bound)."""


def _micros(delta: timedelta) -> int:
    return delta // timedelta(microseconds=1)


class Sequencer:
    def __init__(self, dwell: timedelta = timedelta(milliseconds=250)) -> None:
        self.dwell = _micros(dwell)

    def push(
        self,
        state: SequencerState,
        event: Envelope[Any],
        *,
        source: str = "-",
        rx: int | None = None,
    ) -> tuple[SequencerState, list[Envelope[Any]]]:
        """Buffer one event that arrived from `source` at `rx`; release what is due."""
        now = max(state.now, rx if rx is not None else state.now)
        item = Buffered(
            raw=encode(event)[1].decode(),
            at=event.occurred_at,
            event_id=str(event.event_id),
            rx=now,
        )
        sources = dict(state.sources)
        prior = sources.get(source)
        clock = event.occurred_at if prior is None else max(prior.clock, event.occurred_at)
        sources[source] = SourceClock(clock=clock, rx=now)
        return self._release(
            state.model_copy(update={"buffer": [*state.buffer, item], "sources": sources}), now
        )

    def tick(
        self, state: SequencerState, rx: int | None = None
    ) -> tuple[SequencerState, list[Envelope[Any]]]:
        """The intake's clock moved on with no record: release what has dwelt long enough."""
        now = max(state.now, rx if rx is not None else state.now)
        if not state.buffer:
            return state.model_copy(update={"now": now}), []
        return self._release(state, now)

    def _release(
        self, state: SequencerState, now: int
    ) -> tuple[SequencerState, list[Envelope[Any]]]:
        active = [s.clock for s in state.sources.values() if now - s.rx < self.dwell]
        holding = min(active) if active else None
        pending = sorted(state.buffer, key=lambda b: (b.at, b.event_id))
        n = 0
        for item in pending:
            if now - item.rx < self.dwell or (holding is not None and item.at > holding):
                break
            n += 1
        ready = [decode(b.raw.encode()) for b in pending[:n]]
        released_at, late = state.released_at, state.late
        for e in ready:
            if released_at is not None and e.occurred_at < released_at:
                late += 1
            released_at = e.occurred_at if released_at is None else max(released_at, e.occurred_at)
        return (
            SequencerState(
                buffer=pending[n:],
                sources=state.sources,
                now=now,
                released_at=released_at,
                late=late,
            ),
            ready,
        )
