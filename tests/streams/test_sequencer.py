"""The sequencer turns any fetch interleaving of in-order partitions into one ordered stream."""

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

DWELL = 250_000  # µs


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


def source_of(e: Envelope[Any]) -> str:
    """Like a partition: one stream per topic and key, each in event-time order."""
    return f"{e.topic}:{e.key}"


Arrival = tuple[int, Envelope[Any]]


def sequenced(arrivals: list[Arrival]) -> tuple[list[Envelope[Any]], list[int], SequencerState]:
    """Feed (rx µs, event) arrivals, then ticks until quiet: released events and batch sizes."""
    seq = Sequencer(timedelta(microseconds=DWELL))
    state = SequencerState()
    out: list[Envelope[Any]] = []
    batches: list[int] = []
    for rx, e in arrivals:
        state, ready = seq.push(state, e, source=source_of(e), rx=rx)
        out.extend(ready)
        batches.append(len(ready))
    last = arrivals[-1][0] if arrivals else 0
    for k in range(1, 12):
        state, ready = seq.tick(state, last + k * DWELL // 4)
        out.extend(ready)
        batches.append(len(ready))
    return out, batches, state


def by_time(events: list[Envelope[Any]]) -> list[Any]:
    return [e.event_id for e in sorted(events, key=lambda e: (e.occurred_at, str(e.event_id)))]


def interleave(data: st.DataObject, events: list[Envelope[Any]]) -> list[Envelope[Any]]:
    """Any merge of the per-source streams that keeps each source's own order."""
    queues: dict[str, list[Envelope[Any]]] = {}
    for e in events:
        queues.setdefault(source_of(e), []).append(e)
    out: list[Envelope[Any]] = []
    while queues:
        name = data.draw(st.sampled_from(sorted(queues)))
        out.append(queues[name].pop(0))
        if not queues[name]:
            del queues[name]
    return out


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_one_fetch_in_any_partition_order_is_sequenced_exactly(data: st.DataObject) -> None:
    """A whole tape fetched at once (seconds of event time) and handed over in any order."""
    events = spoof_tape().events
    order = interleave(data, events)
    stamps = sorted(data.draw(st.lists(st.integers(0, DWELL - 1), min_size=len(order),
                                       max_size=len(order))))  # fmt: skip
    out, _, state = sequenced(list(zip(stamps, order, strict=True)))
    assert [e.event_id for e in out] == by_time(events)
    assert state.late == 0 and not state.buffer
    alerts = Surveillance(all_detectors()).process_batch(out)
    assert [a.payload.pattern for a in alerts] == ["SPOOFING"]


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_catching_up_partitions_hold_each_other_back(data: st.DataObject) -> None:
    """Each partition delivers steadily at its own pace, so arrivals spread far beyond the
    dwell, yet no partition's newer events overtake another's older ones."""
    events = spoof_tape().events
    arrivals: list[Arrival] = []
    queues: dict[str, list[Envelope[Any]]] = {}
    for e in events:
        queues.setdefault(source_of(e), []).append(e)
    for name in sorted(queues):
        rx = data.draw(st.integers(0, DWELL // 2))  # every partition is in the first fetch
        for e in queues[name]:
            arrivals.append((rx, e))
            rx += data.draw(st.integers(1, DWELL // 2))  # still delivering: no long pause
    arrivals.sort(key=lambda a: a[0])
    out, _, state = sequenced(arrivals)
    assert [e.event_id for e in out] == by_time(events)
    assert state.late == 0


def test_replaying_the_log_releases_the_same_batches() -> None:
    events = spoof_tape().events
    arrivals = [(i * 40_000, e) for i, e in enumerate(reversed(events))]
    first, batches1, _ = sequenced(arrivals)
    second, batches2, _ = sequenced(arrivals)
    assert batches1 == batches2 and [e.event_id for e in first] == [e.event_id for e in second]


def test_arrival_order_without_sequencing_can_miss_the_pattern() -> None:
    """Why the sequencer exists: a cancel folded before its order's submit is lost, and
    the order is never judged. (The detectors now tolerate the order folded before its
    account's `AccountOpened` and its quote, this test's scramble before review 52.)"""
    events = spoof_tape().events
    scrambled = [*events[:3], events[6], *events[3:6], *events[7:]]
    assert Surveillance(all_detectors()).process_batch(scrambled) == []
    out, _, _ = sequenced([(i * 1000, e) for i, e in enumerate(scrambled)])
    assert len(Surveillance(all_detectors()).process_batch(out)) == 1


def test_ticks_release_after_the_dwell_and_not_before() -> None:
    events = spoof_tape().events[:3]
    seq = Sequencer(timedelta(microseconds=DWELL))
    state = SequencerState()
    for i, e in enumerate(events):
        state, ready = seq.push(state, e, source=source_of(e), rx=1_000 + i)
        assert ready == []
    state, ready = seq.tick(state, 1_000 + DWELL - 1)
    assert ready == [] and len(state.buffer) == 3, "still within the dwell"
    state, ready = seq.tick(state, 1_002 + DWELL)
    assert [e.event_id for e in ready] == [e.event_id for e in events]
    assert not state.buffer


def test_an_event_later_than_the_bound_is_processed_and_counted() -> None:
    events = spoof_tape().events
    early, rest = events[0], events[1:]
    seq = Sequencer(timedelta(microseconds=DWELL))
    state = SequencerState()
    out: list[Envelope[Any]] = []
    for i, e in enumerate(rest):
        state, ready = seq.push(state, e, source=source_of(e), rx=i)
        out += ready
    state, ready = seq.tick(state, 2 * DWELL)
    out += ready
    assert len(out) == len(rest)
    state, ready = seq.push(state, early, source=source_of(early), rx=3 * DWELL)
    state, more = seq.tick(state, 5 * DWELL)
    assert [e.event_id for e in ready + more] == [early.event_id], "late, but not dropped"
    assert state.late == 1
