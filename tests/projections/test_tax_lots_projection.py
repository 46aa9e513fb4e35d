"""The tax_lots projection: the same rows whatever order its three topics are read in,
and the rows the hand-computed example (test_tax_book) gives."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from projections.framework import Located, State
from projections.tax import projection
from projections.tax.book import TaxLotBook
from projections.tax.entries import Entry
from tests.projections.folding import fold
from tests.projections.taxfacts import TaxTape
from tests.projections.test_tax_book import _history

D = Decimal


def _flat(items: list[object]) -> list[Located]:
    out: list[Located] = []
    for i in items:
        out += list(i) if isinstance(i, tuple) else [i]  # type: ignore[list-item]
    return out


def _by_topic(items: list[Located]) -> dict[str, list[Located]]:
    lanes: dict[str, list[Located]] = {}
    for i in items:
        lanes.setdefault(i.topic, []).append(i)
    return lanes


def _rows(items: list[Located], batches: int = 1) -> dict[str, dict[Any, Any]]:
    st_ = State()
    size = max(1, len(items) // batches)
    for n in range(0, len(items), size):
        _s, bad = fold("tax_lots", items[n : n + size], st_)
        assert not bad, bad
    return {t: dict(sorted(rows.items())) for t, rows in sorted(st_.dirty.items())}


def _interleave(items: list[Located], rnd: random.Random) -> list[Located]:
    """Another order a consumer may see: each topic's order kept, topics merged anyhow."""
    lanes = [list(reversed(v)) for _k, v in sorted(_by_topic(items).items())]
    out: list[Located] = []
    while any(lanes):
        lane = rnd.choice([x for x in lanes if x])
        out.append(lane.pop())
    return out


def test_the_worked_example_as_rows() -> None:
    rows = _rows(_flat(_history()))
    disposals = rows["disposals"]
    # four BTC sales and one ETH sale (for EURC, which it acquires: a lot)
    assert sorted((r[3], r[4]) for r in disposals.values()) == [("BTC", "SALE")] * 4 + [
        ("ETH", "SALE")
    ]
    lots = rows["lots"]
    assert sorted((r[2], r[6], D(r[12])) for r in lots.values()) == [
        ("BTC", "DEPOSIT", 0), ("BTC", "PURCHASE", 0), ("BTC", "PURCHASE", 0),
        ("ETH", "DEPOSIT", D("0.5")), ("EURC", "PURCHASE", 1500),
    ]  # fmt: skip
    [w] = rows["withdrawals"].values()
    assert (w[2], w[3], w[6]) == ("BTC", D("0.1"), D(0))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 5), st.sampled_from([1, 2, 3, 32, 256]))
def test_any_interleaving_of_the_topics_gives_the_same_rows(
    seed: int, batches: int, chunk: int
) -> None:
    """Also with journal chunks of 1, 2, 3 and 256 entries: a refold reads them all and
    writes those from the new entry's on."""
    was, projection.CHUNK = projection.CHUNK, chunk
    try:
        _same_rows(seed, batches)
    finally:
        projection.CHUNK = was


def _same_rows(seed: int, batches: int) -> None:
    items = _flat(_history())
    t = TaxTape()
    t.n = 100  # more events: two wallets, a deposit read after sales it precedes
    items += _flat([
        t.trade("2026-02-01", "SELL", "0.2", "70000", acct="W2"),
        t.deposit("2026-01-01", "BTC", "1", acct="W2"),
        t.trade("2026-04-01", "SELL", "0.3", "80000", acct="W2"),
        t.withdraw("2026-04-02", "BTC", "0.6", acct="W2"),
    ])  # fmt: skip
    reference = _rows(items)
    assert _rows(_interleave(items, random.Random(seed)), batches) == reference


