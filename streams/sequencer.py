"""Event-time order across many input partitions, decided only by what is on the log.

The inputs come from many partitions of several topics, and their interleaving at the
consumer is an accident of fetch timing: a fetch that returns a second of one partition
and a second of another is handed over partition by partition, and a worker catching up
reads whole seconds of event time from one partition before the next. A watermark of
"newest event time minus a lateness" cannot survive that: one partition's newer events
push it past another partition's older events that are already fetched but not yet seen.

So the sequencer works in *arrival* time as well as event time. The intake stamps every
record with its arrival time (`rx`, wall clock at the intake), its source partition and
its offset there; ticks carry the intake's clock when the inputs are quiet. Events are
released in `(occurred_at, source, offset)` order (`RELEASE_ORDER`): equal event times
keep their source partition's log order (the engine stamps every output of an intent,
submit and fill alike, with the intent's time), and different partitions tie by name, so
any interleaving of the same partitions releases the same order. An event is released
once

1. it has dwelt `dwell` in the buffer (arrival time), so anything fetched with it or just
   after it, from any partition, has arrived too; and
2. no *active* source (one that delivered within the last `dwell`) is still behind it in
   event time (its newest event is older), since such a source is evidently still
   delivering older events: a partition being caught up holds the others back;

or, whatever holds it, once it has waited `max_hold`, or the buffer holds more than
`max_buffered` events: a source that stays behind in event time (a backdating producer, a
historical load) may delay the others that long, no longer, and what it delivers after
them is released late.

Arrival time is the sequencer's own clock, advanced by the stamps: a stamp may lead it by
at most `max_lead`, and a stamp more than `max_lag` behind it is taken as the intake's
clock stepping back (both rebase the stamps). So one stamp taken during a clock step
moves the clock by one `max_lead`, not by the step, and a step back stalls nothing.

Only the sequenced log's own stamps are used, never the clock of the process folding the
log, so a replay of the sequenced log releases exactly the same batches. An event that
arrives later than the bound is still processed (never dropped), just out of order, and
counted in `late`.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from schemas import Envelope, decode, encode

RELEASE_ORDER = 2
"""Version of the release order. 1: `(occurred_at, event_id)`, which released about half
of the engine's fills before their own `OrderSubmitted` (same time, hash-derived ids).
2: `(occurred_at, source, offset)`, plus the clock rebase and the `max_hold` and
`max_buffered` caps. A change that releases the same log in another order bumps it."""
MAX_HOLD = timedelta(seconds=10)
"""How long a source behind in event time may hold the others back."""
MAX_BUFFERED = 20_000
"""Past this many buffered events the earliest are released whatever holds them."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Buffered(_Model):
    raw: str
    """The encoded event (JSON text) waiting for release."""
    at: datetime
    event_id: str
    rx: int
    """Arrival at the intake, µs on the sequencer's clock (see `SequencerState.now`)."""
    src: str = ""
    """Source partition (`topic:partition`)."""
    off: int = 0
    """Position in the source partition: its offset, else the sequencer's count of it."""

    def key(self) -> tuple[datetime, str, int, str]:
        """The release order (`RELEASE_ORDER`)."""
        return (self.at, self.src, self.off, self.event_id)


class SourceClock(_Model):
    clock: datetime
    """Newest event time seen from this source partition."""
    rx: int
    """Arrival of its newest record, µs on the sequencer's clock."""
    n: int = 0
    """Records seen from this source (positions records that carry no offset)."""


class SequencerState(_Model):
    buffer: list[Buffered] = []
    """In release order (`Buffered.key`)."""
    sources: dict[str, SourceClock] = {}
    now: int = 0
    """The sequencer's clock, µs: the arrival stamps seen on the log (records and ticks)
    plus `skew`, never going back; 0 before the first stamp."""
    skew: int = 0
    """Added to a stamp to put it on the sequencer's clock; changed only by a clock step."""
    released_at: datetime | None = None
    """Event time of the newest event released so far."""
    late: int = 0
    """Events released behind an already released newer event (beyond the bound)."""
    forced: int = 0
    """Events released by `max_hold` or `max_buffered` rather than by dwell and clocks."""
    steps: int = 0
    """Arrival stamps taken as a step of the intake's clock (rebased)."""
    folded_to: int | None = None
    """The offset on the sequenced log of the last record the detect agent folded into this
    state (`streams.app`): a record at or before it that faust delivers again (from the
    committed offset, which the changelogs are ahead of) is skipped, not pushed again."""

    @field_validator("buffer")
    @classmethod
    def _in_release_order(cls, buffer: list[Buffered]) -> list[Buffered]:
        return sorted(buffer, key=Buffered.key)


def _micros(delta: timedelta) -> int:
    return delta // timedelta(microseconds=1)


