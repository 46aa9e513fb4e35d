"""The worker's garbage-collector policy (engine.heap): the state leaves the generations
the automatic collector scans, and cycles among frozen objects are still collected, but
only between batches."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from engine.heap import HeapPolicy


class Node:
    """A tracked object that can sit in a reference cycle and be watched by a weakref."""

    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def policy() -> Iterator[HeapPolicy]:
    p = HeapPolicy(full_every=60.0, full_at_least=600.0)
    try:
        yield p
    finally:
        p.release()


def _scanned_ids() -> set[int]:
    """Ids of the objects in the generations the automatic collector scans."""
    return {id(o) for o in gc.get_objects()}


def test_a_batch_leaves_what_it_kept_alive_out_of_the_scanned_generations(
    policy: HeapPolicy,
) -> None:
    state = {f"order-{i}": Node() for i in range(200)}
    assert id(state) in _scanned_ids()
    policy.after_batch()
    scanned = _scanned_ids()
    assert id(state) not in scanned
    assert not any(id(n) in scanned for n in state.values())
    later = Node()  # allocated by the next batch: scanned until that batch ends
    assert id(later) in _scanned_ids()


def test_a_rebuilt_state_is_collected_once_then_frozen(policy: HeapPolicy) -> None:
    a, b = Node(), Node()
    a.other, b.other = b, a
    dead = weakref.ref(a)
    del a, b
    state = [Node() for _ in range(50)]
    policy.after_rebuild()
    assert dead() is None, "the garbage left by the rebuild was not collected"
    assert id(state) not in _scanned_ids()


def test_a_cycle_among_frozen_objects_is_collected_only_between_batches_when_due(
    policy: HeapPolicy,
) -> None:
    a, b = Node(), Node()
    a.other, b.other = b, a
    dead = weakref.ref(a)
    policy.after_batch()
    del a, b
    gc.collect()
    assert dead() is not None, "frozen objects are not scanned by ordinary collections"
    t0 = policy.last_full
    assert policy.between_batches(had_input=False, now=t0 + 2) == 0  # too soon after the last
    assert policy.between_batches(had_input=True, now=t0 + 61) == 0  # busy: not yet forced
    assert policy.between_batches(had_input=False, now=t0 + 61.5) == 0  # idle for only 0.5 s
    assert dead() is not None
    assert policy.between_batches(had_input=False, now=t0 + 62) >= 2
    assert dead() is None
    assert policy.collected >= 2


def test_a_worker_that_is_never_idle_still_collects_fully(policy: HeapPolicy) -> None:
    a, b = Node(), Node()
    a.other, b.other = b, a
    dead = weakref.ref(a)
    policy.after_batch()
    del a, b
    assert policy.between_batches(had_input=True, now=policy.last_full + 601) >= 2
    assert dead() is None


def test_install_raises_the_young_threshold_and_release_restores_it() -> None:
    before = gc.get_threshold()
    p = HeapPolicy()
    p.install()
    try:
        assert gc.get_threshold()[0] > before[0]
        assert gc.get_threshold()[1:] == before[1:]
    finally:
        p.release()
    assert gc.get_threshold() == before


def test_a_disabled_policy_leaves_the_collector_alone() -> None:
    before = gc.get_threshold()
    p = HeapPolicy(enabled=False)
    p.install()
    state = [Node() for _ in range(20)]
    p.after_rebuild()
    p.after_batch()
    assert gc.get_threshold() == before
    assert id(state) in _scanned_ids()
    p.release()
