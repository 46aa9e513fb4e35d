"""`make demo` stage: three withdrawals of the engine stage's accounts, checked by the
travel-rule processor (docs/travel_rule.md).

The requests are the transfer service's (`TransferRequested` on transfers.events); the
processor (`tradetape run travelrule`'s, run here in a thread under an instance id of its
own) answers each with a `TransferChecked` on transfers.checks, and the stage reads the
answers back from there. The IVMS-101 payloads are the demo's own, made up from its account owners
(`deploy.demo.PERSONS`) and its firm (`deploy.demo.FIRM_LEI`).
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from deploy import groups
from deploy.demo import FIRM_LEI, PERSONS, latest_demo_accounts, lei
from deploy.groups import group_id
from deploy.kafka import consumer_config, partitions_of, producer_config
from deploy.settings import Settings
from schemas import Envelope, MalformedEventError, decode, encode, new_event
from schemas.events import AccountOpened, TransferChecked, TransferRequested
from schemas.registry import TRAVELRULE_PRODUCER
from schemas.topics import Topic
from streams.travel_rule.processor import LogReader, TravelRuleProcessor
from streams.travel_rule.rules import RULES_VERSION

ANSWER_TIMEOUT_S = 60.0  # seconds, not money
BENEFICIARY_VASP_LEI = lei("TTDM00DEMOVASP0002")


@dataclass(frozen=True)
class Case:
    """One demo withdrawal: what it shows, and what the rules are expected to answer."""

    account: str
    """The engine stage's account number (DEMO-<run>-<n>)"""
    label: str
    asset: str
    amount: Decimal
    destination_country: str
    self_hosted: bool
    with_payload: bool
    expected: str


CASES = (
    Case("1", "valid IVMS-101 payload", "USDC", Decimal("5000"), "US", False, True, "PASS"),
    Case("2", "over USD 3,000, no payload", "USDC", Decimal("5000"), "US", False, False, "REJECT"),
    Case("4", "self-hosted, over EUR 1,000, no proof", "EURC", Decimal("2500"), "DE", True, True, "HOLD"),
)  # fmt: skip
"""Two of the engine stage's US accounts (the accounts' jurisdiction) to a provider in
the US, with and without the payload FinCEN asks for from USD 3,000; and the one holding
EURC (account 4) to the customer's own wallet in Germany, where the EU's TFR holds more
than EUR 1,000 until the customer proves the address is theirs (the EU asks for the
payload too, at any amount). `expected` is what the rules say (docs/travel_rule.md)."""


def _vasp(name: str, lei_code: str, country: str) -> dict[str, Any]:
    return {
        "legalPerson": {
            "name": {
                "nameIdentifier": [
                    {"legalPersonName": name, "legalPersonNameIdentifierType": "LEGL"}
                ]
            },
            "geographicAddress": [
                {
                    "addressType": "BIZZ",
                    "streetName": "Demo Allee",
                    "buildingNumber": "1",
                    "postCode": "10115",
                    "townName": "Berlin" if country == "DE" else "New York",
                    "country": country,
                }
            ],
            "nationalIdentification": {
                "nationalIdentifier": lei_code,
                "nationalIdentifierType": "LEIX",
            },
            "countryOfRegistration": country,
        }
    }


def _natural(first: str, surname: str, born: str, address: str) -> dict[str, Any]:
    return {
        "naturalPerson": {
            "name": {
                "nameIdentifier": [
                    {
                        "primaryIdentifier": surname,
                        "secondaryIdentifier": first,
                        "nameIdentifierType": "LEGL",
                    }
                ]
            },
            "geographicAddress": [
                {"addressType": "HOME", "addressLine": [address], "country": "DE"}
            ],
            "dateAndPlaceOfBirth": {"dateOfBirth": born, "placeOfBirth": "Berlin"},
            "countryOfResidence": "DE",
        }
    }


def payload(opened: AccountOpened, case: Case, destination: str) -> dict[str, Any]:
    """The IVMS-101 identity payload of a withdrawal from `opened`'s account: its owner
    the originator; a made-up customer of another provider the beneficiary, or, to a
    self-hosted address, the owner again, with no beneficiary VASP (there is none)."""
    first, surname, born = PERSONS[opened.account[-1]]
    originator = _natural(first, surname, born, "Demostrasse 1, 10115 Berlin")
    out: dict[str, Any] = {
        "originator": {
            "originatorPersons": [originator],
            "accountNumber": [opened.account],
        },
        "originatingVASP": {"originatingVASP": _vasp("Tradetape Demo CASP", FIRM_LEI, "DE")},
    }
    if case.self_hosted:
        beneficiary = originator
    else:
        beneficiary = _natural("Erin", "Example", "1985-05-05", "Beispielweg 2, 20095 Hamburg")
        bvasp = _vasp("Demo Beneficiary VASP", BENEFICIARY_VASP_LEI, "US")
        out["beneficiaryVASP"] = {"beneficiaryVASP": bvasp}
    out["beneficiary"] = {"beneficiaryPersons": [beneficiary], "accountNumber": [destination]}
    return out


