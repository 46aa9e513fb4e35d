"""`deploy.signals.handling_stop`: a component's stop handler for its run only."""

from __future__ import annotations

import signal

import pytest

from deploy.signals import STOP_SIGNALS, handling_stop


def test_the_handler_runs_inside_and_the_old_ones_come_back_also_after_a_raise() -> None:
    seen: list[int] = []
    before = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    with pytest.raises(RuntimeError), handling_stop(lambda n, _f: seen.append(n)):
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGINT)
        raise RuntimeError("the run failed")
    assert seen == [signal.SIGTERM, signal.SIGINT]
    assert {s: signal.getsignal(s) for s in STOP_SIGNALS} == before
