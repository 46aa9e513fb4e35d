"""A transfer's status only moves forward: REQUESTED -> CHECKED_* -> RELEASED -> SETTLED.

A step the transfer is already past (a check after the release or the settlement, a
release after the settlement) keeps the later status; a re-check (HOLD, then PASS) or a
repeated release at the same step is the newest. What cannot happen is quarantined: a
release or settlement for a transfer never requested, a second request, a second
settlement (it would debit twice). A check read before its request waits for it (the
checks are on transfers.checks since session 27, a topic of their own, read in no fixed
order with transfers.events): the request folds it, in any interleaving of the two. Before, a `TransferChecked` after the release set the status back to
CHECKED_*, so a released transfer showed as merely checked. Deterministic in any batch
split (in memory, and through PostgreSQL with the batch-split property's cuts)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deploy.settings import Settings
from projections.checksum import checksum
from projections.core import PROJECTIONS
from projections.framework import Located, State
from projections.rebuild import create_schema
from projections.store import apply_records
from schemas import EventPayload
from schemas.events import TransferChecked, TransferReleased, TransferRequested, TransferSettled
from schemas.events.transfers import TransferCheckOutcome
from tests.projections.folding import Tape, fold
from tests.projections.test_properties import _split

AT = datetime(2026, 1, 5, tzinfo=UTC)
BAL = PROJECTIONS["balances"]
STEPS = ("request", "check", "release", "settle")
RANK = {"REQUESTED": 0, "RELEASED": 2, "SETTLED": 3} | {
    f"CHECKED_{o}": 1 for o in TransferCheckOutcome
}


def _step(tid: str, step: str, outcome: str = "PASS") -> EventPayload:
    acct = "A1"
    if step == "request":
        return TransferRequested(
            transfer_id=tid, account=acct, asset="BTC", amount=Decimal(1),
            destination_address="bc1q",
        )  # fmt: skip
    if step == "check":
        return TransferChecked(
            transfer_id=tid, account=acct, outcome=TransferCheckOutcome(outcome), jurisdiction="EU"
        )
    if step == "release":
        return TransferReleased(transfer_id=tid, account=acct)
    return TransferSettled(transfer_id=tid, account=acct, tx_hash="0x" + tid, settled_at=AT)


def _status(items: list[Located]) -> tuple[str, list[Any]]:
    st_, bad = fold("balances", items)
    return str(st_.dirty["transfers"][("A1", "t1")][4]), bad


def test_a_check_after_the_release_keeps_it_released() -> None:
    t = Tape()
    items = [t.ev(_step("t1", s)) for s in ("request", "check", "release")]
    items.append(t.ev(_step("t1", "check", "REJECT")))
    assert _status(items) == ("RELEASED", [])  # was CHECKED_REJECT


def test_late_steps_after_the_settlement_keep_it_settled_and_debit_once() -> None:
    t = Tape()
    items = [t.ev(_step("t1", s)) for s in ("request", "check", "release", "settle")]
    items += [t.ev(_step("t1", "check", "HOLD")), t.ev(_step("t1", "release"))]
    items.append(t.ev(_step("t1", "settle")))  # a second settlement: impossible
    st_, bad = fold("balances", items)
    assert st_.dirty["transfers"][("A1", "t1")][4] == "SETTLED"
    assert len(bad) == 1 and "already settled" in bad[0].error
    assert st_.dirty["balances"][("A1", "BTC")][2] == -1


def test_a_recheck_at_the_same_step_is_the_newest() -> None:
    t = Tape()
    items = [t.ev(_step("t1", "request")), t.ev(_step("t1", "check", "HOLD"))]
    items.append(t.ev(_step("t1", "check", "PASS")))
    assert _status(items) == ("CHECKED_PASS", [])


@pytest.mark.parametrize("step", ["release", "settle"])
def test_a_step_before_any_request_is_quarantined(step: str) -> None:
    st_, bad = fold("balances", [Tape().ev(_step("t1", step))])
    assert len(bad) == 1 and "unknown transfer t1" in bad[0].error
    assert not st_.dirty and not st_.inserts


def test_a_check_before_its_request_is_folded_by_the_request() -> None:
    """Until fold version 7 it was quarantined as of an unknown transfer, and the
    withdrawal stayed REQUESTED though the travel rule had rejected it."""
    t = Tape()
    check, request = t.ev(_step("t1", "check", "REJECT")), t.ev(_step("t1", "request"))
    st_, bad = fold("balances", [check])
    assert not bad and "transfers" not in st_.dirty
    assert _status([check, request]) == ("CHECKED_REJECT", [])
    st_, _bad = fold("balances", [check, request])
    assert st_.dirty["transfers"][("A1", "t1")][5:] == (
        check.data["event_id"],
        check.data["occurred_at"],
    )  # as if read right after the request


FLOWS = st.lists(
    st.tuples(
        st.sampled_from(["t1", "t2"]),
        st.sampled_from(STEPS),
        st.sampled_from([o.value for o in TransferCheckOutcome]),
    ),
    min_size=1,
    max_size=20,
)


def _tape(flow: list[tuple[str, str, str]]) -> Tape:
    t = Tape()
    for tid, step, outcome in flow:
        t.ev(_step(tid, step, outcome))
    return t


def _located(flow: list[tuple[str, str, str]]) -> list[Located]:
    t = Tape()
    return [t.ev(_step(tid, step, outcome)) for tid, step, outcome in flow]


def _in_batches(items: list[Located], cuts: set[int]) -> tuple[dict[str, Any], int]:
    """Folded batch by batch, each reading the rows the ones before stored (as the
    projector reads them back); the stored rows and how many were quarantined."""
    db: dict[str, dict[Any, Any]] = {
        "balances": {}, "transfers": {}, "movements": {}, "transfer_checks": {}
    }  # fmt: skip
    quarantined = 0
    bounds = [0, *sorted(c for c in cuts if c < len(items)), len(items)]
    for a, b in itertools.pairwise(bounds):
        state = State(loader=lambda table, key: db[table.name].get(key))
        quarantined += len(BAL.fold(state, items[a:b]))
        for name, rows in state.dirty.items():
            db[name].update(rows)
        for key, row in state.inserts.get("movements", {}).items():
            db["movements"].setdefault(key, row)
    return db, quarantined


@settings(max_examples=200, deadline=None)
@given(flow=FLOWS, cuts=st.sets(st.integers(1, 19)))
def test_the_status_only_moves_forward_in_any_batch_split(
    flow: list[tuple[str, str, str]], cuts: set[int]
) -> None:
    evs = _located(flow)
    whole, bad_whole = _in_batches(evs, set())
    split, bad_split = _in_batches(evs, cuts)
    assert split == whole and bad_split == bad_whole
    # the status after each prefix never moves back, and ends at the furthest step
    # admitted; each settled transfer is debited once
    seen: dict[str, int] = {}
    for n in range(1, len(evs) + 1):
        db, _bad = _in_batches(evs[:n], set())
        for (_acct, tid), row in db["transfers"].items():
            assert RANK[row[4]] >= seen.get(tid, 0), (tid, row[4], flow[:n])
            seen[tid] = RANK[row[4]]
    for (_acct, tid), row in whole["transfers"].items():
        requested = [i for i, (x, s, _o) in enumerate(flow) if x == tid and s == "request"]
        later = {s for x, s, _o in flow[requested[0] :] if x == tid}
        if any(x == tid and s == "check" for x, s, _o in flow[: requested[0]]):
            later.add("check")  # read before its request: the request folds it
        assert RANK[row[4]] == max(STEPS.index(s) for s in later), (tid, flow)
        settled = 1 if row[4] == "SETTLED" else 0
        legs = [k for k in whole["movements"] if k[1] == "withdrawal" and _ref(evs, k[0]) == tid]
        assert len(legs) == settled
    assert whole["balances"].get(("A1", "BTC"), (0, 0, 0))[2] == -sum(
        1 for row in whole["transfers"].values() if row[4] == "SETTLED"
    )


@settings(max_examples=200, deadline=None)
@given(flow=FLOWS, take=st.lists(st.booleans(), min_size=20, max_size=20), data=st.data())
def test_any_interleaving_of_the_checks_folds_to_the_same_rows(
    flow: list[tuple[str, str, str]], take: list[bool], data: st.DataObject
) -> None:
    """transfers.events (requests, releases, settlements) and transfers.checks, each in
    its own order, met in any interleaving and batch split: the same rows and the same
    quarantine as all the requests first."""
    evs = _located(flow)
    steps = [e for e in evs if e.event_type != "TransferChecked"]
    checks = [e for e in evs if e.event_type == "TransferChecked"]
    merged, i, j = [], 0, 0
    for want_check in take[: len(evs)]:
        if (want_check and j < len(checks)) or i >= len(steps):
            merged.append(checks[j])
            j += 1
        else:
            merged.append(steps[i])
            i += 1
    cuts = data.draw(st.sets(st.integers(1, 19)))
    assert _in_batches(merged, cuts) == _in_batches(steps + checks, set())
    assert _in_batches(checks + steps, set()) == _in_batches(steps + checks, set())


def _ref(evs: list[Located], event_id: Any) -> str:
    return next(str(e.payload["transfer_id"]) for e in evs if e.data["event_id"] == event_id)


@pytest.mark.integration
@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(flow=FLOWS, cuts=st.lists(st.integers(0, 10_000), max_size=8))
def test_any_batch_split_matches_a_rebuild_through_postgres(
    env: Settings, flow: list[tuple[str, str, str]], cuts: list[int]
) -> None:
    """The batch-split property (`test_properties._split`) on transfer flows."""
    records = _tape(flow).records
    with psycopg.connect(env.dsn) as conn:
        create_schema(conn, BAL, "t_rebuild")
        create_schema(conn, BAL, "t_live")
        with conn.transaction():
            apply_records(conn, BAL, "t_rebuild", records)
        for batch in _split(records, cuts):
            with conn.transaction():
                apply_records(conn, BAL, "t_live", batch)
        assert checksum(conn, BAL, "t_live") == checksum(conn, BAL, "t_rebuild")
        status = conn.execute("SELECT transfer_id, status FROM t_live.transfers").fetchall()
    expect, _bad = _in_batches(_located(flow), set())
    assert sorted(status) == sorted((k[1], v[4]) for k, v in expect["transfers"].items())
