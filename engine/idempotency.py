"""The idempotency record: (producer, account, client_order_id) -> the decision already given.

Pure and bounded per account. Two tiers, both folded from the decision events, so a rebuild
from the log yields the same record:

- **recent**: the original decision *bytes* (key, value, headers as published) for each
  account's newest decisions: at most `max_recent` of them per account, and none older than
  `window_seconds` behind *that account's* newest decision, in the time each is ranked by
  (`Recorded.ranked_at`: its intent's broker append time). A resend in this tier is
  answered with the original decision, byte for byte.
- **archive**: for every older key, a 64-bit fingerprint (8 bytes in a sorted array). A
  resend in this tier is still never traded again: the processor answers it with an
  `IntentRejected` that names the duplicate (the original decision stays on the log).

Both bounds are per account (the Kafka key of the decisions, the unit the engine's topics
are partitioned by), so which tier answers a resend is a function of that account's own
decisions alone. With one bound for the whole record (before session 7) another account's
activity on the same worker could push an account's decisions out of the recent tier, and a
resend got the original decision from a worker holding one partition and a duplicate
rejection from a worker holding several. Within an account the tier is ranked by
(`ranked_at`, key), a function of the *set* of decisions folded, not of their order: a rebuild
reads partitions interleaved in whatever order the consumer delivers them, and a snapshot
merges per-partition slices; both give the same record as the live worker.

Each archived fingerprint is also listed under its decision's Kafka key (the account), so
a snapshot slice can carry exactly the fingerprints of its partition's accounts.

Memory is at most `max_recent` decisions (~2 KB each) per account, in practice the
decisions of each account's last `window_seconds` of activity, plus 16 bytes per key ever
seen. A fingerprint collision (probability ~n/2^64 per new key) can only reject a new
intent as a duplicate: the fail-closed direction.
"""

from __future__ import annotations

import hashlib
import heapq
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar
from uuid import UUID

Key = tuple[str, str, str]
"""(producer, account, client_order_id): a producer's client order ids are scoped to the
account, the unit the intents topic is partitioned by, so whether an intent is a resend never
depends on which worker holds which partitions."""

DEFAULT_MAX_RECENT = 200
"""Per account: memory is bounded per account that trades (~400 KB each at most), since an
idle account's tier is only ever pruned by its own next decision."""
DEFAULT_WINDOW_SECONDS = 60
"""Behind the account's newest decision. Resends come from a producer retrying a publish it
is unsure of: seconds, not minutes. A later resend is still refused as a duplicate."""
_MERGE_AT = 65_536


