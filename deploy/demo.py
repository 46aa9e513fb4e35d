"""`make demo`: bring the stack up, run the flow, print a summary.

The foundation's part is a transactional smoke flow. Each package can add a stage by
providing `<package>.demo:run(settings) -> list[str]` (summary lines); stages run in
the order of `STAGES`, and a failing stage fails the demo.
"""

from __future__ import annotations

import importlib
import re
import sys
import time
import uuid
from collections import Counter
from decimal import Decimal
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from deploy import groups
from deploy.groups import group_id
from deploy.kafka import consumer_config, producer_config
from deploy.local import LocalStack, StackError
from deploy.settings import Settings
from schemas import Envelope, decode_message, encode, new_event
from schemas.events import (
    AccountOpened,
    BeneficialOwner,
    DepositReceived,
    KycVerified,
    OwnerKind,
)
from schemas.registry import ENGINE_PRODUCER
from schemas.topics import Topic

STAGES = (
    "engine.demo",
    "streams.travel_rule.demo",
    "projections.demo",
    "projections.tax.demo",
    "projections.reports.demo",
    "streams.demo",
    "signer_ffi.demo",
)

DEMO_ACCOUNT = re.compile(r"DEMO-([0-9a-f]{6})-([0-9])")
"""The engine stage's accounts (`engine.demo.run`): DEMO-<run id>-<n>."""


def lei(base: str) -> str:
    """`base` (18 capitals or digits) with its ISO 17442 check digits (MOD 97-10): the
    demo's own LEIs, made up but well formed, as the report and the travel rule check."""
    digits = int("".join(str(int(ch, 36)) for ch in base + "00"))
    return f"{base}{98 - digits % 97:02d}"


PERSONS: dict[str, tuple[str, str, str]] = {
    "1": ("Ada", "Alder", "1980-01-17"),
    "2": ("Bruno", "Birke", "1975-06-02"),
    "3": ("Clara", "Castan", "1991-11-23"),
    "4": ("Dario", "Dorn", "1968-03-09"),
}
"""The engine stage's account owners, by account number: (first name, surname, birth
date). Made up, the demo's own: its accounts are opened with these names, its travel-rule
payloads and its ISO 20022 persons file give them."""


FIRM_LEI = lei("TTDM00DEMOCASP0001")
"""The demo's firm: the reporting firm of its ISO 20022 report and the originating VASP
of its travel-rule payloads."""


def latest_demo_accounts(opened: list[Any]) -> list[AccountOpened]:
    """The accounts the last engine stage opened, from AccountOpened envelopes (the
    engine's, as read from accounts.events): a stack the demo ran on before holds earlier
    runs' too. The run whose openings are the latest; its accounts in number order."""
    runs: dict[str, dict[str, Any]] = {}
    for e in opened:
        if not isinstance(e.payload, AccountOpened) or e.producer != ENGINE_PRODUCER:
            continue
        m = DEMO_ACCOUNT.fullmatch(e.payload.account)
        if m is not None:
            runs.setdefault(m.group(1), {}).setdefault(e.payload.account, e)
    if not runs:
        return []
    last = max(runs.values(), key=lambda es: max(e.occurred_at for e in es.values()))
    return [last[account].payload for account in sorted(last)]


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def smoke_flow(settings: Settings) -> list[str]:
    """Commit one transaction, abort another, and read back with read_committed.

    The events go to `admin.commands`, as the admin commands they are: the engine decides
    them like any other (the accounts and transfers topics take only the engine's own
    facts, and would dead-letter them)."""
    run_id = uuid.uuid4().hex[:8]
    account = f"SMOKE-{run_id}"
    owner = BeneficialOwner(
        owner_id=f"owner-{run_id}", kind=OwnerKind.NATURAL, name="Smoke Test", country="DE"
    )
    opened = new_event(
        AccountOpened(account=account, beneficial_owner=owner, base_currency="USDC"),
        producer="admin",
    )
    events: list[Envelope[Any]] = [
        opened,
        new_event(
            KycVerified(account=account, verified_by="demo"), producer="admin", causation=opened
        ),
        new_event(
            DepositReceived(
                deposit_id=f"dep-{run_id}", account=account, asset="USDC", amount=Decimal("100000")
            ),
            producer="admin",
            causation=opened,
        ),
    ]
    # Errors only on stderr: a new transactional id on a fresh broker logs warnings while
    # its coordinator loads ("Failed to acquire transactional PID ...: retrying"), and any
    # failure that matters raises from init_transactions or commit_transaction below.
    producer = Producer(
        producer_config(settings, transactional_id=f"demo-smoke-{run_id}", log_level=3)
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    admin_topic = settings.topic(Topic.ADMIN)
    for ev in events:
        k, v, h = encode(ev)
        producer.produce(admin_topic, key=k, value=v, headers=h)
    producer.commit_transaction(30)
    aborted = new_event(
        KycVerified(account=account, verified_by="never-committed"), producer="admin"
    )
    producer.begin_transaction()
    k, v, h = encode(aborted)
    producer.produce(admin_topic, key=k, value=v, headers=h)
    producer.flush(10)
    producer.abort_transaction(30)

    consumer = Consumer(
        consumer_config(
            settings, group_id=group_id(settings.topic_prefix, groups.DEMO, f"smoke-{run_id}")
        )
    )
    seen: list[str] = []
    try:
        parts = []
        for t in [admin_topic]:
            md = consumer.list_topics(t, timeout=10).topics[t]
            parts += [TopicPartition(t, p, 0) for p in md.partitions]
        consumer.assign(parts)
        deadline = time.monotonic() + 20
        wanted = {str(e.event_id) for e in events}
        while time.monotonic() < deadline and not wanted.issubset(seen):
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            ev = decode_message(msg)
            if ev.key == account:
                seen.append(str(ev.event_id))
    finally:
        consumer.close()
    if not {str(e.event_id) for e in events}.issubset(seen):
        raise RuntimeError("smoke flow: committed events were not read back")
    if str(aborted.event_id) in seen:
        raise RuntimeError("smoke flow: an aborted transaction became visible")
    counts = Counter(e.event_type for e in events)
    return [
        f"smoke: committed {len(events)} events ({', '.join(f'{k}={v}' for k, v in sorted(counts.items()))}),"
        " read back with read_committed; the aborted one stayed invisible",
    ]


def run_stages(settings: Settings) -> list[str]:
    """The smoke flow, then every package's stage, on a stack that is already up.

    Split from `run_demo` so the test suite runs exactly this on its own stack.
    """
    summary = smoke_flow(settings)
    for stage in STAGES:
        try:
            module = importlib.import_module(stage)
        except ModuleNotFoundError as exc:
            if exc.name and (stage == exc.name or stage.startswith(exc.name + ".")):
                continue
            raise
        _say(f"== {stage} ==")
        summary += module.run(settings)
    return summary


def run_demo(settings: Settings) -> int:
    started = time.monotonic()
    try:
        LocalStack(settings, echo=_say).up()
    except StackError as exc:
        _say(f"error: {exc}")
        return 1
    summary = [f"stack: kafka {settings.bootstrap}, postgres {settings.redacted_dsn()}"]
    summary += run_stages(settings)
    print(
        "\n".join(
            [
                "",
                "tradetape demo summary",
                "-" * 22,
                *summary,
                f"took {time.monotonic() - started:.1f}s; the stack stays up (`tradetape down` stops it)",
            ]
        )
    )
    return 0
