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


def excerpt(title: str, frame: pl.DataFrame) -> list[str]:
    """A titled table of the first `EXCERPT_ROWS` rows, indented, without polars' `shape:`
    line and column types (a title of "(8 rows)" over "shape: (5, 4)" read as a
    contradiction). As wide as its values, like `query._table`'s tables: polars' default
    width folded a 28-digit decimal over lines."""
    shown = min(frame.height, EXCERPT_ROWS)
    count = f"{frame.height} rows" + (f", the first {shown}" if shown < frame.height else "")
    with pl.Config(
        tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True, tbl_width_chars=-1
    ):
        table = str(frame.head(EXCERPT_ROWS))
    return [f"{title} ({count}):", *("  " + line for line in table.splitlines())]


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
    for title, frame in (("positions", query.frame("positions", settings)),
                         ("pnl", query.frame("pnl", settings)),
                         ("balances", query.frame("balances", settings)),
                         ("accounts", query.frame("accounts", settings).select(
                             "account", "status", "owner_id", "kyc_level", "open_aml_flags"))):  # fmt: skip
        lines.extend(excerpt(title, frame))
    rebuilt = rebuild(settings, PROJECTIONS["balances"])
    same = (rebuilt.checksum, rebuilt.counts) == live
    lines.append(
        f"rebuild balances from offset 0: {rebuilt.events} events, checksum "
        f"{rebuilt.checksum[:16]} {'== live (match)' if same else '!= live: MISMATCH ' + live[0][:16]}"
    )
    if not same:
        raise RuntimeError("rebuilt balances differ from the live projection")
    return lines
