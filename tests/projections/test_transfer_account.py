"""A transfer belongs to the account that requested it: a check, release or settlement
naming another account is quarantined. A settlement debited the account it named (with
the request's asset and amount), so one naming the wrong account took the money off an
account that never asked, and left the requester's balance as it was."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

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
    st, bad = fold("balances", _flow(Tape(), "B2", step))
    assert len(bad) == 1 and "t1" in bad[0].error and "A1" in bad[0].error
    assert st.dirty["transfers"][("t1",)][4] == "REQUESTED"
    balances = {k: v[2] for k, v in st.dirty["balances"].items()}
    assert balances == {("A1", "BTC"): 2, ("B2", "BTC"): 2}


def test_the_requesters_settlement_debits_the_requester() -> None:
    st, bad = fold("balances", _flow(Tape(), "A1", "settle"))
    assert not bad
    balances = {k: v[2] for k, v in st.dirty["balances"].items()}
    assert balances == {("A1", "BTC"): 1, ("B2", "BTC"): 2}