def test_a_deposit_read_after_a_later_sale_is_folded_in_its_place() -> None:
    t = TaxTape()
    sale = t.trade("2026-02-01", "SELL", "0.2", "70000")
    dep = t.deposit("2026-01-01", "BTC", "1")
    rows = _rows([sale, dep])
    [d] = rows["disposals"].values()
    assert d[10] == D(0)  # nothing unmatched: the deposit came first in time
    assert rows == _rows([dep, sale])


def test_a_second_deposit_of_one_id_is_quarantined() -> None:
    t = TaxTape()
    dep = t.deposit("2026-01-01", "BTC", "1")
    again = t.deposit("2026-01-02", "BTC", "1")
    again.data["payload"]["deposit_id"] = dep.data["payload"]["deposit_id"]
    _s, bad = fold("tax_lots", [dep, again])
    assert len(bad) == 1 and "already credited" in bad[0].error


def test_a_batchs_rows_are_not_changed_by_the_next_one() -> None:
    """A book's open lots and journal stay lists between events (not rendered each
    time): a row once put is never changed in place, or a batch's rows, still to be
    written (a rebuild freezes them after the batch), would change under a later one."""
    items = _flat(_history())
    st_, kept = State(), []
    for n in range(0, len(items), 3):
        _s, bad = fold("tax_lots", items[n : n + 3], st_)
        assert not bad, bad
        for rows in st_.dirty.values():
            kept += [(row, orjson.dumps(row, default=str)) for row in rows.values()]
    assert [orjson.dumps(r, default=str) for r, _ in kept] == [text for _, text in kept]


def test_a_books_row_holds_at_most_32_journal_entries() -> None:
    """A batch reads and writes a touched book's row whole: its journal tail is kept
    short (chunks of 32, fold version 2), or small live batches pay for up to 256
    entries a book (docs/benchmarks.md, session 25)."""
    t = TaxTape()
    items = [t.trade(f"2026-03-01T10:{m:02d}", "BUY", "0.01", "60000") for m in range(40)]
    rows = _rows(items)
    [book] = rows["books"].values()
    assert (book[3], len(book[5])) == (40, 8)
    assert sorted(k[2] for k in rows["journal"]) == ["000000000"]
    assert projection.TaxLotsProjection.fold_version >= 2  # 2: journal chunks of 32


def _applied(items: list[Located], batch: int, monkeypatch: pytest.MonkeyPatch) -> int:
    """How many entries the books applied, folding `items` in batches of `batch`."""
    calls = 0
    real = TaxLotBook.apply

    def counted(self: TaxLotBook, e: Entry) -> Any:
        nonlocal calls
        calls += 1
        return real(self, e)

    monkeypatch.setattr(TaxLotBook, "apply", counted)
    st_ = State()
    for n in range(0, len(items), batch):
        _s, bad = fold("tax_lots", items[n : n + batch], st_)
        assert not bad, bad
    monkeypatch.setattr(TaxLotBook, "apply", real)
    return calls


def _month_of_trades(t: TaxTape, days: int) -> tuple[list[Located], list[Located]]:
    """A purchase every hour for `days` days and a deposit at each day's noon."""
    trades = [
        t.trade(f"2026-03-{d:02d}T{h:02d}:00", "BUY", "0.01", "60000")
        for d in range(1, days + 1)
        for h in range(24)
    ]
    deposits = [t.deposit(f"2026-03-{d:02d}T12:30", "BTC", "0.5") for d in range(1, days + 1)]
    return trades, deposits


def test_late_entries_refold_from_their_chunk_not_the_journals_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A rebuild reads accounts.events' deposits ahead of the fills they fall between:
    almost every fill is then late. Folded again from the journal's start each time,
    that is quadratic (session 25: a 1M-event rebuild did not finish in 10 minutes);
    from the earliest late entry's chunk, once a batch, it stays near the entry count."""
    trades, deposits = _month_of_trades(TaxTape(), 20)  # 480 purchases, 20 deposits
    in_order = sorted(trades + deposits, key=lambda i: i.data["occurred_at"])
    deposits_first = deposits + trades
    entries = len(in_order)
    assert _applied(in_order, 50, monkeypatch) == entries  # nothing late: once each
    late = _applied(deposits_first, 50, monkeypatch)
    # each batch of 50 purchases goes before the later deposits (<= 20) and refolds
    # from its chunk's start (<= 32 before it): about 10 * (50 + 20 + 32) at most
    assert entries < late <= 10 * (50 + 20 + 32) + len(deposits), late
    assert _rows(deposits_first, 10) == _rows(in_order)


