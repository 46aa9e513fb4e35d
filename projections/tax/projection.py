"""The `tax_lots` projection: `TaxLotBook` folded from the log into PostgreSQL.

Each wallet (account) and asset has a `books` row (its open lots) and a journal (every
entry, in `Entry.key` order: acquisition or disposal time, event id, leg). The
topics it reads (orders, transfers, accounts) are interleaved in no fixed order, by a
rebuild as by live batches, so the fold may not depend on arrival order: an entry that
sorts after the journal's last is applied to the open lots; one that sorts before (a
deposit on accounts.events read after a later sale on orders.events) is put in its place
and the book is folded again from its journal, and every row it derives written again.
The derived rows are one per lot (`lots`), one per disposal (`disposals`, its lot slices
as jsonb: a refold may slice it differently, and a row per slice could not be taken back)
and one per withdrawal: the same set of rows whatever the order. `disposal_slices` is the
view with a row per slice (Form 8949's columns).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import orjson

from projections.framework import Key, Located, Projection, SkipEvent, State, Table, WriteMode
from projections.tax.book import Outcome, TaxLotBook
from projections.tax.entries import (
    ACQUISITIONS,
    DISPOSALS,
    Entry,
    Kind,
    from_deposit,
    from_fill,
    from_withdrawal,
)
from projections.tax.money import DEFAULT_USD_ASSETS, EXACT, ZERO
from schemas.registry import event_types_for
from schemas.topics import Topic

_HANDLES = ("Fill", "DepositReceived", "TransferRequested", "TransferSettled")
_TOPICS = (Topic.ORDERS, Topic.TRANSFERS, Topic.ACCOUNTS)


CHUNK = 32
"""Entries per `journal` row: appending rewrites one row of at most this many, not the
whole history; a refold (an entry older than the book's last) reads every chunk. The
incomplete last chunk is the `books` row's tail, which a batch reads and writes whole
for every book it touches: 256 (fold version 1, migration 0130's comment) made a
small live batch pay for up to 256 entries a book (bench_tax_lots `--per-batch 100
--live`: ~175 against ~100 us an event with 32; 16 no better, docs/benchmarks.md)."""


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
        ("account", "asset", "open_lots", "entry_count", "last_key", "tail"),
        ("account", "asset"),
        WriteMode.UPSERT,
        stateful=True,
    )
    journal = Table(
        "journal",
        ("account", "asset", "chunk", "entries"),
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
    )  # fmt: skip
    disposals = Table(
        "disposals",
        (
            "event_id", "leg", "account", "asset", "kind", "disposed_at", "ref", "quantity",
            "proceeds_usd", "proceeds_reason", "unmatched_quantity", "slices",
        ),
        ("event_id", "leg"),
        WriteMode.UPSERT,
    )  # fmt: skip
    withdrawals = Table(
        "withdrawals",
        (
            "account", "transfer_id", "asset", "quantity", "withdrawn_at", "event_id",
            "unmatched_quantity", "slices",
        ),
        ("account", "transfer_id"),
        WriteMode.UPSERT,
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
    migrations = ("0130_proj_tax_lots.sql",)
    fold_version = 2
    """2: journal chunks of 32 entries (`CHUNK`), not 256: the same lots, disposals and
    withdrawals, other `journal` rows and `books` tails."""
    partition_local = True  # every table is per account, the key of its three topics
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
            state.put(self.deposit_ids, (*key, d["event_id"]), key)
            entries = from_deposit(d, self.usd_assets)
        else:
            entries = self._transfer(state, item)
        for e in entries:
            self._journal(state, e)

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
        state.put(
            self.transfer_requests, (*cur[:4], "SETTLED", d["event_id"], d["occurred_at"]), key
        )
        return from_withdrawal(d, str(cur[2]), Decimal(str(cur[3])), self.usd_assets)

    def _chunks(self, state: State, account: str, asset: str, full: int) -> list[Entry]:
        """The journal's `full` chunks (read one by one: only a refold needs them)."""
        out: list[Entry] = []
        for n in range(full):
            row = state.get(self.journal, (account, asset, _chunk(n)))
            if row is None:
                raise SkipEvent(f"the journal of {account} {asset} lacks chunk {n}")
            out += [Entry.from_json(v) for v in _loaded(row[3])]
        return out

    def _journal(self, state: State, e: Entry) -> None:
        """Fold `e` into its book: on the open lots if it comes after every entry the
        book has (the book's row alone is read and written, and a `journal` chunk once
        `CHUNK` entries are complete), else by folding the book's whole journal again with
        `e` in its place (every chunk read, those from `e`'s on written again)."""
        key = (e.account, e.asset)
        cur = state.get(self.books, key)
        count = 0 if cur is None else int(cur[3])
        full = count // CHUNK
        last = None if cur is None else tuple(_loaded(cur[4]))
        if last is None or e.key > last:
            lots = self._append(state, e, [] if cur is None else _loaded(cur[2]))
            # the journal's entries from number `offset` on (as JSON: only a refold
            # needs them as entries); complete chunks are written from `begin`
            raw = [*([] if cur is None else _loaded(cur[5])), e.to_json()]
            offset = begin = full * CHUNK
            last = e.key
        else:
            journal = [*self._chunks(state, e.account, e.asset, full)]
            journal += [Entry.from_json(v) for v in _loaded(cur[5])]  # type: ignore[index]
            if any(x.key == e.key for x in journal):
                raise SkipEvent(f"{e.event_id}/{e.leg} is already in the book of {key}")
            at = bisect_left(journal, e.key, key=lambda x: x.key)
            journal.insert(at, e)
            book = TaxLotBook()
            for x in journal:
                self._emit(state, book.apply(x))
            lots = book.to_json(e.account, e.asset)
            raw, offset, begin = [x.to_json() for x in journal], 0, at // CHUNK * CHUNK
        whole = (offset + len(raw)) // CHUNK * CHUNK  # complete chunks end here
        for n in range(begin // CHUNK, whole // CHUNK):
            ck = (e.account, e.asset, _chunk(n))
            state.put(self.journal, (*ck, raw[n * CHUNK - offset : (n + 1) * CHUNK - offset]), ck)
        # the jsonb values stay lists until the batch's last row of the book is written
        # (`store`, `bulkload` render it once): rendering them here cost every event
        # O(open lots + tail) (bench_tax_lots, docs/benchmarks.md, session 25)
        state.put(
            self.books,
            (e.account, e.asset, lots, count + 1, list(last), raw[whole - offset :]),
            key,
        )

    def _append(self, state: State, e: Entry, lots: list[list[Any]]) -> list[list[Any]]:
        """`e`, later than every entry of its book, applied to the book's open lots (as
        JSON), which it returns: a new lot goes last (it sorts after every lot), and a
        draw reads only the lots it takes from (a prefix) into a `TaxLotBook`."""
        book = TaxLotBook()
        if e.kind in ACQUISITIONS:
            o = book.apply(e)
            self._emit(state, o)
            return [*lots, *book.to_json(e.account, e.asset)]
        held, k = ZERO, 0
        while k < len(lots) and held < e.quantity:
            held = EXACT.add(held, Decimal(lots[k][12]))  # its remaining units
            k += 1
        book.load(e.account, e.asset, lots[:k])
        self._emit(state, book.apply(e))
        return [*book.to_json(e.account, e.asset), *lots[k:]]

    def _emit(self, state: State, o: Outcome) -> None:
        e = o.entry
        for lot in ((o.opened,) if o.opened is not None else ()) + o.drawn:
            state.put(
                self.lots,
                (
                    lot.lot_id, lot.account, lot.asset, lot.acquired_at, lot.event_id, lot.leg,
                    lot.kind.value, lot.ref, lot.quantity, lot.basis, lot.basis_reason,
                    lot.covered, lot.remaining, lot.remaining_basis,
                ),
            )  # fmt: skip
        slices = _json([s.to_json() for s in o.slices])
        if e.kind in DISPOSALS:
            state.put(
                self.disposals,
                (
                    e.event_id, e.leg, e.account, e.asset, e.kind.value, e.at, e.ref,
                    e.quantity, e.usd, e.reason, o.unmatched, slices,
                ),
            )  # fmt: skip
        elif e.kind is Kind.WITHDRAWAL:
            state.put(
                self.withdrawals,
                (e.account, e.ref, e.asset, e.quantity, e.at, e.event_id, o.unmatched, slices),
            )
