"""`make demo` stage: a Form 8949 summary for one of the engine stage's accounts, from the
`tax_lots` projection (caught up by the projections stage before it).

What `tradetape tax form8949 --account A --year Y` prints, summed: rows per box and each
box's totals. It refuses as the command does (`check_ready`: the projection behind the
log, degraded or with quarantined events), which fails the demo.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from decimal import Decimal

from deploy.settings import Settings
from projections.tax.cli import check_ready, load
from projections.tax.forms import Disposal, Form8949Row, exceptions, form8949, totals
from streams.travel_rule.demo import demo_accounts


def _money(v: Decimal | None) -> str:
    return "blank" if v is None else f"{v:,.2f}"


def choose(
    accounts: Sequence[tuple[str, list[Disposal]]],
) -> tuple[str, int, list[Disposal], list[Form8949Row]] | None:
    """The account and year with the most rows on the form (the first account, the
    latest year of equals): the engine stage's fills carry the replayed market's times
    (its capture's year) and its deposits the time they were made, so a sale of
    deposited units can precede its lot and go on no form (NO_BASIS), and which account
    sold what depends on the run (the first account alone sometimes had no row)."""
    best: tuple[int, int, str, list[Disposal], list[Form8949Row]] | None = None
    for account, disposals in accounts:
        for year in sorted({int(d.disposed_at[:4]) for d in disposals}):
            rows = form8949(disposals, year)
            if best is None or (len(rows), year) > best[:2]:
                best = (len(rows), year, account, disposals, rows)
    if best is None:
        return None
    _n, year, account, disposals, rows = best
    return account, year, disposals, rows


def run(settings: Settings) -> list[str]:
    started = time.monotonic()
    accounts = demo_accounts(settings)
    if not accounts:
        raise RuntimeError("tax: the engine stage's accounts (DEMO-*) are not on accounts.events")
    check_ready(settings)
    chosen = choose([(a.account, load(settings, a.account)) for a in accounts])
    if chosen is None:
        raise RuntimeError("tax: the engine stage's accounts disposed of nothing")
    account, year, disposals, rows = chosen
    sums = totals(rows)
    lines = [
        f"tax: Form 8949 for {account}, tax year {year} (FIFO per wallet, USD; "
        f"`tradetape tax form8949 --account {account} --year {year}` prints every row)",
        "  (boxes G/J: short/long term, basis reported on the 1099-DA; H/K: not reported;"
        " docs/projections.md, tax lots)",
        f"  {'box':<4} {'rows':>5} {'proceeds':>16} {'cost basis':>16} {'gain or loss':>16}",
    ]
    for box, t in sums.items():
        n = sum(1 for r in rows if r.box == box)
        lines.append(
            f"  {box:<4} {n:>5} {_money(t['proceeds']):>16} {_money(t['cost_basis']):>16} "
            f"{_money(t['gain']):>16}"
        )
    apart = exceptions(disposals, year)
    lines.append(
        f"tax: {len(rows)} rows, {len(apart)} slices on no form (listed apart by the command);"
        f" stage took {time.monotonic() - started:.1f}s"
    )
    return lines
