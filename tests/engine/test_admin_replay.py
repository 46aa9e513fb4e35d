"""A signed admin command is executed at most once, whatever envelope fields it is replayed
with (red-team of issue #3, helper-123)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from engine import auth
from engine.processor import process
from schemas import Envelope, new_event
from schemas.envelope import EventPayload
from schemas.events import KillSwitchEngaged, KillSwitchReleased, ProducerRegistered
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
    assert _types(h, engage) == ["KillSwitchEngaged"]
    assert _types(h, release) == ["KillSwitchReleased"]
    again = _signed(h, KillSwitchEngaged(scope="A1", engaged_by="admin", reason="again"), key)
    assert _types(h, again) == ["KillSwitchEngaged"]
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
