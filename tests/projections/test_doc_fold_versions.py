"""docs/projections.md's *Fold versions* paragraph gives each projection's version as
the code has it: it said `balances` 5 while listing what version 6 changed (bf46da9;
helper s27-docs). Only the text is read."""

from __future__ import annotations

import re
from pathlib import Path

from projections.core import PROJECTIONS

DOC = Path(__file__).resolve().parents[2] / "docs" / "projections.md"


def test_the_documented_fold_versions_are_the_codes() -> None:
    text = DOC.read_text()
    paragraph = text.split("**Fold versions**", 1)[1].split("\n\n", 1)[0]
    versions = paragraph.split("Versions:", 1)[1].split("every\nother projection 1")[0]
    documented = {n: int(v) for n, v in re.findall(r"`(\w+)`\s(\d+)\s\(", versions)}
    assert "every\nother projection 1" in paragraph
    assert {"orders", "balances", "tax_lots"} <= set(documented), documented
    code = {n: p.fold_version for n, p in PROJECTIONS.items()}
    assert documented == {n: v for n, v in code.items() if v != 1}, (documented, code)


def test_each_version_lists_its_changes_up_to_itself() -> None:
    """`balances` 5 (2: ..., 6: ...): the last change listed is the version given."""
    paragraph = DOC.read_text().split("**Fold versions**", 1)[1].split("\n\n", 1)[0]
    versions = paragraph.split("Versions:", 1)[1]
    for name, version, body in re.findall(r"`(\w+)`\s(\d+)\s\(((?:[^()]|\([^()]*\))*)\)", versions):
        changes = [int(n) for n in re.findall(r"(?:^|; )(\d+): ", body.replace("\n", " "))]
        if changes:  # `accounts` 2 (what version 2 changed) names no number
            assert max(changes) == int(version), (name, version, changes)
