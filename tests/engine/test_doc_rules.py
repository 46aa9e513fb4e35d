"""docs/engine.md's table of risk rules is `engine.risk.rules.RULES`: every rule, in
the order their results are recorded, with its version (`(vN)`, none for 1). Nothing
held the table to the code (helper s27-docs). Only the text is read."""

from __future__ import annotations

import re
from pathlib import Path

from engine.risk.rules import RULES

DOC = Path(__file__).resolve().parents[2] / "docs" / "engine.md"


def test_the_rule_table_is_the_rules_in_order_with_their_versions() -> None:
    section = DOC.read_text().split("\n## Risk rules\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([A-Z_]+)`(?: \(v(\d+)\))? \|", section, flags=re.M)
    documented = [(rule_id, int(version or 1)) for rule_id, version in rows]
    code = [(r.RULE_ID, r.RULE_VERSION) for r in RULES]  # type: ignore[attr-defined]
    assert documented == code
