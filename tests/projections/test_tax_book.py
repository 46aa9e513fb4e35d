"""TaxLotBook: FIFO lots per wallet and asset, exact USD basis, the forms' boxes.

A worked example computed by hand (docs/projections.md, "tax_lots"), the holding-period
boundaries (29 February included), and properties over any history: quantity and basis
are conserved, lots are drawn first in first out, no lot goes negative, and the order
entries arrive in does not matter."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from projections.tax.book import NO_BASIS, Lot, Outcome, TaxLotBook
from projections.tax.entries import Entry, Kind, from_deposit, from_fill, from_withdrawal
from projections.tax.forms import Disposal, exceptions, form1099da, form8949, totals
from projections.tax.holding import Term, anniversary, box, term
from projections.tax.money import EXACT, ZERO, cents, total
from tests.projections.taxfacts import TaxTape

D = Decimal


def _entries(tape_items: list[object]) -> list[Entry]:
    out: list[Entry] = []
    for item in tape_items:
        if isinstance(item, tuple):  # a withdrawal: (request, settlement)
            req, done = item
            p = req.data["payload"]
            out += from_withdrawal(done.data, p["asset"], D(p["amount"]))
        elif item.data["event_type"] == "Fill":  # type: ignore[attr-defined]
            out += from_fill(item.data)  # type: ignore[attr-defined]
        else:
            out += from_deposit(item.data)  # type: ignore[attr-defined]
    return out


def _disposals(outcomes: list[Outcome]) -> list[Disposal]:
    return [
        Disposal(o.entry.account, o.entry.asset, o.entry.kind.value, o.entry.at, o.entry.event_id,
                 o.entry.leg, o.entry.ref, tuple(s.to_json() for s in o.slices))
        for o in outcomes
        if o.entry.kind in (Kind.SALE, Kind.FEE)
    ]  # fmt: skip


def _history() -> list[object]:
    t = TaxTape()
    return [
        t.trade("2025-03-01", "BUY", "1", "80000", fee="40"),  # lot A: basis 80,040
        t.deposit("2025-06-10", "BTC", "0.5"),  # lot B: basis unknown
        t.trade("2026-01-15", "BUY", "0.4", "90000.50", fee="0.001", fee_asset="BTC"),  # C
        t.trade("2026-03-01", "SELL", "0.6", "100000", fee="30"),  # A: short (anniversary)
        t.trade("2026-03-02", "SELL", "0.6", "100000"),  # rest of A long; B short
        t.withdraw("2026-05-01", "BTC", "0.1"),  # 0.1 of B leaves the wallet
        t.trade("2026-07-01", "SELL", "0.5", "50000"),  # rest of B, then 0.3 of C
        t.trade("2026-08-01", "SELL", "1", "50000"),  # rest of C, 0.901 beyond: NO_BASIS
        t.deposit("2026-02-01", "ETH", "1"),
        t.trade("2026-09-01", "SELL", "0.5", "3000", inst="ETH/EURC"),  # no USD value
    ]


def test_a_worked_form_8949() -> None:
    book = TaxLotBook()
    outcomes = book.fold(_entries(_history()))
    rows = form8949(_disposals(outcomes), 2026)
    got = [(r.box, r.description, r.date_acquired, r.date_sold, r.proceeds, r.cost_basis, r.gain)
           for r in rows]  # fmt: skip
    assert got == [
        # covered (bought 2026-01-15 with basis 0.4 * 90,000.50 = 36,000.20 for 0.399 BTC)
        ("G", "0.3 BTC", "2026-01-15", "2026-07-01", D("15000.00"), D("27067.82"), D("-12067.82")),
        ("G", "0.099 BTC", "2026-01-15", "2026-08-01", D("4950.00"), D("8932.38"), D("-3982.38")),
        # lot A, bought 2025-03-01: sold on its anniversary, short term, 0.6 of 80,040
        ("H", "0.6 BTC", "2025-03-01", "2026-03-01", D("59970.00"), D("48024.00"), D("11946.00")),
        # the deposit: basis unknown to the broker (blank), short term
        ("H", "0.2 BTC", "2025-06-10", "2026-03-02", D("20000.00"), None, None),
        # the rest of lot A, the day after the anniversary: long term
        ("K", "0.4 BTC", "2025-03-01", "2026-03-02", D("40000.00"), D("32016.00"), D("7984.00")),
        # the deposit's rest, held more than a year (2025-06-10 to 2026-07-01)
        ("K", "0.2 BTC", "2025-06-10", "2026-07-01", D("10000.00"), None, None),
    ]
    t = totals(rows)
    assert t["G"] == {
        "proceeds": D("19950.00"),
        "cost_basis": D("36000.20"),
        "gain": D("-16050.20"),
    }
    assert t["H"]["cost_basis"] is None and t["H"]["proceeds"] == D("79970.00")
    # Exceptions: the sale beyond what the wallet held, the ETH sold for EURC.
    ex = exceptions(_disposals(outcomes), 2026)
    assert [(e.asset, e.units, e.date_sold, e.reason.split(":")[0]) for e in ex] == [
        ("BTC", D("0.901"), "2026-08-01", NO_BASIS),
        ("ETH", D("0.5"), "2026-09-01", "no USD value for ETH/EURC"),
    ]
    # Nothing left of BTC; the ETH deposit half left; the EURC received is a lot of
    # unknown basis (1,500 EURC).
    assert book.open_lots("W1", "BTC") == []
    eth, eurc = book.open_lots("W1", "ETH"), book.open_lots("W1", "EURC")
    assert [x.remaining for x in eth] == [D("0.5")]
    assert [(x.remaining, x.basis, x.covered) for x in eurc] == [(D("1500.0"), None, False)]


def test_the_1099da_reports_basis_for_covered_lots_only() -> None:
    rows = form1099da(_disposals(TaxLotBook().fold(_entries(_history()))), 2026)
    by = {(r.box_1d_acquired, r.box_1e_sold): r for r in rows}
    covered = by[("2026-01-15", "2026-07-01")]
    assert (covered.box_1g_basis, covered.box_2_basis_reported, covered.box_9_noncovered) == (
        D("27067.82"), True, False
    )  # fmt: skip
    old = by[("2025-03-01", "2026-03-02")]
    assert (old.box_1g_basis, old.box_2_basis_reported, old.box_9_noncovered) == (None, False, True)
    assert old.box_6_term == "LONG" and old.box_1f_proceeds == D("40000.00")
    assert all(r.box_1a_dti == "" for r in rows)  # no DTI is made up
    assert len(rows) == 6


def test_a_year_takes_only_its_sales() -> None:
    disposals = _disposals(TaxLotBook().fold(_entries(_history())))
    assert form8949(disposals, 2025) == [] and exceptions(disposals, 2025) == []


def test_holding_period_boundaries() -> None:
    assert term(date(2025, 3, 1), date(2026, 3, 1)) is Term.SHORT
    assert term(date(2025, 3, 1), date(2026, 3, 2)) is Term.LONG
    assert anniversary(date(2024, 2, 29)) == date(2025, 2, 28)
    assert term(date(2024, 2, 29), date(2025, 2, 28)) is Term.SHORT
    assert term(date(2024, 2, 29), date(2025, 3, 1)) is Term.LONG
    # held across 29 February 2028: the anniversary is the same date
    assert term(date(2027, 3, 1), date(2028, 3, 1)) is Term.SHORT
    assert term(date(2027, 2, 28), date(2028, 2, 29)) is Term.LONG
    assert [box(c, t) for c in (True, False) for t in Term] == ["G", "J", "H", "K"]


def test_a_leap_day_lot_in_the_book() -> None:
    t = TaxTape()
    items: list[object] = [
        t.trade("2024-02-29", "BUY", "10", "100", inst="SOL/USDC"),
        t.trade("2025-02-28", "SELL", "4", "150", inst="SOL/USDC"),
        t.trade("2025-03-01", "SELL", "6", "150", inst="SOL/USDC"),
    ]
    rows = form8949(_disposals(TaxLotBook().fold(_entries(items))), 2025)
    assert [(r.box, r.date_sold, r.cost_basis, r.gain) for r in rows] == [
        ("H", "2025-02-28", D("400.00"), D("200.00")),
        ("K", "2025-03-01", D("600.00"), D("300.00")),
    ]


def test_fees_and_usd_legs() -> None:
    t = TaxTape()
    # a fee in a third asset: the trade's value is unknown, the fee units are a disposal
    e = from_fill(t.trade("2026-02-01", "BUY", "1", "100", inst="SOL/USDC", fee="0.1",
                          fee_asset="ETH").data)  # fmt: skip
    assert [(x.asset, x.kind, x.quantity, x.usd) for x in e] == [
        ("SOL", Kind.PURCHASE, D("1"), None),
        ("ETH", Kind.FEE, D("0.1"), None),
    ]
    assert e[0].reason == "no USD value for the fee in ETH"
    # a sale's base-asset fee: more units leave, the proceeds are the notional
    e = from_fill(t.trade("2026-02-01", "SELL", "1", "100", inst="SOL/USDC", fee="0.01",
                          fee_asset="SOL").data)  # fmt: skip
    assert [(x.kind, x.quantity, x.usd) for x in e] == [(Kind.SALE, D("1.01"), D("100"))]
    # USDC bought for EURC: EURC disposed of, its proceeds the USDC received less the fee
    e = from_fill(t.trade("2026-02-01", "BUY", "100", "0.9", inst="USDC/EURC", fee="1").data)
    assert [(x.asset, x.kind, x.quantity, x.usd) for x in e] == [
        ("EURC", Kind.SALE, D("90.0"), D("99"))
    ]
    # USDC in and out: cash, no lots
    assert from_deposit(t.deposit("2026-02-01", "USDC", "5").data) == []


def test_cents_round_half_up_and_only_there() -> None:
    assert cents(D("0.005")) == D("0.01") and cents(D("0.015")) == D("0.02")
    assert cents(D("-0.005")) == D("-0.01")
    assert cents(D("27067.819548872180451127819548872")) == D("27067.82")


# --------------------------------------------------------------------------- properties
_ACCOUNTS = ("W1", "W2")
_ASSETS = ("BTC", "ETH")
_QTY = st.integers(1, 5_000).map(lambda n: D(n).scaleb(-3))
_USD = st.one_of(st.none(), st.integers(0, 10_000_000).map(lambda n: D(n).scaleb(-2)))


@st.composite
def _journal(draw: st.DrawFn) -> list[Entry]:
    n = draw(st.integers(1, 40))
    out = []
    for i in range(n):
        kind = draw(st.sampled_from(list(Kind)))
        usd = None if kind is Kind.WITHDRAWAL else draw(_USD)
        day_ = draw(st.integers(0, 900))
        at = date.fromordinal(date(2025, 1, 1).toordinal() + day_).isoformat()
        out.append(
            Entry(
                f"{at}T00:00:{draw(st.integers(0, 59)):02d}.000000Z",
                f"e{i:04d}",
                "base",
                draw(st.sampled_from(_ACCOUNTS)),
                draw(st.sampled_from(_ASSETS)),
                kind,
                draw(_QTY),
                usd,
                None if usd is not None else "unknown",
                f"r{i}",
            )
        )
    return out


def _check(entries: list[Entry]) -> None:
    book = TaxLotBook()
    lots: dict[str, Lot] = {}
    drawn_qty: dict[str, Decimal] = {}
    drawn_basis: dict[str, Decimal] = {}
    for e in sorted(entries, key=lambda x: x.key):
        before = book.open_lots(e.account, e.asset)
        o = book.apply(e)
        if o.opened is not None:
            lots[o.opened.lot_id] = o.opened
            continue
        matched = [s for s in o.slices if s.lot_id is not None]
        # FIFO: the lots drawn are the first of the queue, in its order
        assert [s.lot_id for s in matched] == [x.lot_id for x in before[: len(matched)]]
        # every lot drawn but the last is used up; the units add up to the entry's
        assert all(s.quantity == x.remaining for s, x in zip(matched[:-1], before, strict=False))
        assert total(s.quantity for s in o.slices) == e.quantity
        # beyond the holdings only when every lot was used up
        held = total(x.remaining for x in before)
        assert o.unmatched == max(ZERO, EXACT.subtract(e.quantity, held))
        if e.kind is not Kind.WITHDRAWAL and e.usd is not None:
            assert total(s.proceeds or ZERO for s in o.slices) == e.usd
        for s in matched:
            assert s.lot_id is not None
            drawn_qty[s.lot_id] = EXACT.add(drawn_qty.get(s.lot_id, ZERO), s.quantity)
            if s.basis is not None:
                drawn_basis[s.lot_id] = EXACT.add(drawn_basis.get(s.lot_id, ZERO), s.basis)
        after = book.open_lots(e.account, e.asset)
        assert all(x.remaining > 0 for x in after)  # never a negative (or empty) lot
        assert [x.order for x in after] == sorted(x.order for x in after)
    open_ = {x.lot_id: x for k in book.keys() for x in book.open_lots(*k)}
    for lid, lot in lots.items():
        left = open_[lid].remaining if lid in open_ else ZERO
        # quantity: acquired = open + disposed + withdrawn
        assert lot.quantity == EXACT.add(left, drawn_qty.get(lid, ZERO))
        if lot.basis is not None:  # basis likewise, to the digit
            left_b = open_[lid].remaining_basis if lid in open_ else ZERO
            assert left_b is not None
            assert lot.basis == EXACT.add(left_b, drawn_basis.get(lid, ZERO))


@settings(max_examples=300, deadline=None)
@given(_journal())
def test_quantity_and_basis_are_conserved_fifo(entries: list[Entry]) -> None:
    _check(entries)


@settings(max_examples=100, deadline=None)
@given(_journal(), st.randoms(use_true_random=False))
def test_the_order_entries_arrive_in_does_not_matter(entries: list[Entry], rnd: object) -> None:
    shuffled = list(entries)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    a, b = TaxLotBook(), TaxLotBook()
    assert a.fold(entries) == b.fold(shuffled)
    assert a.lots == b.lots


def test_small_quantities_print_as_plain_decimals_on_the_forms() -> None:
    """A quantity below 0.000001 is written positionally, as everywhere on the wire
    (`schemas.types.format_decimal`): str(Decimal) would print 0.0000005 BTC as `5E-7`."""
    from projections.tax.cli import render

    t = TaxTape()
    tape: list[object] = [
        t.trade("2026-02-01", "BUY", "0.000001", "100000"),
        t.trade("2026-02-02", "SELL", "0.0000005", "100000"),
        t.trade("2026-02-03", "SELL", "0.000001", "100000"),  # 0.0000005 beyond: NO_BASIS
    ]
    disposals = _disposals(TaxLotBook().fold(_entries(tape)))
    assert [r.description for r in form8949(disposals, 2026)] == [
        "0.0000005 BTC",
        "0.0000005 BTC",
    ]
    for form in ("8949", "1099da"):
        for fmt in ("table", "csv", "json"):
            text, n_ex = render(form, fmt, "W1", 2026, disposals)
            assert "E-" not in text and "0.0000005" in text, (form, fmt, text)
            assert n_ex == 1
