"""A deposit is credited once. The engine refuses a deposit command whose id the account
already has (`AdminCommandRejected`, "deposit ID already recorded": `processor._admin_check`),
live, later in the same batch (its accepted fact is folded at once) and after a restart
(the facts are folded back from the log), so the log holds at most one `DepositReceived`
per account and deposit id, and the balances book, which folds only the engine's facts
(`schemas.admission`), needn't de-duplicate them (docs/projections.md, balances).
Broker-free: the worker's pure processor (`tests.engine.pure`) and the book's pure fold."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.state import EngineState
from projections.framework import Located
from projections.store import RawRecord, decode_one
from schemas import Envelope, encode
from schemas.events import DepositReceived
from tests.engine.pure import Harness, types
from tests.projections.folding import fold

D = Decimal


def _deposit(h: Harness, deposit_id: str, amount: str, account: str = "A1") -> list[Any]:
    """A deposit command in an envelope of its own (a new command, not a replayed one)."""
    payload = DepositReceived(
        deposit_id=deposit_id, account=account, asset="USDC", amount=D(amount)
    )
    return h.admin(payload)


def _restarted(h: Harness) -> None:
    """The engine after a restart: its state folded from the log (the accepted facts)."""
    state = EngineState()
    for event in h.inputs:
        state.apply(event)
    h.state = state


def test_a_second_deposit_of_an_id_is_rejected_live_and_after_a_restart() -> None:
    h = Harness(accounts=("A1", "A2"))
    start = h.state.account("A1").balances["USDC"]
    first = _deposit(h, "dep-7", "100")
    assert types(first)[0] == "DepositReceived"
    refused = [
        _deposit(h, "dep-7", "100"),  # the same deposit sent again
        _deposit(h, "dep-7", "250"),  # the id with another amount
    ]
    _restarted(h)
    refused.append(_deposit(h, "dep-7", "100"))
    for out in refused:
        assert types(out) == ["AdminCommandRejected"], types(out)
        assert out[0].payload.reason == "deposit dep-7 already recorded"
        assert out[0].payload.command_type == "DepositReceived"
    assert h.state.account("A1").balances["USDC"] == start + 100
    # The engine keeps deposit ids per account (an account's commands are decided by the
    # worker owning its partition): another account's deposit of that id is its own.
    assert types(_deposit(h, "dep-7", "5", account="A2"))[0] == "DepositReceived"


def _book_balances(events: list[Envelope[Any]]) -> dict[Any, Decimal]:
    items = []
    for n, e in enumerate(events):
        _k, v, hd = encode(e)
        item = decode_one(RawRecord(str(e.topic), 0, n, v, hd))
        assert isinstance(item, Located), item
        items.append(item)
    book, bad = fold("balances", items)
    assert not bad
    return {k: D(row[2]) for k, row in book.dirty.get("balances", {}).items()}


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["A1", "A2"]),
            st.sampled_from(["d1", "d2", "d3"]),
            st.sampled_from(["1", "2.5", "40"]),
            st.booleans(),  # restart the engine first
        ),
        max_size=25,
    )
)
def test_the_log_holds_one_deposit_per_account_and_id(
    commands: list[tuple[str, str, str, bool]],
) -> None:
    """Any deposit commands, ids reused within and across accounts, restarts between:
    the engine writes one `DepositReceived` per (account, deposit id), the first, and the
    balances book's fold of what it wrote is the engine's balance."""
    h = Harness(accounts=("A1", "A2"))
    credited: dict[tuple[str, str], str] = {}
    for account, deposit_id, amount, restart in commands:
        if restart:
            _restarted(h)
        out = _deposit(h, deposit_id, amount, account)
        if (account, deposit_id) in credited:
            assert types(out) == ["AdminCommandRejected"]
            assert out[0].payload.reason == f"deposit {deposit_id} already recorded"
        else:
            assert types(out)[0] == "DepositReceived"
            credited[(account, deposit_id)] = amount
    deposits = [e for e in h.inputs if e.event_type == "DepositReceived"]
    keys = [(e.payload.account, e.payload.deposit_id) for e in deposits]
    assert len(keys) == len(set(keys))
    assert credited == {
        (e.payload.account, e.payload.deposit_id): str(e.payload.amount)
        for e in deposits
        if e.payload.deposit_id in ("d1", "d2", "d3")
    }
    book = _book_balances([e for e in h.inputs if e.event_type == "DepositReceived"])
    for account in ("A1", "A2"):
        assert book[(account, "USDC")] == h.state.account(account).balances["USDC"]
