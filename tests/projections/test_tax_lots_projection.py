"""The tax_lots projection: the same rows whatever order its three topics are read in,
and the rows the hand-computed example (test_tax_book) gives."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from projections.framework import Located, State
from projections.tax import projection
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
    assert projection.TaxLotsProjection.fold_version == 2  # 2: journal chunks of 32
