"""docs/architecture.md says what the tree holds: every package and subpackage of the
six top-level ones has its place in *Packages*, every path it names exists, and its
*Topics* table has every catalogue topic (`schemas/topics.py`) with the writers and
readers of the ACL roles (`deploy/acls.py`). Before session 27 it listed no topics and
left out market-data intake, the publisher SDK, the venues, the CLI and the settings
(helper s27-docs). Only the text is read; nothing runs."""

from __future__ import annotations

import re
from pathlib import Path

from deploy.acls import ROLES, Role, readers, writers
from schemas.topics import Topic

REPO = Path(__file__).resolve().parents[2]
ARCHITECTURE = REPO / "docs" / "architecture.md"
TOP = ("engine", "streams", "projections", "signer_ffi", "schemas", "deploy")


def _section(title: str) -> str:
    return ARCHITECTURE.read_text().split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_every_package_has_its_place() -> None:
    packages = sorted(
        f"{init.parent.relative_to(REPO)}/"
        for top in TOP
        for init in (REPO / top).rglob("__init__.py")
        if "__pycache__" not in init.parts
    )
    assert len(packages) > len(TOP), packages
    text = _section("Packages")
    missing = [p for p in packages if f"`{p}`" not in text]
    assert not missing, f"docs/architecture.md, Packages: say what {missing} hold"


MADE_AT_RUN_TIME = frozenset({".tradetape/"})
"""Paths the doc names that the stack makes when it first runs (the default data
directory): a fresh checkout has none of them."""


def test_every_path_it_names_exists() -> None:
    named = re.findall(r"`((?:[\w.-]+/)+[\w.-]*)`", ARCHITECTURE.read_text())
    assert len(named) > 40, named
    gone = sorted({p for p in named if not (REPO / p).exists() and p not in MADE_AT_RUN_TIME})
    assert not gone, f"docs/architecture.md names what is not there: {gone}"


def _table() -> dict[str, tuple[set[str], set[str]]]:
    rows = {}
    for line in _section("Topics").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = (
                {r for r in cells[1].split(", ") if r},
                {r for r in cells[2].split(", ") if r},
            )
    return rows


def test_the_topics_table_is_the_catalogue_and_the_acl_roles() -> None:
    table = _table()
    assert set(table) == {t.value for t in Topic}, (
        "docs/architecture.md, Topics: one row per topic of schemas/topics.py"
    )
    order = list(ROLES)

    def names(roles: frozenset[Role]) -> set[str]:
        return {r.value for r in order if r in roles}

    wrong = [
        f"{t.value}: table {table[t.value]}, deploy/acls.py ({names(writers(t))}, {names(readers(t))})"
        for t in Topic
        if table[t.value] != (names(writers(t)), names(readers(t)))
    ]
    assert not wrong, "\n".join(wrong)
