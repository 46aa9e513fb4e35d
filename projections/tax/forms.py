"""Form 8949 and Form 1099-DA rows from disposal slices (`book.Slice.to_json`'s dicts).

Amounts are printed in dollars and cents (`money.cents`); the slices keep every digit.
A slice with an exception (unknown proceeds, no lot) goes on no form: it is listed
apart (`Exception_`), never printed with a made-up number. Rows are sorted by box, date
sold, date acquired and row id, so the same log prints the same form.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from projections.tax.money import EXACT, ZERO, cents
from schemas.types import format_decimal


@dataclass(frozen=True)
class Disposal:
    """One disposal as the projection stores it: the slices are its `slices` jsonb."""

    account: str
    asset: str
    kind: str
    disposed_at: str
    event_id: str
    leg: str
    ref: str
    slices: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True)
class Form8949Row:
    box: str
    description: str
    """(a): units and asset, e.g. `0.5 BTC`."""
    date_acquired: str
    """(b): `YYYY-MM-DD` (UTC)."""
    date_sold: str
    """(c)."""
    proceeds: Decimal
    """(d), in cents."""
    cost_basis: Decimal | None
    """(e), in cents; None (blank) when the broker does not know it (box H/K)."""
    code: str
    """(f): adjustment codes; none are made (no wash-sale rule for crypto)."""
    adjustment: Decimal
    """(g)."""
    gain: Decimal | None
    """(h) = (d) - (e) + (g), from the rounded columns; None when (e) is blank."""
    row_id: str


@dataclass(frozen=True)
class Form1099DaRow:
    box_1a_dti: str
    """The Digital Token Identifier (ISO 24165). Empty: the log does not carry DTIs, and
    none is made up (a limit, docs/projections.md)."""
    box_1b_asset: str
    box_1c_units: Decimal
    box_1d_acquired: str | None
    box_1e_sold: str
    box_1f_proceeds: Decimal
    box_1g_basis: Decimal | None
    """Reported for covered lots only (box 2)."""
    box_2_basis_reported: bool
    box_6_term: str
    """SHORT or LONG (ORDINARY is never ours: no staking or similar income here)."""
    box_9_noncovered: bool
    row_id: str


@dataclass(frozen=True)
class Exception_:
    """A slice that goes on no form, and why."""

    row_id: str
    asset: str
    units: Decimal
    date_sold: str
    date_acquired: str | None
    reason: str
    ref: str


def _dec(v: Any) -> Decimal | None:
    return None if v is None else Decimal(v)


def _in_year(d: Disposal, year: int) -> bool:
    return d.disposed_at[:4] == f"{year:04d}"


def _slices(disposals: Iterable[Disposal], year: int) -> list[tuple[Disposal, Mapping[str, Any]]]:
    return [(d, s) for d in disposals if _in_year(d, year) for s in d.slices]


def exceptions(disposals: Iterable[Disposal], year: int) -> list[Exception_]:
    """The year's slices that go on no form."""
    out = [
        Exception_(
            str(s["row_id"]),
            d.asset,
            Decimal(s["quantity"]),
            d.disposed_at[:10],
            None if s["acquired_at"] is None else str(s["acquired_at"])[:10],
            str(s["exception"]),
            d.ref,
        )
        for d, s in _slices(disposals, year)
        if s["exception"] is not None
    ]
    return sorted(out, key=lambda x: (x.date_sold, x.row_id))


def form8949(disposals: Iterable[Disposal], year: int) -> list[Form8949Row]:
    rows = []
    for d, s in _slices(disposals, year):
        if s["exception"] is not None:
            continue
        proceeds = cents(Decimal(s["proceeds"]))
        basis = _dec(s["basis"])
        basis_c = None if basis is None else cents(basis)
        rows.append(
            Form8949Row(
                str(s["box"]),
                f"{format_decimal(Decimal(s['quantity']))} {d.asset}",  # never `5E-7`
                str(s["acquired_at"])[:10],
                d.disposed_at[:10],
                proceeds,
                basis_c,
                "",
                ZERO,
                None if basis_c is None else EXACT.subtract(proceeds, basis_c),
                str(s["row_id"]),
            )
        )
    return sorted(rows, key=lambda r: (r.box, r.date_sold, r.date_acquired, r.row_id))


def form1099da(disposals: Iterable[Disposal], year: int) -> list[Form1099DaRow]:
    rows = []
    for d, s in _slices(disposals, year):
        if s["exception"] is not None:
            continue
        covered = bool(s["covered"])
        basis = _dec(s["basis"])
        rows.append(
            Form1099DaRow(
                "",
                d.asset,
                Decimal(s["quantity"]),
                str(s["acquired_at"])[:10],
                d.disposed_at[:10],
                cents(Decimal(s["proceeds"])),
                cents(basis) if covered and basis is not None else None,
                covered,
                str(s["term"]),
                not covered,
                str(s["row_id"]),
            )
        )
    return sorted(rows, key=lambda r: (r.box_1e_sold, r.box_1d_acquired or "", r.row_id))


def totals(rows: Iterable[Form8949Row]) -> dict[str, dict[str, Decimal | None]]:
    """Per box: proceeds, basis and gain summed (basis and gain None if any is blank)."""
    out: dict[str, dict[str, Decimal | None]] = {}
    for r in rows:
        t = out.setdefault(r.box, {"proceeds": ZERO, "cost_basis": ZERO, "gain": ZERO})
        t["proceeds"] = EXACT.add(t["proceeds"] or ZERO, r.proceeds)
        for k, v in (("cost_basis", r.cost_basis), ("gain", r.gain)):
            cur = t[k]
            t[k] = None if cur is None or v is None else EXACT.add(cur, v)
    return {k: out[k] for k in sorted(out)}
