"""Signed admin commands: bootstrap unsigned, then only the issuing admin's key counts."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from engine import auth
from engine.processor import process
from schemas import Envelope, new_event
from schemas.envelope import EventPayload
from schemas.events import (
    DepositReceived,
    KillSwitchEngaged,
    KillSwitchReleased,
    ProducerRegistered,
)
from schemas.ids import uuid7
from tests.engine.pure import Harness

D = Decimal


def _signed(h: Harness, payload: EventPayload, key: Any, producer: str = "admin") -> Envelope[Any]:
    eid = uuid7()
    return new_event(
        auth.sign_admin(eid, payload, key), producer=producer, event_id=eid, occurred_at=h.tick()
    )


def _types(h: Harness, event: Envelope[Any]) -> list[str]:
    return [e.event_type for e in process(h.state, event, h.ctx)]


def _deposit(n: int) -> DepositReceived:
    return DepositReceived(deposit_id=f"x{n}", account="A1", asset="USDC", amount=D("1"))


def test_unsigned_admin_commands_bootstrap_until_an_admin_key_is_registered() -> None:
    h = Harness()
    assert h.admin(_deposit(1))[0].event_type == "DepositReceived"  # no admin key yet
    key, pub = auth.new_keypair()
    reg = ProducerRegistered(
        producer_id="admin", public_key=pub, accounts=(), registered_by="admin"
    )
    assert _types(h, _signed(h, reg, key)) == ["ProducerRegistered"]
    # From now on: unsigned refused, signed by the admin's key accepted.
    out = h.admin(_deposit(2))
    assert out[0].event_type == "AdminCommandRejected" and "signature" in out[0].payload.reason
    # (its units under DRAWDOWN_BRAKE v6: UnitsChanged)
    assert _types(h, _signed(h, _deposit(3), key))[0] == "DepositReceived"
    other, _ = auth.new_keypair()
    assert _types(h, _signed(h, _deposit(4), other)) == ["AdminCommandRejected"]


def test_signature_is_bound_to_the_envelope_and_replays_are_refused() -> None:
    h = Harness()
    key, pub = auth.new_keypair()
    reg = ProducerRegistered(
        producer_id="admin", public_key=pub, accounts=(), registered_by="admin"
    )
    process(h.state, _signed(h, reg, key), h.ctx)
    engage = _signed(h, KillSwitchEngaged(scope="A1", engaged_by="admin", reason="t"), key)
    release = _signed(h, KillSwitchReleased(scope="A1", released_by="admin", reason="t"), key)
    assert _types(h, engage) == ["KillSwitchEngaged", "RestingOrdersChecked"]
    assert _types(h, release) == ["KillSwitchReleased"]
    assert _types(
        h, _signed(h, KillSwitchEngaged(scope="A1", engaged_by="admin", reason="again"), key)
    ) == ["KillSwitchEngaged", "RestingOrdersChecked"]
    # The same signed release, replayed as is: refused, the switch stays engaged.
    out = process(h.state, release, h.ctx)
    assert [e.event_type for e in out] == ["AdminCommandRejected"]
    assert "already executed" in out[0].payload.reason and "A1" in h.state.kill_switches
    # Its signature lifted into a fresh envelope: does not verify.
    lifted = new_event(release.payload, producer="admin", occurred_at=h.tick())
    assert _types(h, lifted) == ["AdminCommandRejected"]


def test_an_admin_without_a_key_is_refused_once_any_admin_has_one() -> None:
    h = Harness()
    h.ctx.admins = frozenset({"admin", "ops"})
    key, pub = auth.new_keypair()
    reg = ProducerRegistered(
        producer_id="admin", public_key=pub, accounts=(), registered_by="admin"
    )
    process(h.state, _signed(h, reg, key), h.ctx)
    # "ops" cannot re-key "admin" (or do anything else) unsigned.
    _, pub2 = auth.new_keypair()
    rekey = ProducerRegistered(
        producer_id="admin", public_key=pub2, accounts=(), registered_by="ops"
    )
    out = h.feed(rekey, producer="ops")
    assert (
        out[0].event_type == "AdminCommandRejected" and h.state.producers["admin"].public_key == pub
    )


def test_publisher_signs_admin_commands_with_the_admin_key_file(tmp_path: Any) -> None:
    from deploy.settings import Settings
    from engine.client import IntentPublisher

    settings = Settings(data_dir=tmp_path, kafka_port=1)  # nothing is sent: no flush
    key, pub = auth.new_keypair()
    auth.write_private_key(auth.key_path(settings.resolved_data_dir, "admin"), key)
    publisher = IntentPublisher(settings, "admin", watch=False)
    try:
        event = publisher.publish(_deposit(1), admin=True)
    finally:
        publisher._producer.purge()  # no broker here: drop the queued record, do not wait
        publisher.close()
    assert auth.verify_admin(event.event_id, event.payload, pub)
