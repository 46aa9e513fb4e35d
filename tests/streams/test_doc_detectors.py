"""docs/surveillance.md's detector table is the code's: every detector of
`all_detectors()`, by name, with its version (the alert id derives from it). Nothing
held the table to the code (helper s27-docs). Only the text is read."""

from __future__ import annotations

import re
from pathlib import Path

from streams.detectors import all_detectors

DOC = Path(__file__).resolve().parents[2] / "docs" / "surveillance.md"


def test_the_detector_table_has_every_detector_at_its_version() -> None:
    text = DOC.read_text().split("| Detector (version) |", 1)[1].split("\n\n", 1)[0]
    documented = {n: int(v) for n, v in re.findall(r"^\| `(\w+)` \((\d+)\) \|", text, re.M)}
    code = {d.NAME: d.VERSION for d in all_detectors()}
    assert documented == code
