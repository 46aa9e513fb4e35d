"""The `tax_lots` projection: `TaxLotBook` folded from the log into PostgreSQL.

Each wallet (account) and asset has a `books` row (its open lots) and a journal (every
entry, in `Entry.key` order: acquisition or disposal time, event id, leg), kept in chunks
of `CHUNK` entries, each with the book's open lots at its start (`opening`). The topics
it reads (orders, transfers, accounts) are interleaved in no fixed order, by a rebuild as
by live batches, so the fold may not depend on arrival order. A batch's entries are
folded into their books once, at the batch's end (`settle`): those that sort after the
book's last entry are applied to its open lots; if any sorts before (a deposit on
accounts.events read after a later sale on orders.events), the book is folded again from
the start of that entry's chunk, from the chunk's opening, and every row derived from
there on is written again. Never the whole journal: a refold costs the entries after the
earliest late one, once a batch (a rebuild reads its small topics ahead of the large
one, so most of its entries are late, by however much the topics' reads drift apart).

The opening is compact because lots are drawn first in, first out: the open lots are
always the acquisitions from one journal position on, the first of them perhaps drawn in
part and the rest whole. `opening` is that position and the first lot as it then stood
(`[]`: none open), and the rest are rebuilt from the journal's entries.

The derived rows are one per lot (`lots`), one per disposal (`disposals`, its lot slices
as jsonb: a refold may slice it differently, and a row per slice could not be taken back)
and one per withdrawal: the same set of rows whatever the order. `disposal_slices` is the
view with a row per slice (Form 8949's columns).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence
from decimal import Decimal
from heapq import merge
from itertools import pairwise
from typing import Any

import orjson

from projections.framework import (
    Key,
    Located,
    Projection,
    Quarantined,
    Row,
    SkipEvent,
    State,
    Table,
    WriteMode,
)
from projections.tax.book import Lot, Outcome, TaxLotBook, lot_of
from projections.tax.entries import (
    ACQUISITIONS,
    DISPOSALS,
    Entry,
    Kind,
    from_deposit,
    from_fill,
    from_withdrawal,
)
from projections.tax.money import DEFAULT_USD_ASSETS, total
from projections.tax.window import POSITION, REMAINING, LotWindow
from schemas.registry import event_types_for
from schemas.topics import Topic

_HANDLES = ("Fill", "DepositReceived", "TransferRequested", "TransferSettled")
_TOPICS = (Topic.ORDERS, Topic.TRANSFERS, Topic.ACCOUNTS)
_ACQUIRED = frozenset(k.value for k in ACQUISITIONS)

BookKey = tuple[str, str]
Put = tuple[Table, Row, Key | None]

CHUNK = 32
"""Entries per `journal` row: appending rewrites one row of at most this many, not the
whole history; a refold (an entry older than the book's last) reads the chunks from its
own on, and those back to its opening's first lot. The
incomplete last chunk is the `books` row's tail, which a batch reads and writes whole
for every book it touches: 256 (fold version 1, migration 0130's comment) made a
small live batch pay for up to 256 entries a book (bench_tax_lots `--per-batch 100
--live`: ~175 against ~100 us an event with 32; 16 no better, docs/benchmarks.md)."""


READ_AHEAD = 4
"""Journal chunks a draw that reads past the books row's lots loads in one query (live,
each is otherwise a round trip: a sale of more than the row's 64 lots read them one
query a chunk, 12 % of the live process's samples in session 27)."""


def _chunk(n: int) -> str:
    """A chunk's number as its key (stateful key columns are text), ordered as text."""
    return f"{n:09d}"


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _loaded(value: Any) -> list[Any]:
    """A jsonb value as the fold keeps it (a list: this batch put it, the database or a
    rebuild's frozen row returned it) or as text. Never changed in place: a row put is
    a new list (a shallow copy of a few hundred references, not a text to parse)."""
    out: list[Any] = orjson.loads(value) if isinstance(value, str | bytes) else value
    return out


class TaxLotsProjection(Projection):
    """Open lots, disposals (with their lot slices) and withdrawals per wallet and asset."""

    name = "tax_lots"
    topics = _TOPICS
    books = Table(
        "books",
        (
            "account",
            "asset",
            "open_lots",
            "entry_count",
            "last_key",
            "tail",
            "tail_opening",
            "rest_from",
        ),
        ("account", "asset"),
        WriteMode.UPSERT,
        stateful=True,
    )
    journal = Table(
        "journal",
        ("account", "asset", "chunk", "entries", "opening"),
        ("account", "asset", "chunk"),
        WriteMode.UPSERT,
        stateful=True,
    )
    deposit_ids = Table(
        "deposit_ids",
        ("account", "deposit_id", "event_id"),
        ("account", "deposit_id"),
        WriteMode.UPSERT,
        stateful=True,
    )
    lots = Table(
        "lots",
        (
            "lot_id", "account", "asset", "acquired_at", "event_id", "leg", "kind", "ref",
            "quantity", "basis_usd", "basis_reason", "covered", "remaining_quantity",
            "remaining_basis_usd",
        ),
        ("lot_id",),
        WriteMode.UPSERT,
        frozen_in_rebuild=True,
    )  # fmt: skip
    disposals = Table(
        "disposals",
        (
            "event_id", "leg", "account", "asset", "kind", "disposed_at", "ref", "quantity",
            "proceeds_usd", "proceeds_reason", "unmatched_quantity", "slices",
        ),
        ("event_id", "leg"),
        WriteMode.UPSERT,
        frozen_in_rebuild=True,
    )  # fmt: skip
    withdrawals = Table(
        "withdrawals",
        (
            "account", "transfer_id", "asset", "quantity", "withdrawn_at", "event_id",
            "unmatched_quantity", "slices",
        ),
        ("account", "transfer_id"),
        WriteMode.UPSERT,
        frozen_in_rebuild=True,
    )  # fmt: skip
    transfer_requests = Table(
        "transfer_requests",
        ("account", "transfer_id", "asset", "amount", "status", "event_id", "updated_at"),
        ("account", "transfer_id"),
        WriteMode.UPSERT,
        stateful=True,
    )
    tables = (books, journal, lots, disposals, withdrawals, transfer_requests, deposit_ids)
    handles = frozenset(f"{t}/1" for t in _HANDLES) | {"TransferRequested/2"}
    """TransferRequested v2 adds `ownership_proof`, which nothing here reads."""
    ignores = frozenset(t for topic in _TOPICS for t in event_types_for(topic)) - set(_HANDLES)
    """What else is on its topics: orders' other facts, transfer checks and releases,
    accounts' other facts."""
    migrations = (
        "0130_proj_tax_lots.sql", "0131_tax_lots_openings.sql", "0132_tax_lots_window.sql"
    )  # fmt: skip
    fold_version = 4
    """2: journal chunks of 32 entries (`CHUNK`), not 256. 3: each chunk (and the
    books row's tail) with its opening, each open lot with its journal position, a
    batch's entries folded at its end (`settle`). The same lots, disposals and
    withdrawals each time; other `journal` and `books` rows. 4: the books row keeps
    only its first open lots (`LotWindow`), the rest from `rest_from` on read back from
    the journal."""
    partition_local = True  # every table is per account, the key of its three topics
    rebuilds_in_time_order = True
    """Read as fetched, a rebuild meets most entries late (its small topics are read to
    their end first) and refolds a book's recent past at almost every batch."""
    usd_assets: frozenset[str] = DEFAULT_USD_ASSETS
    """Assets taken as USD at par. Part of the fold: changing it is a new fold_version."""

    def state_keys(self, events: Sequence[Located]) -> Mapping[str, set[Key]]:
        books: set[Key] = set()
        transfers: set[Key] = set()
        deposits: set[Key] = set()
        for e in events:
            p = e.payload
            t = e.data["event_type"]
            if "account" not in p:
                continue
            if t == "Fill" and "instrument" in p:
                for asset in (*str(p["instrument"]).split("/"), p.get("fee_asset")):
                    if asset is not None and asset not in self.usd_assets:
                        books.add((p["account"], asset))
            elif t == "DepositReceived" and "asset" in p:
                books.add((p["account"], p["asset"]))
                deposits.add((p["account"], p.get("deposit_id", "")))
            elif t.startswith("Transfer") and "transfer_id" in p:
                # a settlement's asset is known from its request's row: its book is then
                # loaded on demand (`State.get`)
                transfers.add((p["account"], p["transfer_id"]))
        return {"books": books, "transfer_requests": transfers, "deposit_ids": deposits}

    def handle(self, state: State, item: Located) -> None:
        """The event's entries wait in `State.deferred` for `settle`, per book."""
        d = item.data
        t = d["event_type"]
        if t == "Fill":
            entries = from_fill(d, self.usd_assets)
        elif t == "DepositReceived":
            # once per account and id, as the engine credits it (and balances counts it)
            p = d["payload"]
            key = (p["account"], p["deposit_id"])
            first = state.get(self.deposit_ids, key)
            if first is not None:
                raise SkipEvent(f"deposit {key[1]} of {key[0]} already credited (event {first[2]})")
            entries = from_deposit(d, self.usd_assets)
            state.put(self.deposit_ids, (*key, d["event_id"]), key)
        else:
            entries = self._transfer(state, item)
        for e in entries:
            if e.quantity <= 0:  # a book would refuse it in `settle`, for its whole batch
                raise SkipEvent(f"{e.kind.value} of {e.quantity} {e.asset}: not positive")
        waiting: dict[BookKey, list[tuple[Entry, Located]]] = state.deferred.setdefault(
            self.name, {}
        )
        for e in entries:
            waiting.setdefault((e.account, e.asset), []).append((e, item))

    def _transfer(self, state: State, item: Located) -> list[Entry]:
        d = item.data
        p = d["payload"]
        key = (p["account"], p["transfer_id"])
        cur = state.get(self.transfer_requests, key)
        if d["event_type"] == "TransferRequested":
            if cur is not None:
                raise SkipEvent(f"transfer {key[1]} of {key[0]} requested twice")
            state.put(
                self.transfer_requests,
                (*key, p["asset"], p["amount"], "REQUESTED", d["event_id"], d["occurred_at"]),
                key,
            )
            return []
        if cur is None:  # never requested, or by another account
            raise SkipEvent(f"TransferSettled for unknown transfer {key[1]} of {key[0]}")
        if cur[4] == "SETTLED":  # its lots would leave twice
            raise SkipEvent(f"TransferSettled for already settled transfer {key[1]}")
        entries = from_withdrawal(d, str(cur[2]), Decimal(str(cur[3])), self.usd_assets)
        state.put(
            self.transfer_requests, (*cur[:4], "SETTLED", d["event_id"], d["occurred_at"]), key
        )
        return entries

    def settle(self, state: State) -> list[Quarantined]:
        """Fold the batch's entries into their books, each book once. A book that cannot
        take them (a bug, not bad input: `handle` refused that) quarantines the events
        whose entries it was given, and keeps its rows as they were."""
        waiting: dict[BookKey, list[tuple[Entry, Located]]] = state.deferred.pop(self.name, {})
        bad: list[Quarantined] = []
        self._prefetch(state, waiting)
        for key in sorted(waiting):
            given = waiting[key]
            try:
                puts = self._settle(state, key, sorted((e for e, _ in given), key=_order))
            except (SkipEvent, ArithmeticError, ValueError, KeyError, TypeError) as exc:
                why = f"{type(exc).__name__}: {exc}"
                seen: set[tuple[str, int, int]] = set()
                for _e, i in given:
                    if (i.topic, i.partition, i.offset) not in seen:
                        seen.add((i.topic, i.partition, i.offset))
                        bad.append(
                            Quarantined(
                                i.topic, i.partition, i.offset, why, i.event_type,
                                i.schema_version,
                            )
                        )  # fmt: skip
                continue
            for table, row, k in puts:
                state.put(table, row, k)
        return bad

    def _prefetch(self, state: State, waiting: dict[BookKey, list[tuple[Entry, Located]]]) -> None:
        """The journal chunks the batch's draws will read, in one query: for a book
        whose row does not hold every open lot, the chunk its rest begins in, if the
        batch draws past the first open lot's chunk (its window then moves on). Live,
        read one at a time, they were most of the process's waits on PostgreSQL."""
        if state.many is None:  # a rebuild: its rows are in memory
            return
        want: set[Key] = set()
        for key, given in waiting.items():
            cur = state.get(self.books, key)
            if cur is None:
                continue
            rest = int(cur[7])
            if rest >= int(cur[3]) // CHUNK * CHUNK:
                continue  # every open lot in the row, or the rest in its tail
            drawn = total([e.quantity for e, _ in given if e.kind not in ACQUISITIONS])
            if not drawn:
                continue
            lots = _loaded(cur[2])
            chunk_end = (int(lots[0][POSITION]) // CHUNK + 1) * CHUNK if lots else 0
            there = total([Decimal(v[REMAINING]) for v in lots if v[POSITION] < chunk_end])
            if drawn >= there:
                want.add((*key, _chunk(rest // CHUNK)))
        if want:
            state.prefetch(self.journal, want)

    def _settle(self, state: State, key: BookKey, new: list[Entry]) -> list[Put]:
        """The rows `new` (in key order) make: from the book's open lots if each sorts
        after the book's last entry, else from the opening of the earliest one's chunk.
        Nothing is put here (`settle` puts them all, or none)."""
        account, asset = key
        puts: list[Put] = []
        cur = state.get(self.books, key)
        count = 0 if cur is None else int(cur[3])
        full = count // CHUNK
        tail: list[Any] = [] if cur is None else _loaded(cur[5])
        tail_opening: list[Any] = [] if cur is None else _loaded(cur[6])
        openings: dict[int, list[Any]] = {}
        if cur is None or new[0].key > tuple(_loaded(cur[4])):
            # the common case: applied to the open lots, after the journal's last entry
            if tail:
                openings[full] = tail_opening
            first, at, entries = full, count, new
            raw = [*tail, *(e.to_json() for e in new)]
            journal = _Journal(self, state, key, first * CHUNK, raw)
            window = (
                LotWindow([], count, journal.next_lot)
                if cur is None
                else LotWindow(list(_loaded(cur[2])), int(cur[7]), journal.next_lot)
            )
        else:
            first, old, opening = self._since(state, key, full, tail, tail_opening, new[0].key)
            entries = list(merge(old, new, key=_order))
            for a, b in pairwise(entries):
                if a.key == b.key:
                    raise SkipEvent(f"{a.event_id}/{a.leg} is already in the book of {key}")
            # No lot open at the chunk's start needs its row put again: entries are only
            # ever added, and an acquisition sorts after every lot open before it, so
            # the refold draws on each lot the fold before it drew on, and puts it.
            at = first * CHUNK
            raw = [e.to_json() for e in entries]
            journal = _Journal(self, state, key, at, raw, _loaded(cur[2]), int(cur[7]))
            window = (
                LotWindow([[*opening[1], opening[0]]], opening[0] + 1, journal.next_lot)
                if opening
                else LotWindow([], at, journal.next_lot)
            )
        room = 2 * CHUNK
        for e in entries:
            if at % CHUNK == 0:
                openings[at // CHUNK] = _opening_of(window.lots)
            self._apply(puts, e, window, at, room)
            at += 1
        # The window the row keeps is a function of the journal alone (a rebuild and the
        # live fold write the same row): the open lots acquired before the end of the
        # chunk after the first open lot's.
        if window.lots:
            end = min(at, (window.lots[0][POSITION] // CHUNK + 2) * CHUNK)
            window.extend_to(end)
            window.trim_to(end)
        else:
            window.rest = at
        whole = at // CHUNK  # complete chunks end here
        for n in range(first, whole):
            ck = (account, asset, _chunk(n))
            part = raw[(n - first) * CHUNK : (n - first + 1) * CHUNK]
            puts.append((self.journal, (*ck, part, openings[n]), ck))
        rest = raw[(whole - first) * CHUNK :]
        row = (
            account,
            asset,
            window.lots,
            at,
            list(entries[-1].key),
            rest,
            openings[whole] if rest else [],
            window.rest,
        )
        puts.append((self.books, row, key))
        return puts

    def _since(
        self,
        state: State,
        key: BookKey,
        full: int,
        tail: list[Any],
        tail_opening: list[Any],
        since: tuple[str, ...],
    ) -> tuple[int, list[Entry], list[Any]]:
        """The chunk an entry keyed `since` goes in (read back from the last), the
        journal's entries from that chunk's start, and the chunk's opening."""
        old = [Entry.from_json(v) for v in tail]
        if tail and tuple(tail[0][:3]) < since:
            return full, old, tail_opening
        n = full
        opening: list[Any] = []
        while n > 0:
            n -= 1
            chunk = self._chunk_row(state, key, n)
            old = [Entry.from_json(v) for v in _loaded(chunk[3])] + old
            opening = _loaded(chunk[4])
            if old[0].key < since:
                break
        return n, old, opening

    def _chunk_row(self, state: State, key: BookKey, n: int) -> Row:
        row = state.get(self.journal, (*key, _chunk(n)))
        if row is None:
            raise SkipEvent(f"the journal of {key[0]} {key[1]} lacks chunk {n}")
        return row

    def _apply(self, puts: list[Put], e: Entry, window: LotWindow, at: int, room: int) -> None:
        """`e`, journal position `at`, applied to the open lots, in place: `window.lots`
        is this settle's own list (the row it was read from is never changed: a row put
        earlier may hold it). A new lot goes last (it sorts after every lot), and a draw
        reads only the lots it takes from (a prefix) into a `TaxLotBook` (a new list at
        every entry cost each O(open lots), session 26)."""
        book = TaxLotBook()
        if e.kind in ACQUISITIONS:
            o = book.apply(e)
            self._emit(puts, o)
            window.acquired([*o.opened.to_json(), at], at, room)  # type: ignore[union-attr]
            return
        k = window.covering(e.quantity, at)
        lots = window.lots
        book.load(e.account, e.asset, lots[:k])
        self._emit(puts, book.apply(e))
        left = book.to_json(e.account, e.asset)  # what stays of the k: their last ones
        lots[:k] = [[*v, lots[k - len(left) + i][POSITION]] for i, v in enumerate(left)]
        window.drawn(at)

    def _emit(self, puts: list[Put], o: Outcome) -> None:
        e = o.entry
        for lot in ((o.opened,) if o.opened is not None else ()) + o.drawn:
            puts.append((self.lots, _lot_row(lot), None))
        slices = _json([s.to_json() for s in o.slices])
        if e.kind in DISPOSALS:
            row: Row = (
                e.event_id, e.leg, e.account, e.asset, e.kind.value, e.at, e.ref,
                e.quantity, e.usd, e.reason, o.unmatched, slices,
            )  # fmt: skip
            puts.append((self.disposals, row, None))
        elif e.kind is Kind.WITHDRAWAL:
            row = (e.account, e.ref, e.asset, e.quantity, e.at, e.event_id, o.unmatched, slices)
            puts.append((self.withdrawals, row, None))


def _order(e: Entry) -> tuple[str, str, str]:
    return e.key


def _opening_of(lots: list[list[Any]]) -> list[Any]:
    """A chunk's opening from the open lots at its start: the first one's journal
    position and JSON (the rest are whole acquisitions after it), or `[]`."""
    return [lots[0][POSITION], lots[0][:POSITION]] if lots else []


def _lot_row(lot: Lot) -> Row:
    return (
        lot.lot_id, lot.account, lot.asset, lot.acquired_at, lot.event_id, lot.leg,
        lot.kind.value, lot.ref, lot.quantity, lot.basis, lot.basis_reason, lot.covered,
        lot.remaining, lot.remaining_basis,
    )  # fmt: skip


class _Journal:
    """Where a settle reads a book's acquisitions back (`LotWindow`'s `next_lot`): the
    entries it folds, from position `base` on (`raw`), and the journal's chunks before
    it. A refold also has the lots the book's row held (`held`, its window, the rest
    from `held_rest`): those acquired before `base` are still open, so they were whole
    at the chunk's start and need no chunk read (a wallet that keeps lots for months
    would otherwise read its history at every late entry); only the acquisitions drawn
    on since, before the first of them, are read from the journal."""

    __slots__ = ("base", "chunks", "held", "held_rest", "hpos", "key", "projection", "raw", "state")

    def __init__(
        self,
        projection: TaxLotsProjection,
        state: State,
        key: BookKey,
        base: int,
        raw: list[Any],
        held: list[list[Any]] | None = None,
        held_rest: int = 0,
    ) -> None:
        self.projection, self.state, self.key = projection, state, key
        self.base, self.raw = base, raw
        self.held = held or []
        self.hpos = [int(v[POSITION]) for v in self.held]
        self.held_rest = held_rest
        self.chunks: dict[int, list[Any]] = {}

    def next_lot(self, p: int, end: int) -> tuple[int, list[Any]] | None:
        base = self.base
        limit = min(end, base)
        if p < limit:
            hpos = self.hpos
            if hpos and p <= hpos[-1]:
                j = bisect_left(hpos, p)
                if j == 0 and p < hpos[0]:  # drawn on since: in the journal
                    found = self._scan(p, min(hpos[0], limit))
                    if found is not None:
                        return found
                if hpos[j] < limit:  # no acquisition between the held lots
                    v = self.held[j]
                    return hpos[j], [*v[:12], v[8], v[9], hpos[j]]  # whole
                p = limit
            elif hpos:
                p = max(p, self.held_rest)  # none between the window and its rest
            if p < limit:
                found = self._scan(p, limit)
                if found is not None:
                    return found
                p = limit
        return self._scan(max(p, base), end) if end > base else None

    def _scan(self, p: int, end: int) -> tuple[int, list[Any]] | None:
        """The first acquisition at a position in `[p, end)`, read from the entries."""
        base = self.base
        while p < end:
            if p >= base:
                v = self.raw[p - base]
            else:
                n, j = divmod(p, CHUNK)
                entries = self.chunks.get(n)
                if entries is None:
                    journal = self.projection.journal
                    if not self.state.knows(journal, (*self.key, _chunk(n))):
                        # the next ones with it, in one query: a draw reads on as it needs
                        ahead = range(n, min(n + READ_AHEAD, base // CHUNK))
                        self.state.prefetch(journal, {(*self.key, _chunk(m)) for m in ahead})
                    row = self.projection._chunk_row(self.state, self.key, n)
                    entries = self.chunks[n] = _loaded(row[3])
                v = entries[j]
            if v[5] in _ACQUIRED:
                return p, [*lot_of(Entry.from_json(v)).to_json(), p]
            p += 1
        return None
