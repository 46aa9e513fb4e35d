"""A slice taken by a forked child: the state at the fork, byte for byte, and no child
left behind whatever happens to the slice."""

from __future__ import annotations

import os
import threading
from typing import Any

from engine.slice_fork import ForkedSlice
from engine.snapshot import decode_slice, encode_slice, take_slice
from schemas.events import Side
from tests.engine.test_snapshot import OWN, Log, _harness


def _played() -> Log:
    log = Log(_harness())
    for a in [
        ("limit", "A1", Side.BUY, "1", -5, True),
        ("limit", "A1", Side.SELL, "0.5", 8, False),
        ("trade", -6, "0.4"),
        ("limit", "A3", Side.BUY, "2", 0, False),
    ]:
        log.play(a)
    return log


def _gone(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def test_a_forked_slice_is_the_state_at_the_fork_encoded_as_in_process() -> None:
    log = _played()
    offsets = {t: log.count.get((t, 0), 0) for t in OWN}
    expected = encode_slice(take_slice(log.h.state, 0, offsets))
    forked = ForkedSlice(log.h.state, 0)
    later: list[tuple[Any, ...]] = [
        ("trade", -6, "5"),
        ("cancel", "A1", 2),
        ("market", "A1", Side.BUY),
        ("limit", "A3", Side.BUY, "2.5", 0, True),
    ]
    for step in later:  # the worker moves on while the child works
        log.play(step)
    assert encode_slice(take_slice(log.h.state, 0, offsets)) != expected
    got = forked.finish(offsets)
    assert got == expected
    assert got is not None
    assert decode_slice(*got).offsets == offsets
    assert _gone(forked.pid)


def test_a_dropped_slice_ends_its_child_even_with_a_sibling_alive() -> None:
    log = _played()
    first = ForkedSlice(log.h.state, 0)
    second = ForkedSlice(log.h.state, 1)  # inherits the first's pipe ends, must close them
    done = threading.Event()

    def drop_first() -> None:
        first.drop()
        done.set()

    threading.Thread(target=drop_first, daemon=True).start()
    assert done.wait(20), "the first child waited for its sibling to exit"
    assert _gone(first.pid)
    assert not _gone(second.pid)  # still waiting for its offsets
    second.drop()
    assert _gone(second.pid)


def test_a_failing_child_gives_no_slice() -> None:
    forked = ForkedSlice(None, 0)  # type: ignore[arg-type]  # capture fails in the child
    assert forked.finish({"risk.decisions": 1, "orders.lifecycle": 1}) is None
    assert _gone(forked.pid)
