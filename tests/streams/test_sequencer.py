"""The sequencer turns any bounded shuffle of a tape into the same ordered stream."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import Envelope
from streams.detectors import all_detectors
from streams.sequencer import Sequencer, SequencerState
from streams.surveillance_state import Surveillance
from streams.synthetic import Tape


def spoof_tape() -> Tape:
    t = Tape()
    t.open_account("A1", "owner-x")
    t.open_account("A2", "owner-x")
    t.quote(0.5, "100.00", "100.10", "2", "2")
    t.submit(1.0, "A1", "big", "BUY", "10", "99.95")
    t.submit(2.0, "A2", "sell", "SELL", "1", "100.10")
    t.fill(2.5, "sell")
    t.cancel(4.0, "big")
    for i in range(10):
        t.quote(5 + i, "100.00", "100.10", "2", "2")
    return t


def sequenced(events: list[Envelope[Any]], lateness: float) -> list[Envelope[Any]]:
    seq = Sequencer(timedelta(seconds=lateness))
    state = SequencerState()
    out: list[Envelope[Any]] = []
    for e in events:
        state, ready = seq.push(state, e)
        out.extend(ready)
    state, ready = seq.tick(state)
    out += ready
    state, ready = seq.tick(state)
    return out + ready


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_bounded_shuffles_give_the_same_order_and_alerts(data: st.DataObject) -> None:
    events = spoof_tape().events
    # displace each event by less than the lateness (2 s) in event time
    keys = [e.occurred_at.timestamp() + data.draw(st.floats(0, 1.9)) for e in events]
    shuffled = [e for _, e in sorted(zip(keys, events, strict=True), key=lambda p: p[0])]
    ordered = sequenced(shuffled, 2)
    assert [e.event_id for e in ordered] == [
        e.event_id for e in sorted(events, key=lambda e: (e.occurred_at, str(e.event_id)))
    ]
    alerts = Surveillance(all_detectors()).process_batch(ordered)
    assert [a.payload.pattern for a in alerts] == ["SPOOFING"]


def test_arrival_order_without_sequencing_can_miss_the_pattern() -> None:
    """Why the sequencer exists: the order submitted before its quote is seen loses context."""
    events = spoof_tape().events
    scrambled = [events[3], *events[:3], *events[4:]]
    assert Surveillance(all_detectors()).process_batch(scrambled) == []
    assert len(Surveillance(all_detectors()).process_batch(sequenced(scrambled, 2))) == 1


def test_tick_releases_idle_events() -> None:
    events = spoof_tape().events[:3]
    seq = Sequencer()
    state = SequencerState()
    for e in events:
        state, _ = seq.push(state, e)
    assert state.buffer
    state, ready = seq.tick(state)
    assert ready == [] and state.buffer, "the first tick only notes that events arrived"
    state, ready = seq.tick(state)
    assert [e.event_id for e in ready] == [e.event_id for e in events]
    assert not state.buffer
