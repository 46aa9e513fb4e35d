"""`merge_books` when both books hold an early fill or a pending end of the same order.

An account's own book (kept while its owner was unknown) and its owner's book can each
hold fills or an end of one order whose `OrderSubmitted` is not folded yet. Merged, the
order must end as it does when the same events are folded into one book: every fill
counted once (a fill held by both books, the very same fill id, once), the first end
folded (the moved book's: all of its events were folded first) kept.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from schemas import Envelope
from schemas.events import OrderExpired
from streams.detectors import all_detectors
from streams.surveillance_state import OwnerBook, Surveillance, merge_books
from streams.synthetic import Tape


def book_of(events: list[Envelope[Any]], owner: str) -> OwnerBook:
    s = Surveillance(all_detectors())
    s.process_batch(events)
    return s.store.books[owner]


def order_after_merge(
    moved: list[Envelope[Any]],
    into: list[Envelope[Any]],
    opened: Envelope[Any],
    submit: Envelope[Any],
) -> tuple[Any, ...]:
    """`moved` folded in the account's own book, `into` (after `opened`) in its owner's,
    the books merged as `AccountOpened` merges them, then the order folded."""
    merged = merge_books(book_of(moved, "account:A1"), book_of([opened, *into], "x"), "x")
    s = Surveillance(all_detectors())
    s.store.owners["A1"] = "x"
    s.store.books["x"] = merged
    s.process(submit)
    book = s.store.books["x"]
    assert book.early_fills == {} and book.pending_ends == {}
    o = book.orders["o"]
    return (o.status, o.filled_qty, o.ended_at, o.end_event_id, o.reported_filled)


def order_in_one_book(events: list[Envelope[Any]]) -> tuple[Any, ...]:
    o = book_of(events, "x").orders["o"]
    return (o.status, o.filled_qty, o.ended_at, o.end_event_id, o.reported_filled)


@pytest.mark.parametrize("both_hold_f1", [False, True])
def test_early_fills_of_one_order_in_both_books_are_merged(both_hold_f1: bool) -> None:
    t = Tape()
    opened = t.open_account("A1", "x")
    submit = t.submit(1.0, "A1", "o", "BUY", "2", "100.00")
    f1 = t.fill(0.9, "o", qty="0.5")
    f2 = t.fill(0.95, "o")  # closes it
    into = [f1, f2] if both_hold_f1 else [f2]
    merged = order_after_merge([f1], into, opened, submit)
    assert merged == order_in_one_book([opened, f1, f2, submit])
    assert merged[:2] == ("FILLED", Decimal(2))


def test_the_first_pending_end_of_one_order_is_kept() -> None:
    t = Tape()
    opened = t.open_account("A1", "x")
    submit = t.submit(1.0, "A1", "o", "BUY", "2", "100.00")
    cancel = t.cancel(0.95, "o")
    expired = t._add(
        OrderExpired(
            order_id="o", account="A1", filled_quantity=Decimal(0), leaves_quantity=Decimal(2),
            reason="VENUE",
        ),
        0.97,
    )  # fmt: skip
    merged = order_after_merge([cancel], [expired], opened, submit)
    assert merged == order_in_one_book([opened, cancel, expired, submit])
    assert merged[0] == "CANCELED"
