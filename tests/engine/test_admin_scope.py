"""A kill switch names a scope that exists (red-team of issue #3, helper-123)."""

from __future__ import annotations

from decimal import Decimal

from engine.risk.rules import UNKNOWN_LAG
from schemas.events import KillSwitchEngaged, Side
from tests.engine.pure import Harness, decision, types


def _engage(h: Harness, scope: str) -> list[str]:
    return types(h.admin(KillSwitchEngaged(scope=scope, engaged_by="admin", reason="t")))


def test_a_kill_switch_for_no_open_account_is_refused() -> None:
    """Account ids are case-sensitive: a switch for `a1` was accepted (answered with the
    engaged fact) and stopped nothing, while `A1`, the account meant, went on trading."""
    h = Harness()
    h.quote(Decimal("29990"), Decimal("30010"))
    h.trade(Decimal("30000"))
    out = h.admin(KillSwitchEngaged(scope="a1", engaged_by="admin", reason="typo"))
    assert types(out) == ["AdminCommandRejected"]
    assert "neither '*' nor an open account" in out[0].payload.reason
    assert "a1" not in h.state.kill_switches
    assert _engage(h, "A1") == ["KillSwitchEngaged"]
    assert decision(h.order(Side.BUY, Decimal("0.1"), Decimal("30000"))).outcome == "REJECTED"
    assert _engage(h, "*") == ["KillSwitchEngaged"]


def test_on_a_view_that_may_be_stale_a_switch_for_an_unseen_account_is_engaged() -> None:
    """The account may be opened on the part of the control topics not read yet: a
    tightening command is decided on such a view (docs/engine.md), so it is engaged."""
    h = Harness()
    h.ctx.consumer_lag = UNKNOWN_LAG
    assert _engage(h, "A7") == ["KillSwitchEngaged"]
    assert "A7" in h.state.kill_switches
