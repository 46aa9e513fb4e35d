"""Tightening admin commands that would stop nothing are refused on a fresh view: a kill
switch names a scope that exists, an AML flag an id not open (red-team of issue #3,
helper-123)."""

from __future__ import annotations

from decimal import Decimal

from engine.risk.rules import UNKNOWN_LAG
from schemas.events import AmlFlagCleared, AmlFlagRaised, KillSwitchEngaged, Side
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
    assert _engage(h, "A1") == ["KillSwitchEngaged", "RestingOrdersChecked"]  # its halt recorded
    assert decision(h.order(Side.BUY, Decimal("0.1"), Decimal("30000"))).outcome == "REJECTED"
    assert _engage(h, "*") == ["KillSwitchEngaged"]


def test_on_a_view_that_may_be_stale_a_switch_for_an_unseen_account_is_engaged() -> None:
    """The account may be opened on the part of the control topics not read yet: a
    tightening command is decided on such a view (docs/engine.md), so it is engaged."""
    h = Harness()
    h.ctx.consumer_lag = UNKNOWN_LAG
    assert _engage(h, "A7") == ["KillSwitchEngaged", "RestingOrdersChecked"]
    assert "A7" in h.state.kill_switches


def _raise(h: Harness, flag: str) -> list[str]:
    return types(
        h.admin(AmlFlagRaised(account="A1", flag_id=flag, reason="r", raised_by="officer"))
    )


def test_an_aml_flag_raised_again_under_an_open_id_is_refused() -> None:
    """Two officers raising flag `f` on A1 had both accepted, and the first one's clear
    cleared the account: the second concern was dropped unseen."""
    h = Harness()
    assert _raise(h, "f") == ["AmlFlagRaised"]
    out = h.admin(AmlFlagRaised(account="A1", flag_id="f", reason="other", raised_by="o2"))
    assert types(out) == ["AdminCommandRejected"]
    assert "already open" in out[0].payload.reason
    assert _raise(h, "g") == ["AmlFlagRaised"]
    cleared = h.admin(AmlFlagCleared(account="A1", flag_id="f", note="n", cleared_by="o"))
    assert types(cleared) == ["AmlFlagCleared"]
    assert h.state.account("A1").aml_flags == {"g"}
    assert _raise(h, "f") == ["AmlFlagRaised"]  # cleared: the id may be raised again


def test_on_a_view_that_may_be_stale_an_open_flag_id_is_raised_again() -> None:
    """Its clear may be on the part of the control topics not read yet."""
    h = Harness()
    assert _raise(h, "f") == ["AmlFlagRaised"]
    h.ctx.consumer_lag = UNKNOWN_LAG
    assert _raise(h, "f") == ["AmlFlagRaised"]
