"""How `tradetape run projections` lays projectors out: groups, fetches, read-ahead."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import projections.runner as runner
from deploy.settings import Settings
from projections.core import PROJECTIONS
from projections.projector import Projector
from projections.runner import run_group, topic_groups


def _names(groups: list[list[Any]]) -> list[list[str]]:
    return [[p.name for p in g] for g in groups]


def test_light_projections_share_one_group_and_the_orders_topic_is_split() -> None:
    assert _names(topic_groups(list(PROJECTIONS.values()))) == [
        ["accounts", "alerts", "deadletters", "risk_config"],
        ["balances", "positions"],
        ["decisions"],
        ["drawdown"],
        ["fills", "orders"],
    ]


def test_without_join_or_split_groups_are_the_topic_components() -> None:
    assert _names(topic_groups(list(PROJECTIONS.values()), split=(), join=())) == [
        ["accounts"],
        ["alerts"],
        ["balances", "fills", "orders", "positions"],
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
