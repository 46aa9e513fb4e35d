"""A `TransferChecked` decides whether a withdrawal's hold stays (a `REJECT` frees it):
the engine folds one only from the travel rule (`schemas.admission.refusal`, producer
`travelrule`) read from transfers.checks, which only the travel rule's principal may
write. Until session 26 the engine's intake admitted one from any producer, so a check
the engine, a strategy or the transfer service wrote under another name was folded live
and in every rebuild; until session 27 one on transfers.events, which the transfer
service's principal writes, was folded if it claimed `travelrule`. Broker-free: the worker's reference handler (which
dead-letters what it refuses) and the rebuild's fold (which skips it), on records shaped
as the broker gives them."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from deploy.settings import Settings
from engine.replay import Intake, folder
from engine.state import EngineState
from engine.worker import EngineWorker
from schemas import Envelope, EventPayload, encode, new_event
from schemas.events import TransferChecked, TransferRequested
from schemas.events.transfers import TransferCheckOutcome
from schemas.registry import ENGINE_PRODUCER, TRAVELRULE_PRODUCER

SETTINGS = Settings(kafka_port=1, topic_prefix="unit.")
TRANSFERS = "unit.transfers.events"
CHECKS = "unit.transfers.checks"
REQUEST = TransferRequested(
    transfer_id="w1", account="A1", asset="USDC", amount=Decimal(500),
    destination_address="0xabc",
)  # fmt: skip
REJECT = TransferChecked(
    transfer_id="w1", account="A1", outcome=TransferCheckOutcome.REJECT, jurisdiction="EU"
)


class _Msg:
    """Just enough of a confluent-kafka Message: a record read from `topic` (the topic
    its event belongs on, unless given)."""

    def __init__(self, event: Envelope[Any], offset: int, topic: str | None = None) -> None:
        self.k, self.v, self.h = encode(event)
        self.off = offset
        self.tp = topic or (CHECKS if event.event_type == "TransferChecked" else TRANSFERS)

    def key(self) -> bytes | None:
        return self.k

    def value(self) -> bytes:
        return bytes(self.v)

    def headers(self) -> Any:
        return self.h

    def topic(self) -> str:
        return self.tp

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self.off

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_765_000_000_000 + self.off)  # (create time, ms)


def _msgs(*written: tuple[EventPayload, str]) -> list[_Msg]:
    return [_Msg(new_event(p, producer=who), n) for n, (p, who) in enumerate(written)]


def _dead(out: list[Any]) -> list[Any]:
    return [e for e in out if e.event_type == "DeadLetter"]


def _held(state: EngineState) -> Decimal:
    return state.account("A1").held.get("USDC", Decimal(0))


@pytest.mark.parametrize("forger", [ENGINE_PRODUCER, "strat1", "transfers"])
def test_the_worker_dead_letters_a_check_the_travel_rule_did_not_write(forger: str) -> None:
    w = EngineWorker(SETTINGS, wid="u")
    try:
        w.owned, w.n_own_partitions = [0], 1  # it dead-letters partition 0's records
        request, forged, genuine = _msgs(
            (REQUEST, "transfers"), (REJECT, forger), (REJECT, TRAVELRULE_PRODUCER)
        )
        out: list[Any] = []
        w._handle_reference(request, out)  # type: ignore[arg-type]
        assert _held(w.state) == 500 and not _dead(out)
        out.clear()
        w._handle_reference(forged, out)  # type: ignore[arg-type]
        assert _held(w.state) == 500  # still held: the forged REJECT freed nothing
        assert [e.event_type for e in out] == ["DeadLetter"]
        assert f"not written by the travel rule ({forger!r})" in out[0].payload.error
        out.clear()
        w._handle_reference(genuine, out)  # type: ignore[arg-type]
        assert _held(w.state) == 0 and not _dead(out)
    finally:
        w.close()


def test_a_rebuild_skips_a_check_the_travel_rule_did_not_write() -> None:
    state = EngineState()
    fold = folder(state, Intake(SETTINGS))
    request, forged, genuine = _msgs(
        (REQUEST, "transfers"), (REJECT, ENGINE_PRODUCER), (REJECT, TRAVELRULE_PRODUCER)
    )
    for msg in (request, forged):
        fold(msg)  # type: ignore[arg-type]
    assert _held(state) == 500
    fold(genuine)  # type: ignore[arg-type]
    assert _held(state) == 0


@pytest.mark.parametrize("who", [TRAVELRULE_PRODUCER, "transfers"])
def test_a_check_on_transfers_events_frees_no_hold(who: str) -> None:
    """The transfer service's principal may write transfers.events: a `REJECT` there,
    even one claiming the travel rule, is dead-lettered live and skipped in a rebuild (it
    does not belong there), and the withdrawal stays held; the same check read from
    transfers.checks frees it. Until session 27 the one claiming `travelrule` freed it."""
    request = _Msg(new_event(REQUEST, producer="transfers"), 0)
    forged = _Msg(new_event(REJECT, producer=who), 1, TRANSFERS)
    genuine = _Msg(new_event(REJECT, producer=TRAVELRULE_PRODUCER), 0)
    w = EngineWorker(SETTINGS, wid="u")
    try:
        w.owned, w.n_own_partitions = [0], 1
        out: list[Any] = []
        for msg in (request, forged):
            w._handle_reference(msg, out)  # type: ignore[arg-type]
        assert _held(w.state) == 500
        dead = _dead(out)
        assert len(dead) == 1
        assert f"TransferChecked does not belong on {TRANSFERS}" in dead[0].payload.error
    finally:
        w.close()
    state = EngineState()
    fold = folder(state, Intake(SETTINGS))
    for msg in (request, forged):
        fold(msg)  # type: ignore[arg-type]
    assert _held(state) == 500
    fold(genuine)  # type: ignore[arg-type]
    assert _held(state) == 0


def test_a_check_read_before_its_request_is_folded_when_the_request_comes() -> None:
    """Two topics, no order between them: a `REJECT` read before its request is kept
    and frees the hold the request raises, live (the worker's control path) and in a
    rebuild. Before session 27 it was dropped, and the withdrawal stayed held."""
    request = _Msg(new_event(REQUEST, producer="transfers"), 0)
    check = _Msg(new_event(REJECT, producer=TRAVELRULE_PRODUCER), 0)
    w = EngineWorker(SETTINGS, wid="u")
    try:
        w.owned, w.n_own_partitions = [0], 1
        out: list[Any] = []
        w._handle_reference(check, out)  # type: ignore[arg-type]
        assert not _dead(out) and w.state.early_count == 1
        w._handle_reference(request, out)  # type: ignore[arg-type]
        assert _held(w.state) == 0 and not _dead(out)
        assert w.state.early_checks == {} and w.state.early_count == 0
        assert w.state.account("A1").withdrawals["w1"].status == "CHECKED_REJECT"
    finally:
        w.close()
    state = EngineState()
    fold = folder(state, Intake(SETTINGS))
    for msg in (check, check, request):  # read twice: kept once
        fold(msg)  # type: ignore[arg-type]
    assert _held(state) == 0 and state.early_count == 0
