"""`TaxLotBook`: FIFO lots per wallet (account) and asset, folded from journal entries.

Lots are kept in the order they were acquired: acquisition time, then the acquiring
event's id, then its leg (never a dict's or set's order). A disposal or a withdrawal
takes the first lots first. A disposal of more than the wallet holds takes what there is
and leaves the rest as one slice without a lot (`NO_BASIS`), an exception: the book never
holds a negative lot. A lot's basis is split between a slice and what stays by
`money.share`, its proceeds likewise; the last slice takes what is left, so the basis of
every lot equals what its slices took plus what it holds, to the digit.
"""

from __future__ import annotations

from bisect import insort
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from projections.tax.entries import ACQUISITIONS, DISPOSALS, Entry, Kind
from projections.tax.holding import Term, box, is_covered, term
from projections.tax.money import EXACT, share, total
from schemas.ids import derived_uuid7
from schemas.types import format_decimal

NO_BASIS = "NO_BASIS"
"""The exception of a slice disposed of beyond what the wallet held: no lot, no basis."""


def _when(at: str) -> datetime:
    return datetime.fromisoformat(at)


def day(at: str) -> date:
    """The UTC calendar date of a `YYYY-MM-DDThh:mm:ss.ffffffZ` time."""
    return date.fromisoformat(at[:10])


def lot_id(e: Entry) -> str:
    """A lot's id, derived from what acquired it (a replay gives the same id)."""
    return str(derived_uuid7(_when(e.at), "tax_lot", e.account, e.asset, e.event_id, e.leg))


def slice_id(e: Entry, n: int) -> str:
    """The id of the `n`th slice (from 0) of a disposal or withdrawal."""
    return str(
        derived_uuid7(_when(e.at), "tax_slice", e.account, e.asset, e.event_id, e.leg, str(n))
    )


@dataclass(frozen=True)
class Lot:
    lot_id: str
    account: str
    asset: str
    acquired_at: str
    event_id: str
    leg: str
    kind: Kind
    ref: str
    quantity: Decimal
    basis: Decimal | None
    """USD cost basis of the whole lot; None when not known (`basis_reason`)."""
    basis_reason: str | None
    covered: bool
    remaining: Decimal
    remaining_basis: Decimal | None

    @property
    def order(self) -> tuple[str, str, str]:
        return (self.acquired_at, self.event_id, self.leg)

    def drawn_to(self, remaining: Decimal, remaining_basis: Decimal | None) -> Lot:
        """The lot with what stays of it (`dataclasses.replace` costs ~5 times this)."""
        return Lot(
            self.lot_id, self.account, self.asset, self.acquired_at, self.event_id,
            self.leg, self.kind, self.ref, self.quantity, self.basis, self.basis_reason,
            self.covered, remaining, remaining_basis,
        )  # fmt: skip

    def to_json(self) -> list[Any]:
        b = None if self.basis is None else str(self.basis)
        rb = None if self.remaining_basis is None else str(self.remaining_basis)
        return [
            self.lot_id,
            self.account,
            self.asset,
            self.acquired_at,
            self.event_id,
            self.leg,
            self.kind.value,
            self.ref,
            str(self.quantity),
            b,
            self.basis_reason,
            self.covered,
            str(self.remaining),
            rb,
        ]

    @classmethod
    def from_json(cls, v: list[Any]) -> Lot:
        return cls(
            v[0],
            v[1],
            v[2],
            v[3],
            v[4],
            v[5],
            Kind(v[6]),
            v[7],
            Decimal(v[8]),
            None if v[9] is None else Decimal(v[9]),
            v[10],
            bool(v[11]),
            Decimal(v[12]),
            None if v[13] is None else Decimal(v[13]),
        )


def lot_of(e: Entry) -> Lot:
    """The lot an acquisition opens, whole (a replay of the entry gives the same lot)."""
    covered = e.usd is not None and is_covered(e.kind is Kind.PURCHASE, day(e.at))
    return Lot(
        lot_id(e), e.account, e.asset, e.at, e.event_id, e.leg, e.kind, e.ref,
        e.quantity, e.usd, e.reason, covered, e.quantity, e.usd,
    )  # fmt: skip


@dataclass(frozen=True)
class Slice:
    """The part of one lot a disposal or withdrawal took (`lot_id` None: beyond what the
    wallet held). For a withdrawal, `proceeds`, `term` and `box` are None."""

    row_id: str
    lot_id: str | None
    quantity: Decimal
    acquired_at: str | None
    basis: Decimal | None
    proceeds: Decimal | None
    covered: bool
    term: Term | None
    box: str | None
    exception: str | None
    """Why the slice cannot go on a form (unknown proceeds, no lot); None if it can."""

    def to_json(self) -> dict[str, Any]:
        def s(v: Decimal | None) -> str | None:
            return None if v is None else str(v)

        return {
            "row_id": self.row_id,
            "lot_id": self.lot_id,
            "quantity": str(self.quantity),
            "acquired_at": self.acquired_at,
            "basis": s(self.basis),
            "proceeds": s(self.proceeds),
            "covered": self.covered,
            "term": None if self.term is None else self.term.value,
            "box": self.box,
            "exception": self.exception,
        }