class Sequencer:
    def __init__(
        self,
        dwell: timedelta = timedelta(milliseconds=250),
        *,
        max_hold: timedelta = MAX_HOLD,
        max_buffered: int = MAX_BUFFERED,
        max_lead: timedelta | None = None,
        max_lag: timedelta | None = None,
    ) -> None:
        self.dwell = _micros(dwell)
        self.max_hold = max(_micros(max_hold), self.dwell)
        self.max_buffered = max_buffered
        self.max_lead = _micros(max_lead) if max_lead is not None else self.dwell
        """How far one stamp may move the clock on (default: one dwell)."""
        self.max_lag = _micros(max_lag) if max_lag is not None else 4 * self.dwell
        """How far a stamp may trail the clock before it is taken as a step back."""

    def _clock(self, state: SequencerState, rx: int | None) -> dict[str, int]:
        """The clock after a stamp `rx` (intake wall clock, µs), as state updates."""
        if rx is None:
            return {}
        if state.now == 0 and not state.sources:
            return {"now": rx, "skew": 0}  # the first stamp sets the clock
        at = rx + state.skew
        if at > state.now + self.max_lead or at < state.now - self.max_lag:
            # A step of the intake's clock (or a stamp taken during one): rebase the
            # stamps so this one reads `now` moved on by at most `max_lead`.
            moved = min(max(at, state.now), state.now + self.max_lead)
            return {"now": moved, "skew": moved - rx, "steps": state.steps + 1}
        return {"now": max(state.now, at)}

    def push(
        self,
        state: SequencerState,
        event: Envelope[Any],
        *,
        source: str = "-",
        rx: int | None = None,
        offset: int | None = None,
    ) -> tuple[SequencerState, list[Envelope[Any]]]:
        """Buffer one event that arrived from `source` (at `offset` there) at `rx`; release
        what is due."""
        state = state.model_copy(update=self._clock(state, rx))
        now = state.now
        sources = dict(state.sources)
        prior = sources.get(source)
        item = Buffered(
            raw=encode(event)[1].decode(),
            at=event.occurred_at,
            event_id=str(event.event_id),
            rx=now,
            src=source,
            off=offset if offset is not None else (prior.n if prior is not None else 0),
        )
        clock = event.occurred_at if prior is None else max(prior.clock, event.occurred_at)
        n = prior.n + 1 if prior is not None else 1
        sources[source] = SourceClock(clock=clock, rx=now, n=n)
        buffer = list(state.buffer)
        at = bisect.bisect_left(buffer, item.key(), key=Buffered.key)
        if at == len(buffer) or buffer[at].key() != item.key():
            # else a copy is buffered already: the intake forwards a source record again
            # after a restart (same source and offset); the app's buffer table keeps one
            # row per event id, so a second copy made a restart differ from the live run
            buffer.insert(at, item)
        return self._release(state.model_copy(update={"buffer": buffer, "sources": sources}))

    def tick(
        self, state: SequencerState, rx: int | None = None
    ) -> tuple[SequencerState, list[Envelope[Any]]]:
        """The intake's clock moved on with no record: release what has dwelt long enough."""
        state = state.model_copy(update=self._clock(state, rx))
        if not state.buffer:
            return state, []
        return self._release(state)

    def _release(self, state: SequencerState) -> tuple[SequencerState, list[Envelope[Any]]]:
        now = state.now
        active = [s.clock for s in state.sources.values() if now - s.rx < self.dwell]
        holding = min(active) if active else None
        pending = state.buffer  # kept in release order
        n = 0
        for item in pending:
            if now - item.rx < self.dwell or (holding is not None and item.at > holding):
                break
            n += 1
        # Caps: everything up to the last event that waited `max_hold`, and the earliest
        # beyond `max_buffered`, go now, in order, whatever holds them.
        due = n
        for i in range(len(pending) - 1, n - 1, -1):
            if now - pending[i].rx >= self.max_hold:
                due = i + 1
                break
        due = max(due, len(pending) - self.max_buffered)
        ready = [decode(b.raw.encode()) for b in pending[:due]]
        released_at, late = state.released_at, state.late
        for e in ready:
            if released_at is not None and e.occurred_at < released_at:
                late += 1
            released_at = e.occurred_at if released_at is None else max(released_at, e.occurred_at)
        return (
            state.model_copy(
                update={
                    "buffer": pending[due:],
                    "released_at": released_at,
                    "late": late,
                    "forced": state.forced + due - n,
                }
            ),
            ready,
        )


def partition_of(event: Envelope[Any]) -> str:
    """A stand-in for an event's source partition off the broker: its topic and key (one
    key's events are on one partition, in log order)."""
    return f"{event.topic}:{event.key}"


def sequence_log(
    events: list[Envelope[Any]],
    *,
    sequencer: Sequencer | None = None,
    source: Callable[[Envelope[Any]], str] = partition_of,
    spacing: timedelta = timedelta(milliseconds=1),
) -> tuple[list[Envelope[Any]], SequencerState]:
    """What the app folds for a log that arrives in its order, `spacing` apart: the events
    as the sequencer releases them (for the scenario test and the demo, no broker)."""
    seq = sequencer or Sequencer()
    state = SequencerState()
    out: list[Envelope[Any]] = []
    step = _micros(spacing)
    rx = 1
    for e in events:
        state, ready = seq.push(state, e, source=source(e), rx=rx)
        out.extend(ready)
        rx += step
    while state.buffer:
        rx += seq.dwell
        state, ready = seq.tick(state, rx)
        out.extend(ready)
    return out, state
