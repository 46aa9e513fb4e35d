"""What the engine keeps of its done orders: enough to answer a cancel that came too late.

A parent order is forgotten once nothing can refer to it any more (`EngineState._evict`),
and its client order id with it. A `CancelIntent` naming it must still be told apart from
one naming an id that never placed an order: `TOO_LATE_TO_CANCEL` (FIX CxlRejReason 0:
the order traded or ended, reconcile the position) against `UNKNOWN_ORDER` (1: a bug in
the strategy). This record remembers, for every parent order that ended, its key
(producer, account, client_order_id), in two tiers folded from the order's end on
`orders.lifecycle`, so a rebuild, a hand-over or a snapshot merge holds what the live
worker held:

- **recent**: per account, the newest `max_recent` ends ranked by (end event time, order
  id) — a function of the *set* of ends, not of the order they are folded in — with how
  the order ended (`Ended`): the rejection names its order id, final state, cause and
  filled quantity.
- **archive**: every older key as a 64-bit fingerprint (8 bytes in a sorted array, and
  the same 8 listed per account so a snapshot slice carries exactly its partition's): the
  cancel is still `TOO_LATE_TO_CANCEL`, its detail says the final state is on the log.

Memory: at most `max_recent` ends per account (~600 bytes each: ~40 KB per account that
ever traded), plus 16 bytes per parent order ever ended (16 MB per million orders, as the
idempotency record's archive keeps per key decided). A fingerprint collision (~n/2^64)
could only answer a cancel of an id that never placed an order `TOO_LATE_TO_CANCEL`
instead of `UNKNOWN_ORDER`: a rejection either way, nothing is traded.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from engine.idempotency import Key, TwoTiers, fingerprint

DEFAULT_MAX_RECENT = 64
"""Per account. A late cancel races the account's last few orders (it was sent before
the fill or the end reached the strategy): 64 covers those with room to spare."""
MAX_CAUSE = 64
"""A cause (an `OrderCanceled`/`OrderExpired`/`OrderRejected` reason) is kept up to this
many characters: the venue's rejection reason is free text."""


@dataclass(frozen=True, slots=True)
class Ended:
    """How a parent order ended."""

    at: datetime
    """The event time of the event that ended it."""
    order_id: str
    state: str
    """FILLED, CANCELED, EXPIRED or REJECTED (by the venue)."""
    cause: str
    """The end's reason (`CLIENT`, `KILL_SWITCH`, `OCO`, `IOC` ...); empty for FILLED."""
    filled: Decimal
    quantity: Decimal

    def describe(self) -> str:
        cause = f" ({self.cause})" if self.cause else ""
        return (
            f"order {self.order_id} is {self.state}{cause}, filled {self.filled} of {self.quantity}"
        )


class EndedOrders(TwoTiers[Ended]):
    """How each parent order ended, by key, owned by its account: see the module."""

    def __init__(self, max_recent: int = DEFAULT_MAX_RECENT) -> None:
        super().__init__()
        self.max_recent = max_recent
        self._order: dict[str, list[tuple[datetime, str, Key]]] = {}
        """account -> a heap of its recent ends' (event time, order id, key): the oldest
        goes to the archive first."""

    def record(self, key: Key, ended: Ended) -> None:
        """Remember an end. A key ends once (one parent order per key, `_close` once), so
        only the recent tier is asked (no fingerprint on the hot path): a second end of a
        key still held changes nothing."""
        if key in self.recent:
            return
        self.restore(key, ended)
        self._prune(key[1])

    def restore(self, key: Key, ended: Ended) -> None:
        """Put an end in the recent tier without pruning (a snapshot slice: `prune` after)."""
        self.recent[key] = ended
        heapq.heappush(self._order.setdefault(key[1], []), (ended.at, ended.order_id, key))

    def prune(self) -> None:
        for account in list(self._order):
            self._prune(account)

    def _prune(self, account: str) -> None:
        heap = self._order[account]
        while len(heap) > self.max_recent:
            _at, _oid, key = heapq.heappop(heap)
            del self.recent[key]
            self.archive_fingerprint(account, fingerprint(key))

    def release(self, released: Callable[[str], bool]) -> None:
        """Forget the ends of every `released` account (`engine.snapshot.release_partitions`)."""
        for account in [a for a in self._order if released(a)]:
            for _at, _oid, key in self._order.pop(account):
                del self.recent[key]
        self.release_archive(released)
