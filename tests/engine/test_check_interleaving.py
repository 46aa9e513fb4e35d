"""The travel rule's checks (transfers.checks) and the requests they answer
(transfers.events) are two topics, read in no fixed order between them (session 27): the
engine's state must come out the same whatever the interleaving, since a worker reading
live and each rebuild interleave them differently. A check read before its request is
kept (`EngineState.early_checks`) and folded right after the request. Before, it was
dropped: a `REJECT` read first freed nothing, in one fold and not in another. Pure."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import state as engine_state
from engine.snapshot import canonical_state
from engine.state import EngineState
from schemas import Envelope, new_event
from schemas.registry import TRAVELRULE_PRODUCER
from tests.engine.pure import transfer_fact

OUTCOMES = ("PASS", "HOLD", "REJECT")


@st.composite
def tapes(draw: st.DrawFn) -> tuple[list[Envelope[Any]], list[Envelope[Any]]]:
    """(transfers.events' records, transfers.checks' records), each in its log order:
    withdrawals of one or two accounts (transfer ids shared between them), each requested,
    maybe checked (in the order requested, as the travel rule answers), maybe released,
    maybe settled."""
    transfers: list[Envelope[Any]] = []
    checks: list[Envelope[Any]] = []
    later: list[Envelope[Any]] = []
    n = draw(st.integers(1, 4))
    for i in range(n):
        account = draw(st.sampled_from(("A1", "A2")))
        tid = f"w{draw(st.integers(0, 2))}"
        if any(e.payload.account == account and e.payload.transfer_id == tid for e in transfers):
            continue  # one request per account and id (the travel rule answers the first)
        amount = str(100 * (i + 1))
        req = new_event(transfer_fact(tid, "request", account, amount=amount), producer="t")
        transfers.append(req)
        if draw(st.booleans()):
            outcome = draw(st.sampled_from(OUTCOMES))
            check = transfer_fact(tid, "check", account, outcome=outcome)
            checks.append(new_event(check, producer=TRAVELRULE_PRODUCER, causation=req))
        for step in ("release", "settle"):
            if draw(st.booleans()):
                later.append(new_event(transfer_fact(tid, step, account), producer="t"))
    # The transfer service's later steps come after every request here, in any order
    # among themselves but release before settle per withdrawal (as drawn).
    return transfers + later, checks


def _merge(a: list[Any], b: list[Any], take_b: list[bool]) -> list[Any]:
    out, i, j = [], 0, 0
    for want_b in take_b:
        if (want_b and j < len(b)) or i >= len(a):
            out.append(b[j])
            j += 1
        else:
            out.append(a[i])
            i += 1
    return out


def _fold(events: list[Envelope[Any]]) -> EngineState:
    state = EngineState()
    for e in events:
        state.apply(e)
    return state


@settings(max_examples=300, deadline=None)
@given(tape=tapes(), data=st.data())
def test_any_interleaving_of_requests_and_checks_folds_to_one_state(
    tape: tuple[list[Envelope[Any]], list[Envelope[Any]]], data: st.DataObject
) -> None:
    transfers, checks = tape
    n = len(transfers) + len(checks)
    take_b = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    drawn = _fold(_merge(transfers, checks, take_b))
    requests_first = _fold(transfers + checks)
    checks_first = _fold(checks + transfers)
    assert canonical_state(drawn) == canonical_state(requests_first)
    assert canonical_state(checks_first) == canonical_state(requests_first)
    assert drawn.early_checks == {} and drawn.early_count == 0


def test_a_reject_read_before_its_request_frees_the_hold() -> None:
    """The case itself, spelled out: before session 27 the state kept the hold."""
    req = new_event(transfer_fact("w1", "request", amount="500"), producer="t")
    check = transfer_fact("w1", "check", outcome="REJECT")
    state = _fold([new_event(check, producer=TRAVELRULE_PRODUCER, causation=req), req])
    assert state.account("A1").held.get("USDC", Decimal(0)) == 0
    assert state.account("A1").withdrawals["w1"].status == "CHECKED_REJECT"


def test_a_request_whose_check_comes_later_stays_held_until_it_does() -> None:
    req = new_event(transfer_fact("w1", "request", amount="500"), producer="t")
    state = _fold([req])
    assert state.account("A1").held["USDC"] == 500
    check = transfer_fact("w1", "check", outcome="REJECT")
    state.apply(new_event(check, producer=TRAVELRULE_PRODUCER, causation=req))
    assert state.account("A1").held.get("USDC", Decimal(0)) == 0


def test_past_the_bound_an_early_check_is_dropped_and_the_hold_stays(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`EARLY_CHECKS_KEPT` bounds what waits: one more is dropped, fail closed (its
    withdrawal stays held), never folded against another request."""
    monkeypatch.setattr(engine_state, "EARLY_CHECKS_KEPT", 1)
    reqs = [
        new_event(transfer_fact(t, "request", amount="500"), producer="t") for t in ("w1", "w2")
    ]
    rejects = [
        new_event(
            transfer_fact(t, "check", outcome="REJECT"), producer=TRAVELRULE_PRODUCER, causation=r
        )
        for t, r in zip(("w1", "w2"), reqs, strict=True)
    ]
    state = _fold([*rejects, *reqs])
    acc = state.account("A1")
    assert acc.withdrawals["w1"].status == "CHECKED_REJECT"
    assert acc.withdrawals["w2"].status == "REQUESTED"
    assert acc.held["USDC"] == 500 and state.early_checks == {} and state.early_count == 0
