"""`query.write` to a file (`tradetape query --out`) writes UTF-8 whatever the process's
locale: it opened the file in the locale's encoding, so under an ASCII (or Latin-1)
locale a text cell with `€` raised a UnicodeEncodeError (a traceback, a file cut short),
and a Latin-1 one wrote the same result as other bytes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import sys
import polars as pl
from projections import query
df = pl.DataFrame({"a": ["\\u00e9\\u20ac\\U0001f600"]})
query.write(df, sys.argv[1], sys.argv[2])
"""


@pytest.mark.parametrize("fmt", ["csv", "json", "table"])
def test_a_file_is_utf8_under_an_ascii_locale(fmt: str, tmp_path: Path) -> None:
    out = tmp_path / f"out.{fmt}"
    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    res = subprocess.run(
        [sys.executable, "-c", SCRIPT, fmt, str(out)], env=env, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    assert "\u00e9\u20ac\U0001f600" in out.read_bytes().decode("utf-8")
