"""Partitions change hands without a rebuild: a worker forgets the partitions it gives up
(`release_partitions`) and adds the ones it gains to the state it holds (their slices, then
their records after the slices' offsets). Both must fold to exactly the state of a worker
that read only its new partitions from the start.

The stream and the log come from test_snapshot's harness: four accounts on three
partitions, slices of the live state taken at random points.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from engine.snapshot import SnapshotError, canonical_state, merge_slices, release_partitions
from engine.state import EngineState
from tests.engine.test_snapshot import (
    _BUY,
    _BUY2,
    ACTION,
    OWN,
    PART,
    Log,
    _apply_raw,
    _fresh,
    _harness,
    full_replay,
    roundtrip,
)

PARTITIONS = frozenset(PART.values())
SUBSET = st.frozensets(st.sampled_from(sorted(PARTITIONS)))


def replay_of(log: Log, partitions: frozenset[int]) -> EngineState:
    """The state of a worker that read the reference topics and only `partitions`' own."""
    s = _fresh(log)
    for _t, p, raw in log.own:
        if p in partitions:
            _apply_raw(s, raw)
    return s


def _played(actions: list[tuple[Any, ...]]) -> Log:
    log = Log(_harness())
    for a in actions:
        log.play(a)
    return log


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ACTION, min_size=1, max_size=45), SUBSET)
@example([_BUY, _BUY2, ("trade", -1, "5")], frozenset({0}))
def test_released_partitions_leave_no_trace(
    actions: list[tuple[Any, ...]], released: frozenset[int]
) -> None:
    log = _played(actions)
    held = full_replay(log)
    release_partitions(held, set(released))
    assert canonical_state(held) == canonical_state(replay_of(log, PARTITIONS - released))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ACTION, min_size=1, max_size=45), SUBSET, st.booleans())
@example([_BUY, _BUY2, ("snap", 1), _BUY2], frozenset({0}), True)
def test_gained_partitions_fold_onto_the_held_ones(
    actions: list[tuple[Any, ...]], held: frozenset[int], use_slices: bool
) -> None:
    log = _played(actions)
    gained = PARTITIONS - held
    s = replay_of(log, held)
    slices = [roundtrip(log.slices[p]) for p in sorted(gained) if use_slices and p in log.slices]
    try:
        merge_slices(s, slices)
    except SnapshotError as exc:
        # As in test_snapshot: only a longer rate window than the slice's refuses it.
        assert "rate windows" in str(exc)
        assert any(a[0] == "limits" for a in actions)
        return
    start = {(t, sl.partition): sl.offsets[t] for sl in slices for t in OWN}
    seen: dict[tuple[str, int], int] = {}
    for t, p, raw in log.own:
        if p not in gained:
            continue
        i = seen.get((t, p), 0)
        seen[(t, p)] = i + 1
        if i >= start.get((t, p), 0):
            _apply_raw(s, raw)
    assert canonical_state(s) == canonical_state(full_replay(log))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ACTION, min_size=1, max_size=45), SUBSET, SUBSET)
def test_release_then_regain_is_the_full_replay(
    actions: list[tuple[Any, ...]], released: frozenset[int], regained: frozenset[int]
) -> None:
    """Give partitions up and take some back (records from offset 0): no residue, no
    double count."""
    log = _played(actions)
    s = full_replay(log)
    release_partitions(s, set(released))
    back = released & regained
    for _t, p, raw in log.own:
        if p in back:
            _apply_raw(s, raw)
    expect = replay_of(log, (PARTITIONS - released) | back)
    assert canonical_state(s) == canonical_state(expect)
