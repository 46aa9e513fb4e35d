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


def test_the_planted_bad_intents_and_each_reason_are_explained() -> None:
    """The newcomer's audit (helper-132), read as a compliance officer would: the table
    gave codes only (`REJECTED STALE_STATE,STABLECOIN_NOT_PERMITTED,NO_REFERENCE_PRICE`
    reads like a system fault), did not say which refusals the demo staged, nor what
    INTENT_REJECTED is beside REJECTED."""
    from engine.demo import BAD_AT, BAD_KINDS, OUTCOMES, planted_line, reason_examples

    line = planted_line(BAD_AT)
    assert line.startswith(f"engine: {len(BAD_AT)} of the intents are planted bad ones: ")
    for kind in set(BAD_AT.values()):
        n = list(BAD_AT.values()).count(kind)
        assert f"{n} {BAD_KINDS[kind]}" in line, (kind, line)
    assert "INTENT_REJECTED: refused before the risk rules" in OUTCOMES
    assert "REJECTED: failed pre-trade risk rules" in OUTCOMES
    lines = reason_examples(
        {
            "STABLECOIN_NOT_PERMITTED": "USDT is not on the allow-list ['EURC', 'USDC']",
            "STALE_STATE": "no reference price for BTC/USDT",
            "SELF_CROSS": "limit 61813.77 crosses the account's own resting buy " + "x" * 200,
        }
    )
    assert lines[0] == "reasons, one example each (the decision's own words):"
    assert lines[1].startswith("  SELF_CROSS                limit 61813.77 crosses the ")
    assert len(lines[1]) == 120 and lines[1].endswith("x…"), lines[1]  # cut, and says so
    assert lines[2] == (
        "  STABLECOIN_NOT_PERMITTED  USDT is not on the allow-list ['EURC', 'USDC']"
    )
    assert lines[3] == "  STALE_STATE               no reference price for BTC/USDT"
    assert max(len(x) for x in lines) <= 120 and reason_examples({}) == []
