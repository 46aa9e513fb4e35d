"""The fills table names the quote a paper fill took (`Fill.quote_id`, fold version 2):
best-execution review asks which displayed quote an execution was priced from."""

from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest

from deploy.settings import Settings
from projections import query
from projections.checksum import checksum
from projections.core import PROJECTIONS
from projections.projector import Projector
from projections.rebuild import rebuild
from schemas import new_event
from schemas.events import Fill
from schemas.events.orders import Liquidity, Side
from tests.projections.folding import T0, Tape, fold
from tests.projections.helpers import produce

QUOTE = "0190a0a0-0000-7000-8000-00000000beef"


def _fill(n: int, quote_id: str | None, **peaks: Decimal) -> Fill:
    return Fill(
        fill_id=f"f{n}", order_id="o1", account="ACC001", instrument="BTC/USDT", side=Side.BUY,
        quantity=Decimal("0.5"), price=Decimal("100"), fee=Decimal(0), fee_asset="USDT",
        liquidity=Liquidity.TAKER, venue="paper", venue_trade_id=f"t{n}", uti=f"U{n}",
        traded_at=T0, leaves_quantity=Decimal(0), quote_id=quote_id, **peaks,
    )  # fmt: skip


def test_a_fill_row_names_the_quote_it_took() -> None:
    fills = PROJECTIONS["fills"]
    assert fills.fold_version == 2  # 2: quote_id
    tape = Tape()
    taker = tape.ev(_fill(1, QUOTE, peak_equity=Decimal("1000"), peak_nav=Decimal("1.05")))
    public = tape.ev(_fill(2, None))
    st, bad = fold("fills", [taker, public])
    assert not bad
    columns = fills.table("fills").columns
    rows = {row[columns.index("fill_id")]: row for row in st.inserts["fills"].values()}
    assert rows["f1"][columns.index("quote_id")] == QUOTE
    assert rows["f2"][columns.index("quote_id")] is None  # a fill at a public print
    # The drawdown peaks are the risk engine's bookkeeping, not the execution's.
    assert not {"peak_equity", "peak_nav"} & set(columns)


@pytest.mark.integration
def test_quote_id_live_rebuilt_and_queried(env: Settings) -> None:
    """The live schema (migrated) and a rebuild hold it alike; the `fills` query shows it."""
    fills = PROJECTIONS["fills"]
    produce(
        env,
        [
            new_event(_fill(n, q), producer="engine", occurred_at=T0)
            for n, q in ((1, QUOTE), (2, None))
        ],
    )
    with Projector(env, fills) as proj:
        proj.catch_up()
    frame = query.frame("fills", env)
    assert dict(zip(frame["fill_id"], frame["quote_id"], strict=True)) == {"f1": QUOTE, "f2": None}
    with psycopg.connect(env.dsn) as conn:
        live = checksum(conn, fills)
    assert live[1] == {"fills": 2}
    rebuilt = rebuild(env, fills)
    assert (rebuilt.checksum, rebuilt.counts) == live
