"""Every bench/ entry point runs both as `python -m bench.NAME` (the form docs/benchmarks.md
quotes) and as `python bench/NAME.py`. The script form put bench/ first on the path, not
the repository's root: `bench.*` and `tests.*` did not import (ModuleNotFoundError), and
the project's packages came from wherever the virtualenv's editable install points, not
necessarily this checkout. Only `--help` is run: nothing is started."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENTRY_POINTS = sorted(
    p.stem for p in (ROOT / "bench").glob("*.py") if 'if __name__ == "__main__":' in p.read_text()
)


def test_the_entry_points_are_found() -> None:
    assert {"bench_engine", "bench_projections", "bench_signer"} <= set(ENTRY_POINTS)


@pytest.mark.parametrize("form", ["script", "module"])
@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_help_runs_in_both_forms(name: str, form: str, tmp_path: Path) -> None:
    if form == "script":  # from any directory
        args, cwd = [str(ROOT / "bench" / f"{name}.py")], tmp_path
    else:
        args, cwd = ["-m", f"bench.{name}"], ROOT
    proc = subprocess.run(
        [sys.executable, *args, "--help"], cwd=cwd, capture_output=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    assert proc.stdout.startswith(b"usage: "), proc.stdout[:500]


def test_make_bench_lists_every_entry_point() -> None:
    """`make bench` runs `python -m bench`: before bench/__main__.py it failed with
    "'bench' is a package and cannot be directly executed". It lists the benchmarks and
    how to run one; it runs none."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench"], cwd=ROOT, capture_output=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    listed = {line.split()[0] for line in proc.stdout.decode().splitlines()[1:]}
    assert listed == set(ENTRY_POINTS) - {"__main__"}, listed
    assert b"python -m bench.NAME" in proc.stdout
