"""The demo's Form 8949 stage picks an account whose sales go on the form."""

from __future__ import annotations

from typing import Any

from projections.tax.demo import choose
from projections.tax.forms import Disposal


def _sale(account: str, when: str, n: int, exception: str | None) -> Disposal:
    s: dict[str, Any] = {
        "row_id": f"{account}-{n}", "lot_id": None if exception else f"lot-{n}",
        "quantity": "0.1", "acquired_at": None if exception else "2024-01-02T00:00:00.000000Z",
        "basis": None if exception else "5000", "proceeds": "6000", "covered": False,
        "term": None if exception else "SHORT", "box": None if exception else "H",
        "exception": exception,
    }  # fmt: skip
    return Disposal(account, "BTC", "SALE", when, f"e-{account}-{n}", "base", f"f-{n}", (s,))


def test_the_account_with_rows_on_the_form_not_the_first() -> None:
    """The first demo account sold deposited units whose deposit (stamped when made) came
    after the replayed market's sales: every slice NO_BASIS, no row on the form; the
    stage printed "0 rows" and the demo failed, depending on the run."""
    first = [_sale("DEMO-1", "2024-03-01T00:00:00.000000Z", i, "NO_BASIS") for i in range(16)]
    second = [_sale("DEMO-2", "2024-03-01T00:00:00.000000Z", i, None) for i in range(3)]
    chosen = choose([("DEMO-1", first), ("DEMO-2", second)])
    assert chosen is not None
    account, year, _disposals, rows = chosen
    assert (account, year, len(rows)) == ("DEMO-2", 2024, 3)


def test_the_year_with_most_rows_and_nothing_when_nothing_was_sold() -> None:
    sales = [_sale("DEMO-1", f"{y}-03-01T00:00:00.000000Z", i, None) for i, y in
             enumerate([2024, 2025, 2025])]  # fmt: skip
    chosen = choose([("DEMO-1", sales)])
    assert chosen is not None and chosen[1] == 2025 and len(chosen[3]) == 2
    assert choose([("DEMO-1", [])]) is None
