"""`LotWindow`: the first of a book's open lots at hand, the rest left in its journal.

Lots are drawn first in, first out, so a book's open lots are always the acquisitions
from one journal position on (the first perhaps drawn in part, the rest whole). A batch
needs only the first ones, those its disposals draw on: a wallet that buys every hour and
sells once a month holds hundreds of lots, and reading and writing all of them with every
batch that touches the book was most of the projection's live cost (session 26's py-spy:
a third of the process). The window keeps the first lots; the others are read back from
the journal, whole, when a draw reaches them, each once as the fold moves past it.

Invariant: the book's open lots are `lots` (each a lot's JSON followed by its journal
position) followed by every acquisition at a journal position from `rest` on, whole; no
acquisition lies between the last lot of `lots` and `rest`; `lots` is empty only when
nothing else is open (`rest` is then the fold's position).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from projections.tax.money import EXACT, ZERO

REMAINING = 12
"""Where a lot's JSON (`Lot.to_json`) has its remaining quantity."""
POSITION = 14
"""Where a windowed lot has the journal position of the entry that acquired it."""

NextLot = Callable[[int, int], tuple[int, list[Any]] | None]
"""The first acquisition at a journal position in `[p, end)`, as its position and its
lot, whole, with that position (`None`: there is none)."""


class LotWindow:
    """The open lots a fold works on: a prefix at hand (`lots`), the rest from `next_lot`."""

    __slots__ = ("_next_lot", "lots", "rest")

    def __init__(self, lots: list[list[Any]], rest: int, next_lot: NextLot) -> None:
        self.lots = lots
        self.rest = rest
        self._next_lot = next_lot

    def acquired(self, lot: list[Any], at: int, room: int) -> None:
        """The lot opened at position `at`: taken in if every earlier open lot is at hand
        and there is room, else left to the journal."""
        if self.rest == at:
            if len(self.lots) < room:
                self.lots.append(lot)
            else:
                return  # the rest begins here
            self.rest = at + 1

    def passed(self, at: int) -> None:
        """The entry at `at` opened no lot: a complete window stays complete."""
        if self.rest == at:
            self.rest = at + 1

    def covering(self, quantity: Decimal, at: int) -> int:
        """How many of the first lots a draw of `quantity` at position `at` reaches (all
        of them if they are not enough), reading more from the journal as it needs."""
        lots = self.lots
        held, k = ZERO, 0
        while held < quantity:
            if k == len(lots) and not self._load(at, len(lots) + 1):
                break
            held = EXACT.add(held, Decimal(lots[k][REMAINING]))
            k += 1
        return k

    def drawn(self, at: int) -> None:
        """After a draw at `at`: the window stays non-empty while anything is open."""
        self.passed(at)
        if not self.lots:
            self._load(at + 1, 1)

    def extend_to(self, end: int) -> None:
        """Every open lot acquired before position `end` at hand."""
        if self.rest < end:
            self._load(end, None)

    def trim_to(self, end: int) -> None:
        """Only the open lots acquired before `end` at hand (the first always)."""
        if self.rest > end and self.lots:
            keep = 1
            while keep < len(self.lots) and self.lots[keep][POSITION] < end:
                keep += 1
            del self.lots[keep:]
            self.rest = max(end, self.lots[-1][POSITION] + 1)

    def _load(self, end: int, upto: int | None) -> bool:
        """Read acquisitions from `rest` on (before `end`) until `upto` lots are at hand
        (None: all before `end`). False if there were none."""
        lots = self.lots
        n = len(lots)
        p = self.rest
        while upto is None or len(lots) < upto:
            found = self._next_lot(p, end)
            if found is None:
                p = end
                break
            at, lot = found
            lots.append(lot)
            p = at + 1
        self.rest = max(p, self.rest)
        return len(lots) > n
