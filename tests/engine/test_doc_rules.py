"""docs/engine.md's tables are the code's: the risk rules are `engine.risk.rules.RULES`
(every rule, in the order their results are recorded, with its version: `(vN)`, none
for 1), and *Modules* has a row for every module of engine/. Nothing held either table
to the code (helper s27-docs). Only the text is read."""

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


def test_the_modules_table_names_every_engine_module() -> None:
    """Every module of engine/ has a row in docs/engine.md's *Modules* (a row may name a
    subpackage, `engine/marketdata/`, or a sibling after a comma, `paper.py`), and every
    row names what exists."""
    section = DOC.read_text().split("\n## Modules\n", 1)[1].split("\n## ", 1)[0]
    cells = re.findall(r"^\| ([^|]+) \|", section, flags=re.M)[1:]
    named: set[str] = set()
    for cell in cells:
        where = ""
        for name in re.findall(r"`([^`]+)`", cell):
            path = name if name.startswith("engine/") else f"{where}{name}"
            where = path.rsplit("/", 1)[0] + "/"
            named.add(path)
    root = DOC.parents[1]
    assert not {p for p in named if not (root / p).exists()}, named
    modules = {
        str(p.relative_to(root))
        for p in (root / "engine").rglob("*.py")
        if p.name != "__init__.py" and "__pycache__" not in p.parts
    }
    missing = {
        m
        for m in modules
        if m not in named and not any(m.startswith(n) for n in named if n.endswith("/"))
    }
    assert not missing, f"docs/engine.md, Modules: no row for {sorted(missing)}"
