"""`tradetape producer revoke` and `producer rotate` on the real broker (session 18).

Register a producer, rest an order, revoke it: the engine cancels the resting order
(`PRODUCER_REVOKED`) and rejects the producer's next signed intent; `rotate` then brings
it back with a new key file (0600), which the engine accepts. Before, there was no
revocation: the order rested on and the key kept working.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from deploy.settings import Settings
from schemas.topics import Topic
from tests.engine.helpers import produce, quote, running_worker, wait_for, world
from tests.engine.workers import cli_env, run_cli

pytestmark = pytest.mark.integration


def _ok(env: Settings, *args: str) -> str:
    done = run_cli(cli_env(env), *args)
    assert done.returncode == 0, (args, done.stderr[-2000:])
    return done.stdout


def _publish(env: Settings, path: Path, producer: str, coid: str, limit: str) -> dict[str, Any]:
    line = {
        "event_type": "OrderIntent",
        "payload": {
            "producer_id": producer,
            "strategy_id": "s",
            "account": "RV1",
            "client_order_id": coid,
            "instrument": "BTC/USDC",
            "side": "BUY",
            "order_type": "LIMIT",
            "quantity": "0.1",
            "limit_price": limit,
            "time_in_force": "GTC",
        },
    }
    path.write_text(json.dumps(line) + "\n")
    printed = [json.loads(x) for x in _ok(env, "publish", str(path)).splitlines()]
    assert len(printed) == 1, printed
    answer: dict[str, Any] = printed[0]
    return answer


def test_revoke_cancels_the_resting_order_and_rejects_then_rotate_restores(
    env: Settings, tmp_path: Path
) -> None:
    producer = f"rv-{env.topic_prefix.strip('.')}"
    intents = tmp_path / "intent.jsonl"
    with running_worker(env):
        world(env, ["RV1"], producer_id="setup")
        added = json.loads(_ok(env, "producer", "add", producer, "--accounts", "RV1"))
        produce(env, [quote()])
        first = _publish(env, intents, producer, "rv-1", "59900")  # rests below the bid
        assert first["outcome"] == "APPROVED", first["reasons"]
        revoked = json.loads(_ok(env, "producer", "revoke", producer, "--reason", "key leaked"))
        assert revoked["revoked"] is True

        def canceled(events: list[Any]) -> bool:
            return any(
                e.event_type == "OrderCanceled" and e.payload.reason == "PRODUCER_REVOKED"
                for e in events
            )

        orders = wait_for(env, Topic.ORDERS, canceled)
        ended = [e for e in orders if e.event_type == "OrderCanceled"]
        assert [e.payload.account for e in ended] == ["RV1"], ended
        assert ended[0].payload.reason == "PRODUCER_REVOKED"
        again = _publish(env, intents, producer, "rv-2", "59900")
        assert again["outcome"] == "PRODUCER_REVOKED", again
        rotated = json.loads(_ok(env, "producer", "rotate", producer))
        key_file = Path(rotated["key_file"])
        assert key_file == Path(added["key_file"])
        assert rotated["previous_key"] == added["public_key"] != rotated["public_key"]
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        # other tests add their producers' keys to the same directory: only this one's count
        mine = sorted(p.name for p in key_file.parent.iterdir() if p.name.startswith(producer))
        assert mine == [key_file.name]  # the rotation's `.next` file was moved over it
        back = _publish(env, intents, producer, "rv-3", "59900")
        assert back["outcome"] == "APPROVED", back
