"""A signed admin command is executed at most once, whatever envelope fields it is replayed
with (red-team of issue #3, helper-123)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from engine import auth
from engine.processor import process
from engine.snapshot import (
    decode_slice,
    encode_slice,
    merge_slices,
    release_partitions,
    take_slice,
)
from schemas import Envelope, new_event
from schemas.envelope import EventPayload
from schemas.events import (
    AccountOpened,
    BeneficialOwner,
    DepositReceived,
    KillSwitchEngaged,
    KillSwitchReleased,
    OwnerKind,
    ProducerRegistered,
)
from schemas.ids import uuid7
from tests.engine.pure import Harness


def _signed(h: Harness, payload: EventPayload, key: Any) -> Envelope[Any]:
    eid = uuid7()
    return new_event(
        auth.sign_admin(eid, payload, key), producer="admin", event_id=eid, occurred_at=h.tick()
    )


def _types(h: Harness, event: Envelope[Any]) -> list[str]:
    return [e.event_type for e in process(h.state, event, h.ctx)]


def _keyed() -> tuple[Harness, Any]:
    h = Harness()
    key, pub = auth.new_keypair()
    reg = ProducerRegistered(producer_id="admin", public_key=pub, accounts=(), registered_by="x")
    assert _types(h, _signed(h, reg, key)) == ["ProducerRegistered"]
    return h, key


def test_a_release_replayed_under_another_time_is_refused() -> None:
    """The signature covers the command's event id and payload, not its `occurred_at`; the
    replay check derived the accepted fact's id from both, so the same signed release with
    its time moved by a second was a new command and released a switch engaged since."""
    h, key = _keyed()
    engage = _signed(h, KillSwitchEngaged(scope="A1", engaged_by="admin", reason="t"), key)
    release = _signed(h, KillSwitchReleased(scope="A1", released_by="admin", reason="t"), key)
    assert _types(h, engage) == ["KillSwitchEngaged", "RestingOrdersChecked"]
    assert _types(h, release) == ["KillSwitchReleased"]
    again = _signed(h, KillSwitchEngaged(scope="A1", engaged_by="admin", reason="again"), key)
    assert _types(h, again) == ["KillSwitchEngaged", "RestingOrdersChecked"]
    moved = release.model_copy(update={"occurred_at": h.tick(5)})
    out = process(h.state, moved, h.ctx)
    assert [e.event_type for e in out] == ["AdminCommandRejected"]
    assert "already executed" in out[0].payload.reason
    assert "A1" in h.state.kill_switches


def test_a_release_replayed_under_another_time_is_refused_after_a_rebuild() -> None:
    """What refuses the replay is folded from the log (the accepted fact names its command
    as its cause), so a restarted worker refuses it too."""
    h, key = _keyed()
    engage = _signed(h, KillSwitchEngaged(scope="A1", engaged_by="admin", reason="t"), key)
    release = _signed(h, KillSwitchReleased(scope="A1", released_by="admin", reason="t"), key)
    facts = []
    for cmd in (engage, release):
        facts += process(h.state, cmd, h.ctx)
    facts += process(
        h.state,
        _signed(h, KillSwitchEngaged(scope="A1", engaged_by="admin", reason="again"), key),
        h.ctx,
    )
    rebuilt = Harness()
    for fact in h.inputs + facts:
        rebuilt.state.apply(fact)
    assert "A1" in rebuilt.state.kill_switches
    moved = release.model_copy(update={"occurred_at": release.occurred_at + timedelta(hours=1)})
    out = process(rebuilt.state, moved, rebuilt.ctx)
    assert [e.event_type for e in out] == ["AdminCommandRejected"]
    assert "A1" in rebuilt.state.kill_switches


def test_a_rejected_command_replayed_once_the_state_allows_it_is_refused() -> None:
    """A signed command the engine rejected (a release with no switch engaged, a deposit
    to an account not open yet) left no accepted fact, so its envelope replayed later, once
    the state allowed it, was executed: the release let a switch engaged since go, the
    deposit credited money the admin's command had never put in."""
    h, key = _keyed()
    release = _signed(h, KillSwitchReleased(scope="A1", released_by="admin", reason="t"), key)
    assert _types(h, release) == ["AdminCommandRejected"]  # nothing engaged
    deposit = _signed(
        h,
        DepositReceived(deposit_id="late", account="A9", asset="USDC", amount=Decimal("5000")),
        key,
    )
    assert _types(h, deposit) == ["AdminCommandRejected"]  # A9 is not open
    engage = _signed(h, KillSwitchEngaged(scope="A1", engaged_by="admin", reason="t"), key)
    assert _types(h, engage) == ["KillSwitchEngaged", "RestingOrdersChecked"]
    opened = AccountOpened(
        account="A9",
        beneficial_owner=BeneficialOwner(
            owner_id="o", kind=OwnerKind.NATURAL, name="O", country="DE"
        ),
        base_currency="USDC",
    )
    assert _types(h, _signed(h, opened, key)) == ["AccountOpened"]
    for replayed in (release, deposit.model_copy(update={"occurred_at": h.tick()})):
        out = process(h.state, replayed, h.ctx)
        assert [e.event_type for e in out] == ["AdminCommandRejected"], replayed.event_type
        assert "already decided" in out[0].payload.reason
    assert "A1" in h.state.kill_switches
    assert "late" not in h.state.account("A9").deposits


def test_a_rejected_command_is_remembered_by_a_rebuild_and_a_snapshot_slice() -> None:
    """What refuses it is folded from the rejection on the log (`risk.decisions`, on the
    command key's partition), carried by that partition's snapshot slice and dropped with
    the partition when it is released."""
    h, key = _keyed()
    release = _signed(h, KillSwitchReleased(scope="A1", released_by="admin", reason="t"), key)
    rejected = process(h.state, release, h.ctx)
    engage = _signed(h, KillSwitchEngaged(scope="A1", engaged_by="admin", reason="t"), key)
    facts = process(h.state, engage, h.ctx)
    rebuilt = Harness()
    for event in h.inputs + facts + rejected:
        rebuilt.state.apply(event)
    assert [e.event_type for e in process(rebuilt.state, release, rebuilt.ctx)] == [
        "AdminCommandRejected"
    ]
    assert "A1" in rebuilt.state.kill_switches

    sliced = Harness()
    for event in h.inputs + facts:
        sliced.state.apply(event)
    part = h.state.partition_of("A1")
    blob, digest = encode_slice(take_slice(h.state, part, {}))
    merge_slices(sliced.state, [decode_slice(blob, digest)])
    assert release.event_id in sliced.state.rejected_commands
    assert [e.event_type for e in process(sliced.state, release, sliced.ctx)] == [
        "AdminCommandRejected"
    ]
    release_partitions(sliced.state, {part})
    assert release.event_id not in sliced.state.rejected_commands
