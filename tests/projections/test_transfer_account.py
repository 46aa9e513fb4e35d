"""A transfer belongs to the account that requested it: a check, release or settlement
naming another account is quarantined. A settlement debited the account it named (with
the request's asset and amount), so one naming the wrong account took the money off an
account that never asked, and left the requester's balance as it was.

Transfers are keyed by account and id (fold version 3), as the engine keeps withdrawals:
an id two accounts request is each one's. Keyed by id alone, the second request (in
whichever order a reader met the two accounts' partitions) and its settlement were
quarantined, so that account's withdrawal was never debited here while the engine
debited it, and live and rebuilt rows could differ."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from engine.state import EngineState
from projections.framework import Located
from schemas.events import (
    DepositReceived,
    TransferChecked,
    TransferReleased,
    TransferRequested,
    TransferSettled,
)
from schemas.events.transfers import TransferCheckOutcome
from tests.projections.folding import Tape, fold

AT = datetime(2026, 1, 5, tzinfo=UTC)


def _flow(tape: Tape, last_account: str, last: str) -> list[Located]:
    items = [
        tape.ev(DepositReceived(deposit_id="d1", account="A1", asset="BTC", amount=Decimal(2))),
        tape.ev(DepositReceived(deposit_id="d2", account="B2", asset="BTC", amount=Decimal(2))),
        tape.ev(
            TransferRequested(
                transfer_id="t1", account="A1", asset="BTC", amount=Decimal(1),
                destination_address="bc1q",
            )
        ),
    ]  # fmt: skip
    steps = {
        "check": TransferChecked(
            transfer_id="t1", account=last_account, outcome=TransferCheckOutcome.PASS,
            jurisdiction="EU",
        ),
        "release": TransferReleased(transfer_id="t1", account=last_account),
        "settle": TransferSettled(
            transfer_id="t1", account=last_account, tx_hash="0x1", settled_at=AT
        ),
    }  # fmt: skip
    items.append(tape.ev(steps[last]))
    return items


@pytest.mark.parametrize("step", ["check", "release", "settle"])
def test_a_transfer_step_for_another_account_is_refused(step: str) -> None:
    """A release or settlement is quarantined; a check (on transfers.checks, read in no
    fixed order with the requests) waits for a request of B2's, and moves nothing."""
    st, bad = fold("balances", _flow(Tape(), "B2", step))
    if step == "check":
        assert not bad and list(st.dirty["transfer_checks"]) == [("B2", "t1")]
    else:
        assert len(bad) == 1 and "unknown transfer t1 of B2" in bad[0].error
    assert st.dirty["transfers"][("A1", "t1")][4] == "REQUESTED"
    balances = {k: v[2] for k, v in st.dirty["balances"].items()}
    assert balances == {("A1", "BTC"): 2, ("B2", "BTC"): 2}


def test_the_requesters_settlement_debits_the_requester() -> None:
    st, bad = fold("balances", _flow(Tape(), "A1", "settle"))
    assert not bad
    balances = {k: v[2] for k, v in st.dirty["balances"].items()}
    assert balances == {("A1", "BTC"): 1, ("B2", "BTC"): 2}


def _reused(tape: Tape) -> tuple[list[Located], list[Located]]:
    """Each account's own flow (one partition each) for the id both request."""
    flows: tuple[list[Located], list[Located]] = ([], [])
    for flow, account, amount in ((flows[0], "A1", "1"), (flows[1], "B2", "0.5")):
        flow.append(
            tape.ev(DepositReceived(deposit_id=f"d{account}", account=account, asset="BTC",
                                    amount=Decimal(2)))
        )  # fmt: skip
        flow.append(
            tape.ev(
                TransferRequested(
                    transfer_id="t1", account=account, asset="BTC", amount=Decimal(amount),
                    destination_address="bc1q",
                )
            )
        )  # fmt: skip
        flow.append(
            tape.ev(
                TransferChecked(
                    transfer_id="t1", account=account, outcome=TransferCheckOutcome.PASS,
                    jurisdiction="EU",
                )
            )
        )  # fmt: skip
        flow.append(
            tape.ev(TransferSettled(transfer_id="t1", account=account, tx_hash="0x1",
                                    settled_at=AT))
        )  # fmt: skip
    return flows


def _interleavings(a: list[Located], b: list[Located]) -> list[list[Located]]:
    """Some orders a reader may meet two partitions in (each partition's order kept)."""
    return [a + b, b + a, [x for pair in zip(a, b, strict=True) for x in pair]]


def test_an_id_two_accounts_request_is_each_ones_in_any_interleaving() -> None:
    a1, b2 = _reused(Tape())
    for items in _interleavings(a1, b2):
        st, bad = fold("balances", items)
        assert not bad, [q.error for q in bad]
        assert {k: v[2] for k, v in st.dirty["balances"].items()} == {
            ("A1", "BTC"): Decimal(1), ("B2", "BTC"): Decimal("1.5")
        }  # fmt: skip
        assert {k: v[4] for k, v in st.dirty["transfers"].items()} == {
            ("A1", "t1"): "SETTLED", ("B2", "t1"): "SETTLED"
        }  # fmt: skip


def test_an_id_two_accounts_request_is_debited_as_the_engine_debits() -> None:
    a1, b2 = _reused(Tape())
    state = EngineState()
    for item in a1 + b2:
        state.apply(item.event)
    st, _bad = fold("balances", b2 + a1)
    for account in ("A1", "B2"):
        assert st.dirty["balances"][(account, "BTC")][2] == state.account(account).balances["BTC"]
