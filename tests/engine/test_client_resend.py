"""The SDK and `tradetape publish` find the engine's answer to a resent intent.

A resend in a new envelope is answered with the original decision, byte for byte, under
the original's correlation id (docs/engine.md, *Idempotency*); matching answers only by the
new envelope's correlation id waited out the timeout (review helper-50, rev54 defect 4).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from deploy.settings import Settings
from engine import auth
from engine.client import IntentPublisher, intent_key
from schemas.events import OrderIntent, OrderType, RiskLimits, Side
from tests.engine.helpers import produce, quote, running_worker, world
from tests.engine.pure import Harness, decision
from tests.engine.workers import cli_env, run_cli


def _order(coid: str, qty: str = "0.01") -> OrderIntent:
    return OrderIntent(
        producer_id="strat1",
        strategy_id="s",
        account="ACC1",
        client_order_id=coid,
        instrument="BTC/USDC",
        side=Side.BUY,
        order_type=OrderType.MARKET,
        quantity=Decimal(qty),
    )


def test_the_sdk_digest_is_the_engines() -> None:
    """The SDK matches a resend by the digest the engine records in its decision: both
    must come out the same for orders and cancels (one function, `engine.auth`, and the
    processor must hand it the bytes it signed)."""
    h = Harness(RiskLimits(max_price_age_seconds=86400))
    h.quote(Decimal("60000"), Decimal("60001"))
    resting = h.order(Side.BUY, Decimal("0.01"), Decimal("59000"))
    steps: list[Callable[[], list[Any]]] = [
        lambda: resting,
        lambda: h.order(Side.BUY, Decimal("1.25"), Decimal("59000")),
        lambda: h.cancel(decision(resting).client_order_id),
    ]
    for step in steps:
        out = step()
        assert h.last_intent is not None
        engine_digest = decision(out).intent_digest
        key = intent_key(h.last_intent)
        assert key is not None and engine_digest is not None
        assert decision(out).client_order_id == key[2]
        assert key[3] == engine_digest


@pytest.mark.integration
def test_await_decision_and_publish_find_the_answer_to_a_resend(
    env: Settings, tmp_path: Path
) -> None:
    with running_worker(env):
        key = world(env, ["ACC1"])
        auth.write_private_key(auth.key_path(env.resolved_data_dir, "strat1"), key)
        produce(env, [quote()])
        pub = IntentPublisher(env, "strat1", key)
        try:
            ev1 = pub.publish(_order("resend-1"))
            d1 = pub.await_decision(ev1.correlation_id, 30)
            assert d1 is not None and d1.payload.outcome == "APPROVED"
            ev2 = pub.publish(_order("resend-1"))  # the same intent, a new envelope
            assert ev2.correlation_id != ev1.correlation_id
            d2 = pub.await_decision(ev2.correlation_id, 15)
            assert d2 is not None and d2.event_id == d1.event_id
            # other content under the decided id: its own rejection, not the original
            ev3 = pub.publish(_order("resend-1", "0.02"))
            d3 = pub.await_decision(ev3.correlation_id, 15)
            assert d3 is not None and d3.event_type == "IntentRejected"
            assert d3.payload.reason == "CLIENT_ORDER_ID_REUSED"
        finally:
            pub.close()
        # a fresh publisher (its watcher starts after the original decision) and the CLI
        fresh = IntentPublisher(env, "strat1", key)
        try:
            ev4 = fresh.publish(_order("resend-1"))
            d4 = fresh.await_decision(ev4.correlation_id, 15)
            assert d4 is not None and d4.event_id == d1.event_id
        finally:
            fresh.close()
        line = {
            "event_type": "OrderIntent",
            "payload": _order("resend-2").model_dump(mode="json", exclude={"signature"}),
        }
        path = tmp_path / "intents.jsonl"
        path.write_text(json.dumps(line) + "\n" + json.dumps(line) + "\n")
        done = run_cli(cli_env(env), "publish", str(path), "--wait", "15")
    assert done.returncode == 0, done.stderr[-2000:]
    printed = [json.loads(x) for x in done.stdout.splitlines()]
    assert [p["outcome"] for p in printed] == ["APPROVED", "APPROVED"]
    assert printed[0]["event_id"] != printed[1]["event_id"]
