"""The CLI on the real broker: `producer add`, `admin`, `publish` print the decisions."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.settings import Settings
from schemas.topics import Topic
from tests.engine.helpers import produce, quote, running_worker, wait_for
from tests.engine.workers import REPO

pytestmark = pytest.mark.integration


def _cli(settings: Settings, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "deploy.cli_entry", *args],
        cwd=REPO,
        env=settings.child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_producer_add_admin_and_publish(env: Settings, tmp_path: Path) -> None:
    producer = f"cli-{env.topic_prefix.strip('.')}"
    with running_worker(env):
        _cli(env, "admin", "open-account", "K1", "--owner", "Kim")
        _cli(env, "admin", "kyc", "K1")
        _cli(env, "admin", "deposit", "K1", "USDC", "50000", "dep-k1")
        out = json.loads(_cli(env, "producer", "add", producer, "--accounts", "K1"))
        key_file = Path(out["key_file"])
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        wait_for(
            env,
            Topic.ACCOUNTS,
            lambda ev: any(
                e.event_type == "ProducerRegistered" and e.producer == "engine" for e in ev
            ),
        )
        produce(env, [quote()])
        base = {
            "producer_id": producer,
            "strategy_id": "s",
            "account": "K1",
            "instrument": "BTC/USDC",
            "side": "BUY",
            "quantity": "0.1",
        }
        lines = [
            {
                "event_type": "OrderIntent",
                "payload": {**base, "client_order_id": "k-1", "order_type": "MARKET"},
            },
            {
                "event_type": "KillSwitchEngaged",
                "payload": {"scope": "K1", "engaged_by": "admin", "reason": "test"},
            },
            {
                "event_type": "OrderIntent",
                "payload": {**base, "client_order_id": "k-2", "order_type": "MARKET"},
            },
        ]
        path = tmp_path / "intents.jsonl"
        path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
        printed = [json.loads(x) for x in _cli(env, "publish", str(path)).splitlines()]
    assert [p["outcome"] for p in printed] == ["APPROVED", "ACCEPTED", "REJECTED"]
    assert printed[2]["reasons"] == ["KILL_SWITCH_ENGAGED"]
