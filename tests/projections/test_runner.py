"""How `tradetape run projections` lays projectors out: groups, fetches, read-ahead."""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
from typing import Any

import pytest

import projections.runner as runner
from deploy.settings import Settings
from projections.core import PROJECTIONS
from projections.foldversion import FoldVersionMismatch
from projections.projector import OffsetsOutOfRange, Projector
from projections.runner import live_groups, run_group, topic_groups


def _names(groups: list[list[Any]]) -> list[list[str]]:
    return [[p.name for p in g] for g in groups]


def test_light_projections_share_one_group_and_the_orders_topic_is_split() -> None:
    assert _names(topic_groups(list(PROJECTIONS.values()))) == [
        ["accounts", "alerts", "deadletters", "risk_config"],
        ["balances", "positions"],
        ["decisions"],
        ["drawdown"],
        ["fills", "orders"],
        ["tax_lots"],
    ]


LIVE = [
    ["accounts", "alerts", "deadletters", "risk_config"],
    ["balances", "positions"],
    ["decisions", "drawdown"],
    ["fills", "orders"],
    ["tax_lots"],
]


def test_live_the_two_risk_decisions_projections_are_one_group() -> None:
    # Live, a group costs per batch (fetches, a transaction ~20 times a second), so
    # decisions and drawdown share one: one decode of each RiskDecision, one
    # transaction; the orders topic stays split and the light group apart.
    assert _names(live_groups(list(PROJECTIONS.values()))) == LIVE
    chosen = [PROJECTIONS[n] for n in ("decisions", "drawdown", "risk_config", "orders")]
    assert _names(live_groups(chosen)) == [["decisions", "drawdown"], ["orders"], ["risk_config"]]


def test_main_runs_the_live_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[list[str]] = []

    class Proc:
        pid = 1
        exitcode = 0

        def __init__(self, *, args: Any, **_kw: Any) -> None:
            started.append(args[1])

        def start(self) -> None:
            signal.raise_signal(signal.SIGTERM)  # main's handler: stop

        def is_alive(self) -> bool:
            return False

        def join(self, _timeout: float) -> None:
            return None

    class Ctx:
        Process = Proc

    monkeypatch.setattr(multiprocessing, "get_context", lambda _m: Ctx())
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        assert runner.main(Settings()) == 0
        # main gives the stop signals back: left installed, a later Ctrl-C in this
        # process set a finished runner's flag and raised nothing (deploy.signals)
        assert {s: signal.getsignal(s) for s in handlers} == handlers
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
    assert sorted(started) == LIVE


def test_without_join_or_split_groups_are_the_topic_components() -> None:
    assert _names(topic_groups(list(PROJECTIONS.values()), split=(), join=())) == [
        # balances reads accounts.events for the deposits (fold version 5, session 22)
        ["accounts", "balances", "fills", "orders", "positions", "tax_lots"],
        ["alerts"],
        ["deadletters"],
        ["decisions", "drawdown", "risk_config"],
    ]


def test_a_join_set_only_joins_the_projections_selected() -> None:
    chosen = [PROJECTIONS["deadletters"], PROJECTIONS["risk_config"], PROJECTIONS["fills"]]
    assert _names(topic_groups(chosen)) == [["deadletters", "risk_config"], ["fills"]]


def test_live_fetches_are_batched_by_the_broker_with_a_bounded_wait() -> None:
    live = Projector(Settings(), PROJECTIONS["fills"]).consumer_config()
    # One fetch answers many records (not one round trip per record arrival) ...
    assert live["fetch.min.bytes"] >= 16 << 10
    # ... and a quiet topic's record still waits at most a small part of the budget.
    assert live["fetch.wait.max.ms"] <= 50
    replay = Projector(Settings(), PROJECTIONS["fills"], replay=True).consumer_config()
    assert replay["fetch.min.bytes"] >= live["fetch.min.bytes"]
    # The wait is the operator's: less lag where cores are to spare.
    tuned = Settings(projection_fetch_wait_ms=15)
    assert Projector(tuned, PROJECTIONS["fills"]).consumer_config()["fetch.wait.max.ms"] == 15


def test_live_groups_read_the_next_batch_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[dict[str, Any]] = []
    stop = threading.Event()

    class Recorder:
        def __init__(self, *_args: Any, **kwargs: Any) -> None:
            made.append(kwargs)

        def __enter__(self) -> Recorder:
            return self

        def __exit__(self, *_exc: object) -> None:
            return None

        def step(self, _timeout: float) -> int:
            stop.set()
            return 0

    monkeypatch.setattr(runner, "Projector", Recorder)
    run_group(Settings(), [PROJECTIONS["fills"], PROJECTIONS["orders"]], stop)
    assert made == [{"batch_size": runner.LIVE_BATCH, "eager": True, "pipelined": True}]


@pytest.mark.parametrize("refusal", [OffsetsOutOfRange, FoldVersionMismatch])
def test_a_refusal_until_rebuilt_is_said_once_not_a_traceback_per_retry(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    refusal: type[RuntimeError],
) -> None:
    """A group refused until an operator rebuilds (its stored offsets no longer in the
    log, bf87352; its live schema folded by another fold version) is held as one whose
    topics gained partitions is: said once, looked at again every 10 s. Before: a full
    traceback ('projector ... failed; restarting from stored offsets') at every retry,
    every 10 s once the backoff was spent, until the rebuild (FoldVersionMismatch until
    session 24's review, OffsetsOutOfRange until af85c7e)."""
    tries: list[int] = []

    class Refused:
        def __init__(self, *_args: Any, **_kwargs: Any) -> None:
            pass

        def __enter__(self) -> Refused:
            tries.append(1)
            raise refusal("... refused ...: run `tradetape rebuild fills`")

        def __exit__(self, *_exc: object) -> None:
            return None

    class ThreeLooks(threading.Event):
        def __init__(self) -> None:
            super().__init__()
            self.waits: list[float | None] = []

        def wait(self, timeout: float | None = None) -> bool:
            self.waits.append(timeout)
            if len(self.waits) >= 3:
                self.set()
            return self.is_set()

    monkeypatch.setattr(runner, "Projector", Refused)
    stop = ThreeLooks()
    with caplog.at_level(logging.INFO, logger=runner.log.name):
        run_group(Settings(), [PROJECTIONS["fills"]], stop)
    assert len(tries) == 3
    said = [r for r in caplog.records if r.name == runner.log.name]
    assert len(said) == 1 and said[0].exc_info is None, said
    assert "tradetape rebuild fills" in said[0].getMessage()
    assert stop.waits == [10.0, 10.0, 10.0]
