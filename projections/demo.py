"""The projections stage of `make demo`: catch up, show what is there, prove a rebuild.

Runs every projector until it has folded what the earlier stages produced, prints row
counts and a positions excerpt (read through the read-only role), then rebuilds one
projection from offset 0 and shows its checksum equals the live one.
"""

from __future__ import annotations

import polars as pl
import psycopg

from deploy.settings import Settings
from projections import query
from projections.checksum import checksum
from projections.core import PROJECTIONS
from projections.projector import Projector
from projections.rebuild import rebuild

EXCERPT_ROWS = 5

SHOWN: dict[str, tuple[str, ...]] = {
    "positions": (
        "account", "instrument", "quantity", "avg_cost", "realized_pnl", "fees_quote",
        "fill_count",
    ),
    "pnl": (
        "account", "instrument", "quantity", "avg_cost", "mark_price", "realized_pnl_net",
        "unrealized_pnl", "total_pnl",
    ),
}  # fmt: skip
"""The columns the demo shows of these queries: all of them did not fit, and polars
elided the middle ones (`…`), realized PnL among them (the newcomer's audit)."""

CENTS = frozenset(
    ("avg_cost", "mark_price", "realized_pnl", "fees_quote", "realized_pnl_net",
     "unrealized_pnl", "total_pnl")
)  # fmt: skip
"""Prices and money in quote currency, shown to the cent: an average cost of
61832.78713542750156022467235 and a PnL cut at `-177.9484959784210526315789477…` were
unreadable. `tradetape query` shows them exact."""


def readable(frame: pl.DataFrame, columns: tuple[str, ...]) -> pl.DataFrame:
    """`columns` of `frame`, the decimal ones of `CENTS` rounded to two places."""
    shown = frame.select(columns)
    return shown.with_columns(
        pl.col(c).round(2).cast(pl.Decimal(38, 2))
        for c in columns
        if c in CENTS and isinstance(shown.schema[c], pl.Decimal)
    )


def excerpt(title: str, frame: pl.DataFrame, note: str = "") -> list[str]:
    """A titled table of the first `EXCERPT_ROWS` rows, indented, without polars' `shape:`
    line and column types (a title of "(8 rows)" over "shape: (5, 4)" read as a
    contradiction). As wide as its values, like `query._table`'s tables: polars' default
    width folded a 28-digit decimal over lines."""
    shown = min(frame.height, EXCERPT_ROWS)
    count = f"{frame.height} row{'' if frame.height == 1 else 's'}" + (
        f", the first {shown}" if shown < frame.height else ""
    )
    with pl.Config(
        tbl_hide_dataframe_shape=True,
        tbl_hide_column_data_types=True,
        tbl_width_chars=-1,
        tbl_cols=-1,
    ):
        table = str(frame.head(EXCERPT_ROWS))
    return [f"{title} ({count}{note}):", *("  " + line for line in table.splitlines())]


def run(settings: Settings) -> list[str]:
    lines: list[str] = []
    for name, projection in PROJECTIONS.items():
        with Projector(settings, projection) as proj:
            total = proj.catch_up()
        lines.append(
            f"projection {name:12} +{total.applied} events folded"
            + (f", {total.quarantined} quarantined" if total.quarantined else "")
        )
    with psycopg.connect(settings.dsn) as conn:
        for name, projection in PROJECTIONS.items():
            digest, counts = checksum(conn, projection)
            rows = ", ".join(f"{t}={c}" for t, c in sorted(counts.items()))
            lines.append(f"  {name:12} {rows}  sha256 {digest[:16]}")
        live = checksum(conn, PROJECTIONS["balances"])
    cents = "; prices and money to the cent, exact in `tradetape query NAME`"
    for title in ("positions", "pnl"):
        frame = readable(query.frame(title, settings), SHOWN[title])
        lines.extend(excerpt(title, frame, cents))
    lines.extend(excerpt("balances", query.frame("balances", settings)))
    accounts = query.frame("accounts", settings).select(
        "account", "status", "owner_id", "kyc_level", "open_aml_flags"
    )
    lines.extend(excerpt("accounts", accounts))
    rebuilt = rebuild(settings, PROJECTIONS["balances"])
    same = (rebuilt.checksum, rebuilt.counts) == live
    lines.append(
        f"rebuild balances from offset 0: {rebuilt.events} events, checksum "
        f"{rebuilt.checksum[:16]} {'== live (match)' if same else '!= live: MISMATCH ' + live[0][:16]}"
    )
    if not same:
        raise RuntimeError("rebuilt balances differ from the live projection")
    return lines