def _then_live(
    before: list[Located], late: Located, many: list[tuple[str, Any]] | None = None
) -> tuple[dict[str, dict[Any, Any]], State, list[tuple[str, Any]]]:
    """Fold `before`, then `late` in a batch of its own that loads the rows it was not
    given one at a time, as a live batch does: (the rows before, that batch's state, the
    rows it loaded, by table and key). With `many`, the batch can also load several
    rows in one query (`State.prefetch`), and `many` records each such query: its table
    and its keys' last parts."""
    st_ = State()
    _s, bad = fold("tax_lots", before, st_)
    assert not bad
    kept = {name: dict(rows) for name, rows in st_.dirty.items()}
    read: list[tuple[str, Any]] = []

    def loader(table: Any, key: Any) -> Any:
        read.append((table.name, key))
        return kept[table.name].get(key)

    def loads(table: Any, keys: set[Any]) -> dict[Any, Any]:
        assert many is not None
        many.append((table.name, [k[-1] for k in sorted(keys)]))
        return {k: kept[table.name][k] for k in keys if k in kept[table.name]}

    again = State(loader=loader, many=None if many is None else loads)
    _s, bad = fold("tax_lots", [late], again)
    assert not bad
    return kept, again, read


def test_a_late_entry_reads_and_rewrites_only_the_chunks_it_needs() -> None:
    """The journal rows before a late entry's chunk are not written, and read only back
    to the opening's first open lot: a live batch loads a chunk it was not given one
    query at a time."""
    t = TaxTape()
    days = []
    for d in range(1, 5):  # 24 purchases a day, all sold at 23:30: 25 entries a day
        days += [t.trade(f"2026-03-0{d}T{h:02d}:00", "BUY", "0.01", "60000") for h in range(24)]
        days.append(t.trade(f"2026-03-0{d}T23:30", "SELL", "0.24", "61000"))
    # journal position 86 (day 4's 11th purchase is 85): chunk 2 (64-95), whose opening's
    # first open lot is day 3's first purchase (50, chunk 1); chunk 0 is not needed
    late = t.trade("2026-03-04T10:30", "SELL", "0.015", "61000")
    kept, again, read = _then_live(days, late)
    assert sorted(k[2] for k in again.dirty["journal"]) == ["000000002"]
    assert sorted(k[2] for name, k in read if name == "journal") == ["000000001", "000000002"]
    [book] = again.dirty["books"].values()
    assert book[3] == 101 and len(book[5]) == 5
    merged = {**kept["disposals"], **again.dirty["disposals"]}
    assert merged == _rows(sorted([*days, late], key=lambda i: i.data["occurred_at"]))["disposals"]


@st.composite
def _tapes(draw: st.DrawFn) -> list[Located]:
    """Purchases, sales, deposits and withdrawals of one or two wallets at any times."""
    t = TaxTape()
    out: list[object] = []
    for _ in range(draw(st.integers(1, 40))):
        when = f"2026-03-{draw(st.integers(1, 9)):02d}T{draw(st.integers(0, 23)):02d}:00"
        acct = draw(st.sampled_from(["W1", "W2"]))
        qty = str(D(draw(st.integers(1, 30))) / 10)
        kind = draw(st.sampled_from(["BUY", "BUY", "SELL", "deposit", "withdraw"]))
        if kind in ("BUY", "SELL"):
            out.append(t.trade(when, kind, qty, "60000", acct=acct))
        elif kind == "deposit":
            out.append(t.deposit(when, "BTC", qty, acct=acct))
        else:
            out.append(t.withdraw(when, "BTC", qty, acct=acct))
    return _flat(out)


