"""The accounts projection: owner, KYC, AML hold and producers, through the named queries."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from deploy.settings import Settings
from projections import query
from projections.core import PROJECTIONS, account_status
from projections.store import apply_records
from schemas import Envelope, new_event
from schemas.events import (
    AccountOpened,
    AmlFlagCleared,
    AmlFlagRaised,
    BeneficialOwner,
    KycVerified,
    ProducerKeyRotated,
    ProducerRegistered,
    ProducerRevoked,
)
from schemas.events.accounts import OwnerKind
from tests.projections.folding import Tape, fold
from tests.projections.helpers import as_records


def test_status_rule() -> None:
    assert account_status(None, 0) == "KYC_PENDING"
    assert account_status("STANDARD", 0) == "ACTIVE"
    assert account_status("STANDARD", 2) == "AML_HOLD"
    assert account_status(None, 1) == "AML_HOLD"


def _events() -> list[Envelope[Any]]:
    owner = BeneficialOwner(owner_id="own1", kind=OwnerKind.NATURAL, name="Ada", country="DE")
    payloads = [
        AccountOpened(
            account="A1", beneficial_owner=owner, base_currency="USDT", jurisdiction="DE"
        ),
        KycVerified(account="A1", level="ENHANCED", verified_by="kyc", reference="k-1"),
        AmlFlagRaised(account="A1", flag_id="F1", reason="structuring", raised_by="mlro"),
        AmlFlagRaised(account="A1", flag_id="F2", reason="sanctions hit", raised_by="mlro"),
        AmlFlagCleared(account="A1", flag_id="F1", note="explained", cleared_by="mlro"),
        AccountOpened(account="B2", beneficial_owner=owner, base_currency="USDC"),
        ProducerRegistered(
            producer_id="strat1", public_key="ab" * 32, accounts=("A1", "B2"), registered_by="adm"
        ),
        ProducerRevoked(producer_id="strat1", reason="key leaked", revoked_by="adm"),
        ProducerKeyRotated(
            producer_id="strat1", public_key="cd" * 32, previous_key="ab" * 32, rotated_by="adm"
        ),
        # Refused: KYC for an account never opened, clearing a flag that is not open.
        KycVerified(account="ZZ", verified_by="kyc"),
        AmlFlagCleared(account="A1", flag_id="F1", cleared_by="mlro"),
    ]
    return [new_event(p, producer="engine") for p in payloads]


@pytest.mark.integration
def test_accounts_fold_and_named_queries(env: Settings) -> None:
    p = PROJECTIONS["accounts"]
    records = as_records(env, _events())
    with psycopg.connect(env.dsn) as conn, conn.transaction():
        res = apply_records(conn, p, p.schema, records)
    assert (res.applied, res.quarantined) == (9, 2)

    accounts = query.frame("accounts", env)
    assert accounts["account"].to_list() == ["A1", "B2"]
    a1 = accounts.row(0, named=True)
    assert (a1["status"], a1["kyc_level"], a1["open_aml_flags"], a1["owner_id"]) == (
        "AML_HOLD",
        "ENHANCED",
        1,
        "own1",
    )
    assert accounts.row(1, named=True)["status"] == "KYC_PENDING"
    assert query.frame("accounts", env, owner_id="own1").height == 2
    assert query.frame("accounts", env, status="ACTIVE").height == 0
    flags = query.frame("aml_flags", env, account="A1")
    assert list(zip(flags["flag_id"], flags["open"], strict=True)) == [("F1", False), ("F2", True)]
    assert query.frame("aml_flags", env, open="true")["flag_id"].to_list() == ["F2"]
    producers = query.frame("producers", env)
    assert producers["accounts"].to_list() == ['["A1","B2"]']
    strat1 = producers.row(0, named=True)
    assert (strat1["status"], strat1["key_rotations"], strat1["revoke_reason"]) == (
        "ACTIVE",
        1,
        "key leaked",
    )
    assert (strat1["public_key"], strat1["previous_key"]) == ("cd" * 32, "ab" * 32)

    # Clearing the last open flag lifts the hold.
    clear = new_event(
        AmlFlagCleared(account="A1", flag_id="F2", note="false positive", cleared_by="mlro"),
        producer="engine",
    )
    more = as_records(env, [*_events(), clear])[-1:]
    with psycopg.connect(env.dsn) as conn, conn.transaction():
        apply_records(conn, p, p.schema, more)
    assert query.frame("accounts", env, account="A1")["status"].to_list() == ["ACTIVE"]


def test_producers_show_revocations_and_rotations() -> None:
    """Broker-free: a revocation marks the producer REVOKED with who and why; a rotation
    keeps the replaced key, counts, and makes it ACTIVE again with its accounts; a
    restatement with the same key is no rotation; facts for an unknown producer are
    refused. Before fold version 2 neither fact was folded."""
    tape = Tape()
    items = [
        tape.ev(
            ProducerRegistered(
                producer_id="p", public_key="ab" * 32, accounts=("A1",), registered_by="adm"
            )
        ),
        tape.ev(ProducerRevoked(producer_id="p", reason="leak", revoked_by="ops")),
    ]
    state, bad = fold("accounts", items)
    table = PROJECTIONS["accounts"].producers  # type: ignore[attr-defined]
    row = dict(zip(table.columns, state.rows["producers"][("p",)] or (), strict=True))
    assert bad == [] and (row["status"], row["revoked_by"], row["revoke_reason"]) == (
        "REVOKED",
        "ops",
        "leak",
    )
    more = [
        tape.ev(
            ProducerKeyRotated(
                producer_id="p", public_key="cd" * 32, previous_key="ab" * 32, rotated_by="adm"
            )
        ),
        tape.ev(
            ProducerRegistered(
                producer_id="p", public_key="cd" * 32, accounts=("A1", "A2"), registered_by="adm"
            )
        ),
        tape.ev(ProducerRevoked(producer_id="nobody", revoked_by="ops")),
    ]
    state, bad = fold("accounts", more, state)
    row = dict(zip(table.columns, state.rows["producers"][("p",)] or (), strict=True))
    assert (row["status"], row["key_rotations"], row["public_key"], row["previous_key"]) == (
        "ACTIVE",
        1,
        "cd" * 32,
        "ab" * 32,
    )
    assert row["accounts"] == '["A1","A2"]' and row["revoked_at"] is not None
    assert [q.error for q in bad] == ["SkipEvent: ProducerRevoked for unknown producer nobody"]
    assert PROJECTIONS["accounts"].fold_version == 2
