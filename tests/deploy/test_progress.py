"""Commands that run for minutes say so at their start and show progress on stderr
(`deploy.progress`): `simulate surveillance` (the README's `--minutes 5` ran five
minutes without a word), `marketdata load` (a capture at its own pace, the default: ~6
minutes of silence for the reference one) and `marketdata simulate --speed`. The progress
interval is set to 0 here, so every record writes its line (real broker)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.progress import clock, duration
from deploy.settings import Settings
from tests.engine.workers import REPO, cli_env

pytestmark = pytest.mark.integration


def _run(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    script = (
        "import sys\n"
        "import deploy.progress\n"
        "deploy.progress.EVERY_SECONDS = 0.0\n"
        "from deploy.cli import main\n"
        f"sys.argv = ['tradetape', *{list(args)!r}]\n"
        "main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **cli_env(settings)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_simulate_surveillance(env: Settings, tmp_path: Path) -> None:
    labels = str(tmp_path / "labels.json")
    done = _run(env, "simulate", "surveillance", "--minutes", "1", "--speed", "30",
                "--labels", labels)  # fmt: skip
    lines = done.stderr.splitlines()
    assert lines[0] == (
        "simulate surveillance: 1 min of scenario paced at 30x real time, about 2 s"
        " (--speed N goes N times faster); a progress line every 0 s"
    ), lines[:3]
    sent = [x for x in lines if " inputs sent, scenario time " in x]
    assert sent and sent[-1].startswith("simulate surveillance: "), lines[-5:]
    n, _, total = sent[-1].split(": ", 1)[1].split(" inputs")[0].partition(" of ")
    assert n == total, sent[-1]  # the last input's line
    assert any(x.startswith("published ") for x in lines), lines[-3:]


def _capture(path: Path, seconds: int) -> Path:
    """A Binance capture of one bookTicker message a second."""
    lines = []
    for i in range(seconds):
        data = {"u": i + 1, "s": "BTCUSDT", "b": "99", "B": "1", "a": "101", "A": "2"}
        message = {"stream": "btcusdt@bookTicker", "data": data}
        lines.append(f"{1_723_161_255_000_000_000 + i * 1_000_000_000} {json.dumps(message)}")
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


def test_marketdata_load(env: Settings, tmp_path: Path) -> None:
    capture = _capture(tmp_path / "capture.jsonl.gz", 150)
    done = _run(env, "marketdata", "load", str(capture), "--instrument", "BTC/USDC",
                "--speed", "1000")  # fmt: skip
    lines = done.stderr.splitlines()
    assert lines[0] == (
        f"marketdata load: replaying {capture} paced at 1000x its own time (a capture's"
        " minute takes 0.06 s; --as-fast-as-possible sends it at once); a progress line"
        " every 0 s"
    ), lines[:3]
    sent = [x for x in lines if x.startswith("marketdata load: line ")]
    assert sent[-1] == "marketdata load: line 150, 150 records sent, capture time 2:29", sent[-3:]


def test_marketdata_simulate_paced(env: Settings) -> None:
    done = _run(env, "marketdata", "simulate", "--minutes", "0.2", "--speed", "60")
    lines = done.stderr.splitlines()
    assert lines[0] == (
        "marketdata simulate: 0.2 min of BTC/USDC paced at 60x real time, about 0 s"
    ), lines[:3]
    sent = [x for x in lines if x.startswith("marketdata simulate: ") and "records sent" in x]
    assert sent and sent[-1].endswith(" of 0:12"), lines[-5:]


def test_durations_and_clocks_read_as_a_person_would() -> None:
    assert [duration(s) for s in (2, 89.6, 300, 5399, 5400)] == [
        "2 s", "90 s", "5.0 min", "90.0 min", "1.5 h",
    ]  # fmt: skip
    assert [clock(s) for s in (0, 59.9, 61, 3600, 3725)] == [
        "0:00", "0:59", "1:01", "1:00:00", "1:02:05",
    ]  # fmt: skip