def demo_accounts(settings: Settings) -> list[AccountOpened]:
    """The engine stage's accounts, read from accounts.events (`latest_demo_accounts`)."""
    opened: list[Envelope[Any]] = []
    reader = LogReader(settings, Topic.ACCOUNTS, opened.append)
    try:
        reader.catch_up()
    finally:
        reader.close()
    return latest_demo_accounts(opened)


def _answers(
    settings: Settings,
    requests: list[Envelope[Any]],
    timeout: float,  # seconds, not money
) -> dict[str, TransferChecked]:
    """Request event id -> the processor's answer, read from transfers.checks until every
    request has one or `timeout` seconds have passed."""
    wanted = {str(r.event_id) for r in requests}
    found: dict[str, TransferChecked] = {}
    consumer = Consumer(
        consumer_config(
            settings,
            group_id=group_id(settings.topic_prefix, groups.DEMO, f"travel-{uuid.uuid4().hex}"),
        )
    )
    topic = settings.topic(Topic.TRANSFER_CHECKS)
    try:
        consumer.assign(
            [
                TopicPartition(topic, p, 0)
                for p in partitions_of(consumer, settings, Topic.TRANSFER_CHECKS)
            ]
        )
        deadline = time.monotonic() + timeout
        while not wanted <= found.keys() and time.monotonic() < deadline:
            msg = consumer.poll(0.2)  # seconds, not money
            if msg is None or msg.error():
                continue
            try:
                event = decode(msg.value(), msg.headers())
            except MalformedEventError:
                continue
            cause = str(event.causation_id)
            if (
                isinstance(event.payload, TransferChecked)
                and event.producer == TRAVELRULE_PRODUCER
                and cause in wanted
            ):
                found.setdefault(cause, event.payload)
    finally:
        consumer.close()
    return found


def _reasons(answer: TransferChecked) -> str:
    if answer.reason:
        return answer.reason
    return "passed: " + ", ".join(r["rule"] for r in answer.rule_results)


def run(settings: Settings) -> list[str]:
    started = time.monotonic()
    accounts = demo_accounts(settings)
    by_number = {a.account[-1]: a for a in accounts}
    if any(case.account not in by_number for case in CASES):
        raise RuntimeError(
            "travel rule: the engine stage's accounts (DEMO-*) are not on accounts.events"
        )
    run_id = uuid.uuid4().hex[:6]
    requests: list[Envelope[Any]] = []
    for n, case in enumerate(CASES, start=1):
        opened = by_number[case.account]
        destination = f"0xdemo{run_id}{n:02d}" if case.self_hosted else f"demo-vasp-{run_id}-{n}"
        requests.append(
            new_event(
                TransferRequested(
                    transfer_id=f"wd-{run_id}-{n}",
                    account=opened.account,
                    asset=case.asset,
                    amount=case.amount,
                    destination_address=destination,
                    destination_vasp=None if case.self_hosted else BENEFICIARY_VASP_LEI,
                    destination_country=case.destination_country,
                    self_hosted=case.self_hosted,
                    ivms101=payload(opened, case, destination) if case.with_payload else None,
                ),
                producer="transfers",
            )
        )
    producer = Producer(producer_config(settings))
    for ev in requests:
        key, value, headers = encode(ev)
        producer.produce(settings.topic(Topic.TRANSFERS), key=key, value=value, headers=headers)
    producer.flush(30)
    processor = TravelRuleProcessor(settings, instance=f"demo-{run_id}")
    failed: list[BaseException] = []

    def serve() -> None:
        try:
            processor.run()
        except BaseException as exc:  # reported below, not lost in the thread
            failed.append(exc)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        answers = _answers(settings, requests, ANSWER_TIMEOUT_S)
    finally:
        processor.stopping = True
        thread.join(60)
    missing = [r.payload.transfer_id for r in requests if str(r.event_id) not in answers]
    if missing:
        why = f" (the processor stopped: {failed[0]!r})" if failed else ""
        raise RuntimeError(
            f"travel rule: no TransferChecked for {', '.join(missing)} in "
            f"{ANSWER_TIMEOUT_S:g} s{why}"
        )
    lines = [
        f"travel rule: {len(requests)} withdrawals checked by the travel-rule processor "
        f"(rules version {RULES_VERSION}; jurisdiction {accounts[0].jurisdiction}, the "
        "accounts'); docs/travel_rule.md",
        f"  {'transfer':<12} {'amount':<11} {'case':<38} {'outcome':<7} reasons",
    ]
    for case, ev in zip(CASES, requests, strict=True):
        p, answer = ev.payload, answers[str(ev.event_id)]
        amount = f"{p.amount} {p.asset}"
        lines.append(
            f"  {p.transfer_id:<12} {amount:<11} {case.label:<38} {answer.outcome.value:<7} "
            f"{_reasons(answer)}"
            + ("" if answer.outcome == case.expected else f" (expected {case.expected})")
        )
    lines.append(f"travel rule: stage took {time.monotonic() - started:.1f}s")
    return lines
