"""What an account keeps of its deposits and settled withdrawals (issue #3: memory flat
over a long run). Until a `UnitsChanged` names a flow, the owner needs its asset, amount
and fact (`EngineState.unitization`, `pending_cause`); after, nothing of it: before this
test each account held every flow's whole event forever, in the live worker, on every
rebuild and after a slice merge. A second deposit of an id stays refused (that is the
account's `deposits`, not its flows: `processor._admin_check`). Broker-free."""

from __future__ import annotations

import gc
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from engine.snapshot import canonical_state, merge_slices, release_partitions, take_slice
from engine.state import AccountState, EngineState
from schemas import Envelope
from schemas.events import DepositReceived
from schemas.topics import ENGINE_OUTPUT_TOPICS
from tests.engine.pure import Harness, types
from tests.engine.test_withdrawals import _harness, _withdraw

D = Decimal
N = 30


def _reachable(acc: AccountState, counts: Callable[[object], bool | None]) -> int:
    """How many objects reachable from the account's state `counts` (True: counted, and
    not walked into; False: not counted, not walked into; None: walked into)."""
    seen: set[int] = set()
    found = 0
    todo: list[Any] = [acc]
    while todo:
        o = todo.pop()
        if id(o) in seen or isinstance(o, type):
            continue
        seen.add(id(o))
        verdict = counts(o)
        if verdict is None:
            todo.extend(gc.get_referents(o))
        else:
            found += verdict
    return found


def _events_held(acc: AccountState) -> int:
    """The envelopes reachable from the account's state."""
    return _reachable(acc, lambda o: True if isinstance(o, Envelope) else None)


def _flow_ids_held(acc: AccountState) -> int:
    """The flow ids (`deposit:<id>`, `withdrawal:<id>`) reachable from the account's
    state: its deposit ids and withdrawals are what the reference fold keeps anyway."""
    return _reachable(
        acc,
        lambda o: o.startswith(("deposit:", "withdrawal:")) if isinstance(o, str) else None,
    )


def _flows(h: Harness) -> None:
    for n in range(N):
        out = h.admin(
            DepositReceived(deposit_id=f"m{n}", account="A1", asset="USDC", amount=D(100))
        )
        assert types(out) == ["DepositReceived", "UnitsChanged"], types(out)
        if n % 3 == 0:
            _withdraw(h, f"mw{n}", "50")


def _folded(events: list[Any], *, own: bool = True) -> EngineState:
    """`own=False`: as a worker that never read the engine's own topics (`UnitsChanged`,
    `RestingOrdersChecked`, ...: whatever the catalogue puts on them), only the rest."""
    state = EngineState()
    for event in events:
        if own or type(event.payload).TOPIC not in ENGINE_OUTPUT_TOPICS:
            state.apply(event)
    return state


def _refused(state: EngineState, h: Harness) -> bool:
    h.state = state
    out = h.admin(DepositReceived(deposit_id="m0", account="A1", asset="USDC", amount=D(100)))
    return types(out) == ["AdminCommandRejected"]


def test_flows_turned_into_units_leave_no_event_behind() -> None:
    h = _harness()
    _flows(h)
    live = h.state
    acc = live.account("A1")
    assert not acc.pending and acc.units > 0
    assert _events_held(acc) == 0  # held 1 + N + N/3 events (the first deposit's too)
    assert _flow_ids_held(acc) == 0  # held each named flow's id (`unitized`)
    assert acc.unitized == acc.folded_flows()  # derived: every flow named
    rebuilt = _folded(h.inputs)
    assert canonical_state(rebuilt) == canonical_state(live)
    assert _events_held(rebuilt.account("A1")) == 0
    assert _flow_ids_held(rebuilt.account("A1")) == 0
    part = live.partition_of("A1")
    merged = _folded(h.inputs, own=False)  # a worker that never read the own topics
    never = canonical_state(merged)
    assert merged.account("A1").pending  # every flow, none named yet
    merge_slices(merged, [take_slice(live, part, {})])
    assert canonical_state(merged) == canonical_state(live)
    assert _events_held(merged.account("A1")) == 0
    assert _flow_ids_held(merged.account("A1")) == 0
    release_partitions(rebuilt, {part})  # the inverse: as a worker that never read them
    assert canonical_state(rebuilt) == never
    merge_slices(rebuilt, [take_slice(live, part, {})])  # and taken back
    assert canonical_state(rebuilt) == canonical_state(live)
    assert _events_held(rebuilt.account("A1")) == 0
    for state in (live, rebuilt, merged):
        assert _refused(state, h)  # a second deposit of one id, after all of these


def test_a_pending_flow_keeps_its_fact() -> None:
    """The flow's fact is what `catch_up` turns it into units as caused by."""
    h = _harness()
    _flows(h)
    merged = _folded(h.inputs, own=False)
    acc = merged.account("A1")
    cause = merged.pending_cause("A1")
    assert cause is not None and cause.payload.deposit_id == "d-A1"  # the least flow id
    assert _events_held(acc) == len(acc.pending)


def test_a_flow_named_before_it_is_folded_is_not_pending() -> None:
    """A worker may read a `UnitsChanged` before the flow it names (the reference topics
    behind its partition): the name is kept until the flow comes, then neither is."""
    h = _harness()
    _flows(h)
    units = [e for e in h.inputs if e.event_type == "UnitsChanged"]
    facts = [e for e in h.inputs if e.event_type != "UnitsChanged"]
    state = EngineState()
    for event in units[:1] + facts + units[1:]:  # the first deposit's units first
        state.apply(event)
    assert canonical_state(state) == canonical_state(h.state)
    acc = state.account("A1")
    assert not acc.pending and not acc.early and _flow_ids_held(acc) == 0
    late = EngineState()
    for event in units + facts:  # every name first
        late.apply(event)
    assert late.account("A1").early == set() and not late.account("A1").pending