def _in_time(items: list[Located]) -> list[Located]:
    """The tape in its entries' time order (a request stays before its settlement)."""

    def when(i: Located) -> tuple[str, int]:
        p = i.data["payload"]
        return (str(p.get("traded_at") or i.data["occurred_at"]), i.offset)

    return sorted(items, key=when)


@settings(max_examples=150, deadline=None)
@given(_tapes(), st.integers(0, 2**32 - 1), st.integers(1, 6), st.sampled_from([1, 2, 3, 5]))
def test_any_tape_read_in_any_order_and_batches_folds_as_in_time_order(
    items: list[Located], seed: int, batches: int, chunk: int
) -> None:
    """Every row (lots, disposals, withdrawals, and the books' and journal's state) as
    the tape folded in one batch in time order: refolds from a chunk's opening, with
    lots drawn in part at the chunk's start and lots drawn after it, leave nothing
    stale."""
    was, projection.CHUNK = projection.CHUNK, chunk
    try:
        assert _rows(_interleave(items, random.Random(seed)), batches) == _rows(_in_time(items))
    finally:
        projection.CHUNK = was


def test_a_wallet_that_keeps_its_lots_open_refolds_without_reading_its_history() -> None:
    """Every lot stays open (purchases only): a late entry's chunk opens with the first
    lot ever bought, yet the refold reads no chunk before its own: the lots still open
    are the book's row's, only those drawn on since would be read back (live, each
    chunk read is a query, and every late entry of such a wallet read all of them)."""
    t = TaxTape()
    days = [
        t.trade(f"2026-03-0{d}T{h:02d}:00", "BUY", "0.01", "60000")
        for d in range(1, 5)
        for h in range(24)
    ]  # 96 entries: chunks 0, 1 and 2 complete
    late = t.trade("2026-03-03T23:30", "SELL", "0.015", "61000")  # position 72: chunk 2
    kept, again, read = _then_live(days, late)
    assert [k[2] for name, k in read if name == "journal"] == ["000000002"]
    merged = {**kept["lots"], **again.dirty["lots"]}
    assert merged == _rows(sorted([*days, late], key=lambda i: i.data["occurred_at"]))["lots"]


