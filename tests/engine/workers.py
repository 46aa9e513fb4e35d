"""Engine workers as real subprocesses (`tradetape run engine`), for kill -9 tests."""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

from deploy.settings import Settings
from engine.replay import REFERENCE_TOPICS
from engine.state import EngineState
from schemas.events import RiskLimits, RiskLimitsChanged
from schemas.topics import Topic
from tests.engine.helpers import admin, read_topic, send_admin

REPO = Path(__file__).resolve().parents[2]


def run_cli(
    env: dict[str, str],
    *args: str,
    timeout: float = 120,  # seconds, not money
) -> subprocess.CompletedProcess[str]:
    """`tradetape ARGS...` as a subprocess of this checkout, with `env` (TRADETAPE_*
    settings) over the test process's environment; output captured as text."""
    full = {**os.environ, "PYTHONPATH": str(REPO), **env}
    return subprocess.run(
        [sys.executable, "-m", "deploy.cli_entry", *args],
        cwd=REPO,
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def cli_env(settings: Settings) -> dict[str, str]:
    """The TRADETAPE_* settings that point a CLI subprocess at `settings`' broker,
    topics and data directory."""
    return {
        "TRADETAPE_KAFKA_PORT": str(settings.kafka_port),
        "TRADETAPE_TOPIC_PREFIX": settings.topic_prefix,
        "TRADETAPE_DATA_DIR": str(settings.resolved_data_dir),
    }


SNAPSHOTS_OFTEN = {
    "TRADETAPE_ENGINE_SNAPSHOT_EVERY": "150",
    "TRADETAPE_ENGINE_SNAPSHOT_SECONDS": "1",
}
"""Snapshotter settings for tests that want restarts and takeovers to start from slices."""


def rebuilds(log: Path) -> list[tuple[list[int], dict[int, str]]]:
    """Each rebuild a worker logged: the partitions and the snapshot slices it started from."""
    out = []
    for parts, slices in re.findall(
        r"rebuilt partitions \[([0-9, ]*)\].*?snapshot slices (none|\{[^}]*\})",
        log.read_text(errors="replace"),
    ):
        owned = [int(x) for x in parts.split(",") if x.strip()]
        used = {} if slices == "none" else {int(k): v for k, v in ast.literal_eval(slices).items()}
        out.append((owned, used))
    return out


def spawn(
    settings: Settings,
    wid: str,
    log: Path,
    extra_env: dict[str, str] | None = None,
    *,
    components: tuple[str, ...] = ("engine",),
    session: bool = False,
) -> subprocess.Popen[bytes]:
    """`tradetape run COMPONENT...` (an engine worker, the snapshotter, or a supervised
    group of several) as a subprocess; `session`: in a session of its own, like a terminal's
    foreground group (a supervisor's children have groups of their own, and get SIGTERM
    when it dies)."""
    env = settings.child_env(
        **{"TRADETAPE_ENGINE_WORKER_ID": wid, "TRADETAPE_LOG_LEVEL": "INFO", **(extra_env or {})}
    )
    fh = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "deploy.cli_entry", "run", *components],
        cwd=REPO,
        env=env,
        stdout=fh,
        stderr=subprocess.STDOUT,
        start_new_session=session,
    )


def stop(proc: subprocess.Popen[bytes], *, hard: bool = False) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL if hard else signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def generous_limits(settings: Settings) -> None:
    """Global limits loose enough that a long test's prices stay fresh and rates pass
    (sent again if refused on a stale view: `send_admin`)."""
    send_admin(
        settings,
        [
            admin(
                RiskLimitsChanged(
                    scope="*",
                    config_version=1,
                    changed_by="admin",
                    reason="test",
                    limits=RiskLimits(
                        max_price_age_seconds=3600,
                        max_orders_per_window=100_000,
                        max_open_orders=100_000,
                        max_position=Decimal("1000000"),
                        max_order_notional=Decimal("100000000"),
                    ),
                )
            )
        ],
    )


def check_exactly_once(settings: Settings, coids: set[str], dump_dirs: list[Path]) -> None:
    """Read the whole log: one decision per intent, no duplicate order or fill, and the
    workers' final positions equal the positions derived from the fills."""
    decisions = [
        e
        for e in read_topic(settings, Topic.DECISIONS, timeout=60)
        if e.event_type in ("RiskDecision", "IntentRejected")
    ]
    per_intent: dict[str, set[Any]] = {}
    for d in decisions:
        per_intent.setdefault(d.payload.client_order_id, set()).add(d.event_id)
    missing = coids - per_intent.keys()
    assert not missing, f"{len(missing)} intents without a decision, e.g. {sorted(missing)[:5]}"
    multi = {c: ids for c, ids in per_intent.items() if len(ids) != 1}
    assert not multi, f"intents with several decisions: {list(multi.items())[:3]}"
    orders = read_topic(settings, Topic.ORDERS, timeout=60)
    submitted = Counter(e.payload.order_id for e in orders if e.event_type == "OrderSubmitted")
    fills = Counter(e.payload.fill_id for e in orders if e.event_type == "Fill")
    ids = Counter(e.event_id for e in orders)
    assert max(submitted.values(), default=1) == 1, "an order was submitted twice"
    assert max(fills.values(), default=1) == 1, "a fill was recorded twice"
    assert max(ids.values(), default=1) == 1, "an order event is on the log twice"
    approved = {
        d.payload.order_id
        for d in decisions
        if d.event_type == "RiskDecision" and d.payload.order_id
    }
    parents = {
        e.payload.order_id
        for e in orders
        if e.event_type == "OrderSubmitted" and e.payload.parent_order_id is None
    }
    assert approved == parents, "approved decisions and submitted orders disagree"
    # Positions derived from the fills alone...
    derived: dict[str, Decimal] = {}
    for e in orders:
        if e.event_type == "Fill":
            p = e.payload
            k = f"{p.account}|{p.instrument}"
            derived[k] = derived.get(k, Decimal(0)) + (
                p.quantity if p.side == "BUY" else -p.quantity
            )
    derived = {k: v for k, v in derived.items() if v != 0}
    # ...match the live workers' own state at their clean stop...
    live: dict[str, Decimal] = {}
    for dump_dir in dump_dirs:
        for f in sorted(dump_dir.glob(f"state-{settings.topic_prefix}*.json")):
            data = json.loads(f.read_text())
            live.update({k: Decimal(v) for k, v in data["positions"].items()})
    assert live == derived, "engine state positions differ from the fills on the log"
    # ...and the state a fresh rebuild folds from the log.
    state = EngineState()
    for topic in REFERENCE_TOPICS:
        for e in read_topic(settings, topic):
            state.apply(e)
    for e in decisions + orders:
        state.apply(e)
    rebuilt = {f"{a}|{i}": q for (a, i), q in state.positions().items()}
    assert rebuilt == derived
