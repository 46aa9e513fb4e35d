"""docs/operations.md's two tables of `TRADETAPE_*` variables say what deploy/settings.py
knows: every setting is in the settings table with its true default, every variable a
component reads itself (`OTHER_ENV`) is documented, and nothing documented is unknown to
the settings (it would be refused: `error: unknown environment variable`). Only the
text is read; nothing runs."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic_core import PydanticUndefined

from deploy.settings import OTHER_ENV, Settings, setting_env_names

REPO = Path(__file__).resolve().parents[2]
OPERATIONS = REPO / "docs" / "operations.md"
PER_ID = "TRADETAPE_SIGNER_PASSPHRASE_<id>"


def _tables() -> list[dict[str, str]]:
    """The variable tables of the runbook's *Settings* section, in order: each a mapping of
    variable name to its row's default cell (a row naming several variables, `A` / `B`,
    gives each its part of a default cell split the same way)."""
    section = OPERATIONS.read_text().split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    tables: list[dict[str, str]] = []
    previous_was_row = False
    for line in section.splitlines():
        is_row = line.startswith("| `TRADETAPE_")
        if is_row:
            if not previous_was_row:
                tables.append({})
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            names = re.findall(r"`(TRADETAPE_[A-Za-z0-9_<>]+)`", cells[0])
            defaults = cells[1].split(" / ")
            for i, name in enumerate(names):
                tables[-1][name] = defaults[i] if len(defaults) == len(names) else cells[1]
        previous_was_row = is_row
    return tables


def _documented_default(value: object) -> str:
    """A default as the runbook writes it."""
    if value is None:
        return "unset"
    if value == "":
        return "empty"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    return f"`{value}`"


def test_the_runbook_has_both_tables() -> None:
    tables = _tables()
    assert len(tables) == 2, [sorted(t) for t in tables]


def test_every_setting_is_in_the_settings_table_and_nothing_else_is() -> None:
    settings_table, components_table = _tables()
    extra = set(settings_table) - set(setting_env_names()) - {"TRADETAPE_CONFIG"}
    assert not extra, f"docs/operations.md documents as settings what is none: {extra}"
    missing = set(setting_env_names()) - set(settings_table)
    assert not missing, f"settings missing from docs/operations.md: {missing}"
    assert not set(components_table) & set(setting_env_names())


def test_every_variable_a_component_reads_is_documented_and_known() -> None:
    documented = {n for table in _tables() for n in table}
    missing = set(OTHER_ENV) - documented
    assert not missing, f"variables missing from docs/operations.md: {missing}"
    unknown = documented - set(OTHER_ENV) - set(setting_env_names()) - {PER_ID}
    assert not unknown, f"docs/operations.md documents variables nothing reads: {unknown}"


def test_every_settings_default_is_the_documented_one() -> None:
    """Settings whose default is a value (not computed, like the data directory, nor
    derived from other settings when unset, like the Kafka security protocol)."""
    table = _tables()[0]
    wrong = []
    for name, field in Settings.model_fields.items():
        if field.default is PydanticUndefined:
            continue  # a default_factory: described in words
        default = field.default
        if default is None and "(default: " in (field.description or ""):
            continue  # unset means derived from other settings, as the description says
        if hasattr(default, "get_secret_value"):
            default = default.get_secret_value()
        want = _documented_default(default)
        cell = table[f"TRADETAPE_{name.upper()}"]
        if not (cell == want or cell.startswith(want + " ")):
            wrong.append(f"TRADETAPE_{name.upper()}: documented {cell!r}, the code's {want!r}")
    assert not wrong, "\n".join(wrong)


def _defaults_read_in_code() -> dict[str, str]:
    """Variable -> the literal default the code reads it with: `os.environ.get("NAME",
    "default")` in the packages, `${NAME:-"default"}` in deploy/pick-python."""
    found: dict[str, str] = {}
    for package in ("engine", "streams", "projections", "signer_ffi", "deploy", "schemas"):
        for path in sorted((REPO / package).rglob("*.py")):
            for name, default in re.findall(
                r'environ\.get\(\s*"(TRADETAPE_\w+)",\s*"([^"]*)"\s*\)', path.read_text()
            ):
                found[name] = default
    pick = (REPO / "deploy" / "pick-python").read_text()
    found.update(re.findall(r'\$\{(TRADETAPE_\w+):-"([^"]*)"\}', pick))
    return found


def test_a_component_variables_default_is_the_one_the_code_reads() -> None:
    """The second table's defaults were not compared with anything: the code's literal
    defaults (`TRADETAPE_ENGINE_REPORT_SECONDS` "10", ...) must be the documented ones
    (helper s27-docs)."""
    read = _defaults_read_in_code()
    assert {"TRADETAPE_ENGINE_WORKER_ID", "TRADETAPE_PYTHON_CANDIDATES"} <= set(read), read
    table = _tables()[1]
    wrong = [
        f"{name}: documented {table.get(name)!r}, the code's `{default}`"
        for name, default in sorted(read.items())
        if table.get(name) != f"`{default}`"
    ]
    assert not wrong, "\n".join(wrong)


def test_every_variable_any_doc_names_is_known() -> None:
    """Beyond the runbook's tables: a `TRADETAPE_*` name in README.md or any doc's prose
    or examples is a setting or a component variable (a misspelled one in an example
    would be refused: `error: unknown environment variable`). A name ending in `_`
    (`TRADETAPE_SIGNER_PASSPHRASE_<id>`) is a family."""
    known = {*setting_env_names(), *OTHER_ENV}
    unknown = sorted(
        f"{doc.name}: {name}"
        for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
        for name in set(re.findall(r"TRADETAPE_[A-Z0-9_]*[A-Z0-9]\b", doc.read_text()))
        if name not in known and not re.fullmatch(r"TRADETAPE_SIGNER_PASSPHRASE_\d+", name)
    )
    assert not unknown, unknown