def _live_rows(items: list[Located], batches: int) -> dict[str, dict[Any, Any]]:
    """`items` folded as live batches do: each into a new `State`, which loads the rows
    it was not given (a book's, a journal chunk) one at a time from those put before."""
    kept: dict[str, dict[Any, Any]] = {}
    size = max(1, len(items) // batches)
    for n in range(0, len(items), size):
        st_ = State(loader=lambda table, key: kept.get(table.name, {}).get(key))
        _s, bad = fold("tax_lots", items[n : n + size], st_)
        assert not bad, bad
        for name, rows in st_.dirty.items():
            kept.setdefault(name, {}).update(rows)
    return {t: dict(sorted(rows.items())) for t, rows in sorted(kept.items())}


_DERIVED = ("lots", "disposals", "withdrawals")


@settings(max_examples=150, deadline=None)
@given(_tapes(), st.integers(0, 2**32 - 1), st.integers(1, 6), st.sampled_from([1, 2, 3]))
def test_lots_read_back_from_the_journal_draw_as_if_all_were_at_hand(
    items: list[Located], seed: int, batches: int, chunk: int
) -> None:
    """A books row keeps only its first open lots (fold version 4); with chunks of 1-3
    entries a draw soon reaches the ones left in the journal. The lots, disposals and
    withdrawals are those of a fold that had every open lot at hand (chunks longer than
    the tape: the window is then the whole list), for any interleaving and live batches."""
    was = projection.CHUNK
    try:
        projection.CHUNK = 10**6
        whole = _rows(_in_time(items))
        projection.CHUNK = chunk
        live = _live_rows(_interleave(items, random.Random(seed)), batches)
    finally:
        projection.CHUNK = was
    assert {t: live.get(t, {}) for t in _DERIVED} == {t: whole.get(t, {}) for t in _DERIVED}


def _hourly_buys(t: TaxTape, n: int) -> list[Located]:
    """`n` purchases of 0.01 BTC an hour apart from 1 March: `n` open lots."""
    return [
        t.trade(f"2026-03-{1 + h // 24:02d}T{h % 24:02d}:00", "BUY", "0.01", "60000")
        for h in range(n)
    ]


def test_a_books_row_keeps_its_first_open_lots_and_reads_the_rest_back() -> None:
    """200 purchases, all open: the row keeps those acquired before the end of the chunk
    after the first open lot's (64), not 200 (a live batch read and wrote every one,
    session 26). A sale of 150 of them reads the rest back from the journal, chunk by
    chunk, and leaves the row with the 64 from its new first lot's chunk on."""
    t = TaxTape()
    buys = _hourly_buys(t, 200)
    rows = _rows(buys)
    [book] = rows["books"].values()
    assert (len(book[2]), book[3], book[7]) == (64, 200, 64)
    assert [lot[-1] for lot in book[2]] == list(range(64))
    sale = t.trade("2026-03-10T00:00", "SELL", "1.5", "61000")  # 150 lots: up to 149
    kept, again, read = _then_live(buys, sale)
    [book] = again.dirty["books"].values()
    # the first open lot is 150 (chunk 4, positions 128-159): the row keeps 150-191
    assert [lot[-1] for lot in book[2]] == list(range(150, 192)) and book[7] == 192
    assert sorted(k[2] for name, k in read if name == "journal") == [
        "000000002", "000000003", "000000004", "000000005",
    ]  # fmt: skip
    merged = {**kept["lots"], **again.dirty["lots"]}
    assert merged == _rows([*buys, sale])["lots"]
    assert sum(D(r[12]) == 0 for r in merged.values()) == 150


def test_a_batch_drawing_past_its_first_lots_chunk_loads_the_rest_in_one_query() -> None:
    """Live, each journal chunk a batch reads is a query of its own, and reading a book's
    rest back one chunk at a time was most of the process's waits: the chunk a draw
    past the first open lot's chunk will read is loaded with the others, ahead, in one
    query; a batch that draws within that chunk loads none."""
    t = TaxTape()
    buys = _hourly_buys(t, 200)
    within = t.trade("2026-03-10T00:00", "SELL", "0.3", "61000")  # lots 0-29: chunk 0
    many: list[tuple[str, Any]] = []
    _kept, _again, read = _then_live(buys, within, many)
    assert many == [] and [k for name, k in read if name == "journal"] == []
    past = t.trade("2026-03-10T00:00", "SELL", "0.4", "61000")  # lots 0-39: into chunk 1
    kept, again, read = _then_live(buys, past, many)
    assert many == [("journal", ["000000002"])]
    assert [k for name, k in read if name == "journal"] == []  # nothing one at a time
    merged = {**kept["lots"], **again.dirty["lots"]}
    assert merged == _rows([*buys, past])["lots"]


def test_a_sale_reading_far_past_the_books_row_reads_the_journal_ahead() -> None:
    """A sale of 150 lots when the row holds 64: the chunks after the one loaded ahead
    for the batch come in one query (`READ_AHEAD`), not one query each."""
    t = TaxTape()
    buys = _hourly_buys(t, 200)
    sale = t.trade("2026-03-10T00:00", "SELL", "1.5", "61000")
    many: list[tuple[str, Any]] = []
    kept, again, read = _then_live(buys, sale, many)
    assert many == [
        ("journal", ["000000002"]), ("journal", ["000000003", "000000004", "000000005"]),
    ]  # fmt: skip
    assert [k for name, k in read if name == "journal"] == []
    merged = {**kept["lots"], **again.dirty["lots"]}
    assert merged == _rows([*buys, sale])["lots"]
