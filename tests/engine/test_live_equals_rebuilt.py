"""The live state after each input equals the state folded from the log.

The engine never re-runs a decision: after a restart it folds its own outputs. So whatever
`process` changes in the state while deciding must be what folding its outputs changes,
including for inputs that are refused (forged intents) or arrive out of time order (an
intent stamped before a brake release, decided after it).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from engine import auth
from engine.processor import process
from engine.snapshot import canonical_state
from schemas import new_event
from schemas.events import CancelIntent, OrderIntent, OrderType, RiskLimitsChanged, Side
from tests.engine.pure import INSTRUMENT
from tests.engine.test_snapshot import ACC, ACTION, Log, _harness, full_replay, limits

D = Decimal

EXTRA = st.one_of(
    # An unsigned (or wrongly signed, or unknown producer's) intent naming a client order id
    # that a signed intent uses before or after it.
    st.tuples(st.just("forged"), ACC, st.integers(0, 40), st.booleans()),
    # A signed intent reusing a client order id that may be decided already, for other
    # content (a cancel of its own id, or another quantity).
    st.tuples(st.just("reuse"), ACC, st.integers(0, 40), st.booleans()),
    # A signed intent stamped `seconds` before the harness's clock (a backlog).
    st.tuples(st.just("backdated"), ACC, st.sampled_from([0.5, 5.0, 60.0])),
    # A signed intent stamped `ms` from the broker's append time (now): within the skew
    # tolerance or not; rate windows count in the append time the decision records.
    st.tuples(st.just("arrived"), ACC, st.sampled_from([-6000, -900, 0, 700, 3000])),
    # Account-wide credit (valued at the marks): a triggered stop/take child's cap
    # (`PaperVenue._child_quantity`) then depends on the marks when the print is read.
    st.tuples(st.just("credit"), st.sampled_from(["0", "500", "5000"])),
)


def _intent(account: str, coid: str, signature: str | None = None) -> OrderIntent:
    return OrderIntent(
        producer_id="p1",
        strategy_id="s",
        account=account,
        client_order_id=coid,
        instrument=INSTRUMENT,
        side=Side.BUY,
        order_type=OrderType.LIMIT,
        quantity=D("0.1"),
        limit_price=D("29990"),
        signature=signature,
    )


def play(log: Log, a: tuple[Any, ...]) -> None:
    h = log.h
    if a[0] == "forged":
        _, account, n, unknown = a
        forged = _intent(account, f"c{n}", "00" * 64)
        if unknown:
            forged = forged.model_copy(update={"producer_id": "nobody"})
        log.add(h.feed(forged, producer="attacker"))
    elif a[0] == "reuse":
        _, account, n, cancel = a
        other: OrderIntent | CancelIntent = (
            CancelIntent(
                producer_id="p1",
                strategy_id="s",
                account=account,
                client_order_id=f"c{n}",
                target_client_order_id=f"c{n}",
            )
            if cancel
            else _intent(account, f"c{n}").model_copy(update={"quantity": D("0.7")})
        )
        log.add(h.feed(auth.sign(other, h.key), producer="p1"))
    elif a[0] == "arrived":
        _, account, ms = a
        h.n += 1
        intent = auth.sign(_intent(account, f"c{h.n}"), h.key)
        event = new_event(intent, producer="p1", occurred_at=h.now + timedelta(milliseconds=ms))
        log.add(process(h.state, event, h.ctx, h.now))
        h.tick()
    elif a[0] == "credit":
        log.version += 1
        credited = limits(1).model_copy(update={"credit_limit": D(a[1])})
        log.add(
            h.admin(
                RiskLimitsChanged(
                    scope="*", config_version=log.version, limits=credited, changed_by="admin"
                )
            )
        )
    elif a[0] == "backdated":
        _, account, seconds = a
        h.n += 1
        intent = auth.sign(_intent(account, f"c{h.n}"), h.key)
        event = new_event(intent, producer="p1", occurred_at=h.now - timedelta(seconds=seconds))
        h.tick()
        log.add(process(h.state, event, h.ctx))
    else:
        log.play(a)


STEPS = ACTION.filter(lambda a: a[0] != "snap")
"""Limit changes included: they shorten and lengthen the rate window (1-3 s) between
decisions, which a full replay folds before every decision (reference topics first)."""

_RELEASE = ("release", "A1")
_BUY = ("limit", "A1", Side.BUY, "0.1", 0, False)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(STEPS, EXTRA), min_size=1, max_size=40))
# A forged intent takes a client order id first; the producer's signed intent follows.
@example([("forged", "A1", 1, False), ("limit", "A1", Side.BUY, "0.1", 0, False)])
# An intent stamped before a release, decided after it, must not raise the peak.
@example([_BUY, ("wait", 2.0), _RELEASE, ("backdated", "A1", 5.0)])
# Intents stamped apart but arriving together: one rate window, live and rebuilt.
@example([("arrived", "A1", 700), ("arrived", "A1", -900), ("arrived", "A1", 0), _BUY])
# An intent stamped ahead of a release, decided before it: its peak counts after the release.
@example([("arrived", "A1", 700), _RELEASE])
# A longer rate window after the live state pruned with the shorter one.
@example([_BUY, ("wait", 2.0), _BUY, ("limits", 3)])
# A shorter rate window after the live state kept entries for the longer one.
@example([("limits", 3), _BUY, ("wait", 2.0), _BUY, ("limits", 1)])
# Lengthened, then decided on: the count must not depend on what was pruned before.
@example([_BUY, _BUY, ("wait", 1.5), _BUY, _BUY, ("limits", 3), _BUY, _BUY])
# Children triggered by prints, capped by credit valued at marks that move between prints:
# A1 buys with stop/take attached, offers the BTC on a resting sell (the stop's BTC is then
# free only on credit), the price falls through the stop, and the quotes move on.
@example(
    [
        ("credit", "5000"),
        ("limit", "A1", Side.BUY, "1", 0, True),
        ("trade", -1, "1"),
        ("limit", "A1", Side.SELL, "1", 20, False),
        ("quote", -20),
        ("trade", -30, "5"),
        ("quote", 20),
        ("trade", 30, "5"),
        # The stop sold the BTC the credit lends: 0.1683501683501683501683501684 before
        # that quotient was rounded down to 1e-8, and a deposit read after the fills then
        # rounded the BTC balance live otherwise than in the fold (deposits first).
        ("deposit", "A1", "BTC"),
    ]
)
def test_live_state_is_the_folded_state(actions: list[tuple[Any, ...]]) -> None:
    h = _harness()
    log = Log(h)
    for a in actions:
        play(log, a)
        assert canonical_state(h.state) == canonical_state(full_replay(log)), a