def _fingerprint(key: Key) -> int:
    digest = hashlib.blake2b("\x1f".join(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


_last: tuple[Key, int] = (("", "", ""), _fingerprint(("", "", "")))
"""The last key fingerprinted and its fingerprint: one intent asks for the same key up to
three times (the processor's duplicate check, the fold's, the record's). One tuple,
replaced whole, so a reader on another thread never pairs a key with another's print."""


def fingerprint(key: Key) -> int:
    global _last
    last = _last
    if last[0] == key:
        return last[1]
    fp = _fingerprint(key)
    _last = (key, fp)
    return fp


@dataclass(frozen=True)
class Recorded:
    """A decision as it went onto the log, ready to be published again unchanged."""

    event_id: UUID
    event_type: str
    topic: str
    ranked_at: datetime
    """What the recent tier ranks it by: the broker's append time of its intent, which the
    decision records (`received_at`), or its event time if it records none (written before
    session 24, or no broker time). Until session 24 its event time, its intent's
    `occurred_at`: one intent stamped an hour ahead (a cancel, or an order refused
    CLOCK_SKEW) moved its account's newest an hour ahead, and every decision of the
    account, any producer's, went to the archive for that hour (a resend answered
    "duplicate", not with its decision)."""
    key: Any
    value: Any
    headers: Any

    @property
    def envelope(self) -> Any:
        """The decoded decision (slow path: tests and tools, not the hot loop)."""
        from schemas import decode

        return decode(self.value, self.headers)

    @property
    def payload(self) -> Any:
        return self.envelope.payload


class FingerprintSet:
    """64-bit fingerprints: a sorted `array('Q')` plus a small pending set, merged in bulk."""

    def __init__(self) -> None:
        self._sorted = array("Q")
        self._pending: set[int] = set()

    def __len__(self) -> int:
        return len(self._sorted) + len(self._pending)

    def __contains__(self, fp: int) -> bool:
        if fp in self._pending:
            return True
        i = bisect_left(self._sorted, fp)
        return i < len(self._sorted) and self._sorted[i] == fp

    def add(self, fp: int) -> None:
        if fp in self:
            return
        self._pending.add(fp)
        if len(self._pending) >= _MERGE_AT:
            # Timsort sees the sorted run plus the new tail: close to a linear merge.
            self._sorted = array("Q", sorted([*self._sorted, *self._pending]))
            self._pending = set()

    def update(self, fps: Iterable[int]) -> None:
        """Add many at once (loading a snapshot): one sort instead of one add each."""
        merged = set(self._pending)
        merged.update(fps)
        merged.update(self._sorted)
        self._sorted = array("Q", sorted(merged))
        self._pending = set()

    def __iter__(self) -> Iterator[int]:
        yield from self._sorted
        yield from self._pending

    @property
    def nbytes(self) -> int:
        return self._sorted.itemsize * len(self._sorted) + 40 * len(self._pending)


Held = TypeVar("Held")


class TwoTiers(Generic[Held]):
    """Keys in two tiers: `recent` (key -> what is held of it in full) and `archive` (a
    fingerprint of every older key), each archived fingerprint also listed under its
    owner in `archived_by` (the account, or its Kafka key) so that a snapshot slice
    carries exactly its partition's. The idempotency record and the ended orders
    (`engine.ended`) are both one; each ranks and evicts its recent tier its own way."""

    def __init__(self) -> None:
        self.recent: dict[Key, Held] = {}
        self.archive = FingerprintSet()
        self.archived_by: dict[Any, array[int]] = {}
        """Owner -> the fingerprints archived from its keys."""

    def __len__(self) -> int:
        return len(self.recent) + len(self.archive)

    def __contains__(self, key: Key) -> bool:
        return key in self.recent or fingerprint(key) in self.archive

    def get(self, key: Key) -> Held | None:
        """What is held of `key` if it is still held in full, else None (see
        `__contains__`)."""
        return self.recent.get(key)

    def archive_fingerprint(self, owner: Any, fp: int) -> None:
        """Add an archived fingerprint (eviction, or loading a snapshot slice)."""
        archive = self.archive
        before = len(archive)
        archive.add(fp)
        if len(archive) == before:
            return  # held already
        listed = self.archived_by.get(owner)
        if listed is None:
            listed = self.archived_by[owner] = array("Q")
        listed.append(fp)

    def release_archive(self, released: Callable[[Any], bool]) -> None:
        """Forget the archived fingerprints of every `released` owner (the archive is
        built again from those kept: one sort)."""
        gone = [owner for owner in self.archived_by if released(owner)]
        if gone:
            for owner in gone:
                del self.archived_by[owner]
            kept = FingerprintSet()
            kept.update(fp for fps in self.archived_by.values() for fp in fps)
            self.archive = kept


class IdempotencyRecord(TwoTiers[Recorded]):
    """Decisions by key, owned by their Kafka key (the account): see the module."""

    def __init__(
        self, max_recent: int = DEFAULT_MAX_RECENT, window_seconds: int = DEFAULT_WINDOW_SECONDS
    ) -> None:
        super().__init__()
        self.max_recent = max_recent
        self.window = timedelta(seconds=window_seconds)
        self._order: dict[Any, list[tuple[datetime, Key]]] = {}
        """Kafka key (the account) -> a heap of its recent decisions' (`ranked_at`, key):
        the oldest is evicted first."""
        self.newest: datetime | None = None
        """The newest `ranked_at` of all accounts held (reporting only: it depends
        on which partitions a worker holds, so nothing is decided from it)."""
        self.newest_by_key: dict[Any, datetime] = {}
        """Kafka key -> newest `ranked_at`: the account's window ends here (a
        snapshot slice carries its own)."""

    def record(self, key: Key, decision: Recorded) -> bool:
        """Remember a decision; False (and nothing changes) if the key is already known."""
        if key in self:
            return False
        self.record_new(key, decision)
        return True

    def record_new(self, key: Key, decision: Recorded) -> None:
        """`record` of a key the caller has just found unknown (`key not in self`)."""
        self.recent[key] = decision
        at = decision.ranked_at
        kk = decision.key
        heap = self._order.get(kk)
        if heap is None:
            heap = self._order[kk] = []
        heapq.heappush(heap, (at, key))
        newest_by_key = self.newest_by_key
        prev = newest_by_key.get(kk)
        if prev is None or at > prev:
            newest_by_key[kk] = at
        if self.newest is None or at > self.newest:
            self.newest = at
        self._prune_key(kk, heap)

    def restore(self, key: Key, decision: Recorded) -> None:
        """Put back a recent decision from a snapshot slice (no pruning: `prune` after)."""
        self.recent[key] = decision
        heapq.heappush(self._order.setdefault(decision.key, []), (decision.ranked_at, key))

    def release(self, released: Callable[[Any], bool]) -> None:
        """Forget every decision whose Kafka key (account) is `released`: the record of a
        worker that never read them (see `engine.snapshot.release_partitions`)."""
        for kk in [kk for kk in self._order if released(kk)]:
            for _at, key in self._order.pop(kk):
                del self.recent[key]
        self.release_archive(released)
        for kk in [kk for kk in self.newest_by_key if released(kk)]:
            del self.newest_by_key[kk]
        self.newest = max(self.newest_by_key.values(), default=None)

    def prune(self) -> None:
        """Evict, per account, the oldest (by `ranked_at`, then key) beyond `max_recent` or
        the window behind that account's newest decision."""
        for kk, heap in self._order.items():
            self._prune_key(kk, heap)

    def _prune_key(self, kk: Any, heap: list[tuple[datetime, Key]]) -> None:
        newest = self.newest_by_key.get(kk)
        if newest is None:
            return
        horizon = newest - self.window
        recent, limit = self.recent, self.max_recent
        while heap and (len(heap) > limit or heap[0][0] < horizon):
            _at, key = heapq.heappop(heap)
            decision = recent.pop(key)
            self.archive_fingerprint(decision.key, fingerprint(key))
