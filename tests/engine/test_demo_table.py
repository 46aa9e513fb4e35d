"""The demo's decision table shows every reason whole: the column was cut at 44
characters, so a rejection for three rules read `STALE_STATE,STABLECOIN_NOT_PERMITTED,
NO_REFE` (demo16)."""

from __future__ import annotations

import re
from collections import Counter

from engine.demo import decision_table


def test_a_long_reason_is_shown_whole_and_the_columns_stay_aligned() -> None:
    long = "STALE_STATE,STABLECOIN_NOT_PERMITTED,NO_REFERENCE_PRICE"
    lines = decision_table(
        Counter({("APPROVED ORDER", "-"): 258, ("REJECTED", long): 2, ("REJECTED", "X"): 1})
    )
    assert lines[0].split() == ["outcome", "reason", "count"]
    assert any(long in line for line in lines), lines
    assert len({len(line) for line in lines}) == 1, lines  # one width: aligned
    rows = [re.fullmatch(r"(.{18}) (.+?) +(\d+)", line) for line in lines[1:]]
    assert [(m.group(1).strip(), m.group(2), int(m.group(3))) for m in rows if m] == [
        ("APPROVED ORDER", "-", 258),
        ("REJECTED", long, 2),
        ("REJECTED", "X", 1),
    ]