@dataclass(frozen=True)
class Outcome:
    """What one entry did: the lot it opened, the lots it drew on (as they stand after),
    and its slices (for a disposal or a withdrawal)."""

    entry: Entry
    opened: Lot | None = None
    drawn: tuple[Lot, ...] = ()
    slices: tuple[Slice, ...] = ()

    @property
    def unmatched(self) -> Decimal:
        """Units disposed of or withdrawn beyond what the wallet held."""
        return total(s.quantity for s in self.slices if s.lot_id is None)


@dataclass
class TaxLotBook:
    """Open lots per (account, asset). `apply` folds one entry; `fold` a batch in
    entry order. Entries for one book must come in `Entry.key` order (`fold` sorts)."""

    lots: dict[tuple[str, str], list[Lot]] = field(default_factory=dict)

    def open_lots(self, account: str, asset: str) -> list[Lot]:
        return list(self.lots.get((account, asset), ()))

    def keys(self) -> list[tuple[str, str]]:
        return sorted(self.lots)

    def fold(self, entries: list[Entry]) -> list[Outcome]:
        return [self.apply(e) for e in sorted(entries, key=lambda e: e.key)]

    def apply(self, e: Entry) -> Outcome:
        if e.quantity <= 0:
            raise ValueError(f"entry {e.event_id}/{e.leg}: quantity {e.quantity} is not positive")
        if e.kind in ACQUISITIONS:
            return self._acquire(e)
        return self._draw(e)

    def _acquire(self, e: Entry) -> Outcome:
        lot = lot_of(e)
        insort(self.lots.setdefault((e.account, e.asset), []), lot, key=lambda x: x.order)
        return Outcome(e, opened=lot)

    def _draw(self, e: Entry) -> Outcome:
        disposal = e.kind in DISPOSALS
        queue = self.lots.get((e.account, e.asset), [])
        need = e.quantity
        proceeds_left = e.usd
        sold = day(e.at)
        slices: list[Slice] = []
        drawn: list[Lot] = []
        while need > 0 and queue:
            lot = queue[0]
            take = min(lot.remaining, need)
            basis = (
                None
                if lot.remaining_basis is None
                else share(lot.remaining_basis, take, lot.remaining)
            )
            proceeds = None
            if disposal and proceeds_left is not None:
                proceeds = share(proceeds_left, take, need)
                proceeds_left = EXACT.subtract(proceeds_left, proceeds)
            t = term(day(lot.acquired_at), sold) if disposal else None
            slices.append(
                Slice(
                    slice_id(e, len(slices)),
                    lot.lot_id,
                    take,
                    lot.acquired_at,
                    basis,
                    proceeds,
                    lot.covered,
                    t,
                    None if t is None else box(lot.covered, t),
                    e.reason if disposal and e.usd is None else None,
                )
            )
            rest = EXACT.subtract(lot.remaining, take)
            rest_basis = (
                None
                if lot.remaining_basis is None or basis is None
                else EXACT.subtract(lot.remaining_basis, basis)
            )
            after = lot.drawn_to(rest, rest_basis)
            drawn.append(after)
            if rest == 0:
                queue.pop(0)
            else:
                queue[0] = after
            need = EXACT.subtract(need, take)
        if need > 0:  # more than the wallet held: no lot, never a negative one
            why = f"{NO_BASIS}: {format_decimal(need)} {e.asset} beyond what the wallet held"
            slices.append(
                Slice(
                    slice_id(e, len(slices)),
                    None,
                    need,
                    None,
                    None,
                    proceeds_left if disposal else None,
                    False,
                    None,
                    None,
                    why if disposal else None,
                )
            )
        if not queue:
            self.lots.pop((e.account, e.asset), None)
        return Outcome(e, drawn=tuple(drawn), slices=tuple(slices))

    # A book's open lots as JSON (the projection keeps them between batches).
    def to_json(self, account: str, asset: str) -> list[list[Any]]:
        return [lot.to_json() for lot in self.lots.get((account, asset), ())]

    def load(self, account: str, asset: str, lots: list[list[Any]]) -> None:
        kept = [Lot.from_json(v) for v in lots]
        if kept:
            self.lots[(account, asset)] = kept
        else:
            self.lots.pop((account, asset), None)
