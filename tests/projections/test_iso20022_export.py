"""`tradetape export auth016` replays the report from the log: on the real broker, two runs
give the same bytes, valid against both XSDs; an asset without a DTI writes nothing and
names it; no broker is one error line."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from deploy.settings import Settings, get_settings
from schemas import new_event
from schemas.events import AccountOpened
from schemas.topics import Topic
from tests.conftest import free_port
from tests.projections.helpers import produce
from tests.projections.iso20022_helpers import CONFIG, DTI, FIRM, OWNERS, T0, fill, validate

A = "{urn:iso:std:iso:20022:tech:xsd:auth.016.001.03}"


def _report_env(monkeypatch: pytest.MonkeyPatch, dti: dict[str, str]) -> None:
    monkeypatch.setenv("TRADETAPE_REPORT_LEI", FIRM)
    monkeypatch.setenv("TRADETAPE_REPORT_RECIPIENT", CONFIG.recipient)
    monkeypatch.setenv("TRADETAPE_REPORT_DTI", json.dumps(dti))
    monkeypatch.setenv("TRADETAPE_REPORT_CURRENCY", json.dumps({"USDC": "USD"}))
    get_settings.cache_clear()


def _export(out: Path, *extra: str) -> Any:
    from deploy.cli import app

    args = ["export", "auth016", "--from", "2026-12-01", "--to", "2026-12-01", "--out", str(out)]
    return CliRunner().invoke(app, [*args, *extra])


@pytest.mark.integration
def test_two_exports_of_the_same_log_are_the_same_valid_bytes(
    env: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    accounts = [
        new_event(AccountOpened(account=a, beneficial_owner=OWNERS[a], base_currency="USDC"),
                  producer="engine")
        for a in ("ACC1", "ACC2")
    ]  # fmt: skip
    fills = [
        fill(3, account="ACC2", side="SELL", qty="2.5", price="3100", instrument="ETH/USDC"),
        fill(1, qty="0.00000000000000001"),
        fill(2, at=T0 + timedelta(days=1)),  # the next day: not in the report
        fill(4, account="ACC2", price="64999.9999999999999"),
    ]
    produce(env, accounts + [new_event(f, producer="engine") for f in fills])
    monkeypatch.setenv("TRADETAPE_TOPIC_PREFIX", env.topic_prefix)
    monkeypatch.setenv("TRADETAPE_KAFKA_PORT", str(env.kafka_port))
    monkeypatch.setenv("TRADETAPE_DATA_DIR", str(tmp_path / "data"))
    _report_env(monkeypatch, DTI)
    try:
        first, second = tmp_path / "a.xml", tmp_path / "b.xml"
        monkeypatch.setattr("deploy.progress.EVERY_SECONDS", 0.0)  # a line per record
        for out in (first, second):
            done = _export(out)
            assert done.exit_code == 0, done.output
        orders = env.topic(Topic.ORDERS)
        assert f"export auth016: {orders}: 4 of ~4 read" in done.output, done.output
        assert "wrote" in done.output and "3 transactions" in done.output
        assert first.read_bytes() == second.read_bytes()
        _, document = validate(first.read_bytes())
        ids = [n.findtext(f"{A}TxId") for n in document.iter(f"{A}New")]
        assert ids == [fills[1].uti, fills[0].uti, fills[3].uti]
        assert b"<Unit>0.00000000000000001</Unit>" in first.read_bytes()
        assert b">64999.9999999999999</" in first.read_bytes()

        _report_env(monkeypatch, {k: v for k, v in DTI.items() if k != "ETH"})
        refused = tmp_path / "refused.xml"
        done = _export(refused)
        assert done.exit_code == 1, done.output
        assert "no DTI for asset(s) ETH (setting report_dti)" in done.output
        assert not refused.exists()
    finally:
        get_settings.cache_clear()


@pytest.mark.integration
def test_a_fill_that_cannot_be_read_refuses_the_report(
    env: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record on the orders topic whose event-type header says Fill and whose body is
    not an event: the report would leave a transaction out unseen, so none is written.
    One that says it is another type is no transaction: the report is written."""
    from confluent_kafka import Producer

    from deploy.kafka import producer_config
    from schemas.serde import encode

    opened = AccountOpened(account="ACC1", beneficial_owner=OWNERS["ACC1"], base_currency="USDC")
    good = new_event(fill(1), producer="engine")
    produce(env, [new_event(opened, producer="engine"), good])
    key, _value, headers = encode(new_event(fill(2), producer="engine"))
    other = [(k, b"OrderAccepted" if k == "event_type" else v) for k, v in headers]
    producer = Producer(producer_config(env))
    orders = env.topic(Topic.ORDERS)
    producer.produce(orders, b"{not an event", key, headers=other)
    assert producer.flush(30) == 0
    monkeypatch.setenv("TRADETAPE_TOPIC_PREFIX", env.topic_prefix)
    monkeypatch.setenv("TRADETAPE_KAFKA_PORT", str(env.kafka_port))
    monkeypatch.setenv("TRADETAPE_DATA_DIR", str(tmp_path / "data"))
    _report_env(monkeypatch, DTI)
    try:
        out = tmp_path / "r.xml"
        done = _export(out)
        assert done.exit_code == 0 and "1 transaction," in done.output, done.output
        out.unlink()
        producer.produce(orders, b"{not an event", key, headers=headers)
        assert producer.flush(30) == 0
        done = _export(out)
        assert done.exit_code == 1, done.output
        assert "1 record(s) on the orders topic that may be fills could not be read" in done.output
        assert f"malformed event at {orders}[" in done.output
        assert not out.exists()
    finally:
        get_settings.cache_clear()


PERSONS_CSV = (
    "owner_id,first_name,surname,birth_date,nationality,scheme,identifier\n"
    "o3,Günter,Voß,1961-02-03,DE,CONCAT,\n"
)


@pytest.mark.integration
def test_a_natural_persons_fills_are_reported_from_the_persons_file(
    env: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --persons the export refuses, naming the account and its owner (as before
    the persons file existed); with it, the person is the buyer, by CONCAT."""
    opened = AccountOpened(account="NAT1", beneficial_owner=OWNERS["NAT1"], base_currency="USDC")
    produce(env, [new_event(opened, producer="engine"), new_event(fill(1, account="NAT1"),
                                                                  producer="engine")])  # fmt: skip
    monkeypatch.setenv("TRADETAPE_TOPIC_PREFIX", env.topic_prefix)
    monkeypatch.setenv("TRADETAPE_KAFKA_PORT", str(env.kafka_port))
    monkeypatch.setenv("TRADETAPE_DATA_DIR", str(tmp_path / "data"))
    _report_env(monkeypatch, DTI)
    persons = tmp_path / "persons.csv"
    persons.write_text(PERSONS_CSV, encoding="utf-8-sig")  # with a BOM, as Excel writes it
    try:
        out = tmp_path / "r.xml"
        done = _export(out)
        assert done.exit_code == 1, done.output
        assert "account(s) NAT1 (owner o3) belong to natural persons without" in done.output
        assert not out.exists()
        done = _export(out, "--persons", str(persons))
        assert done.exit_code == 0, done.output
    finally:
        get_settings.cache_clear()
    _, document = validate(out.read_bytes())
    person = document.find(f"{A}FinInstrmRptgTxRpt/{A}Tx/{A}New/{A}Buyr/{A}AcctOwnr/{A}Id/{A}Prsn")
    assert person.findtext(f"{A}Nm") == "Voß"
    assert person.findtext(f"{A}Othr/{A}Id") == "DE19610203GUNTEVOSS#"


def test_no_broker_is_one_error_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()  # nobody listens
    monkeypatch.setenv("TRADETAPE_KAFKA_PORT", str(port))
    monkeypatch.setenv("TRADETAPE_DATA_DIR", str(tmp_path / "data"))
    _report_env(monkeypatch, DTI)
    try:
        done = _export(tmp_path / "r.xml")
    finally:
        get_settings.cache_clear()
    assert done.exit_code == 1, done.output
    errors = [line for line in done.output.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: no report written: cannot reach the Kafka broker at 127.0.0.1:{port}:"
        " Connection refused"
    ], done.output


def test_bad_arguments_exit_2_before_anything_is_read(tmp_path: Path) -> None:
    from deploy.cli import app

    base = ["export", "auth016", "--out", str(tmp_path / "r.xml")]
    for args, said in (
        (["--from", "2026-12-02", "--to", "2026-12-01"], "--to 2026-12-01 is before --from"),
        (["--from", "1 Dec", "--to", "2026-12-01"], "--from must be a date"),
    ):
        done = CliRunner().invoke(app, [*base, *args])
        assert done.exit_code == 2 and said in done.output, done.output
    bad = tmp_path / "persons.csv"
    bad.write_text(PERSONS_CSV + "o4,Ann,Lee,1970-02-30,GB,CONCAT,\n", encoding="utf-8")
    days = ["--from", "2026-12-01", "--to", "2026-12-01"]
    for persons, said in (
        (bad, "line 3 (owner o4): birth_date is not YYYY-MM-DD"),
        (tmp_path / "absent.csv", "cannot read --persons"),
    ):
        done = CliRunner().invoke(app, [*base, *days, "--persons", str(persons)])
        assert done.exit_code == 2 and said in done.output, done.output


def test_sign_keeps_what_tradetape_sign_prints_next_to_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--sign` is `tradetape sign FILE` (faked here: the signer has its own tests): its
    JSON line goes to FILE.sig.json; its failure leaves the report unsigned, exit 1."""
    import signer_ffi.cli
    from projections.reports.cli import _sign

    report = tmp_path / "r.xml"
    report.write_bytes(b"<x/>\n")
    asked: list[tuple[Path, str, Path | None]] = []

    def fake_sign(file: Path, **kw: Any) -> None:
        asked.append((file, kw["purpose"], kw["requester_key"]))
        typer.echo(json.dumps({"signature": "ab" * 32}))

    monkeypatch.setattr(signer_ffi.cli, "sign_file", fake_sign)
    _sign(report, None, "signing-coordinator", tmp_path / "req.ed25519")
    assert asked == [(report, "iso20022-auth016", tmp_path / "req.ed25519")]
    signature = json.loads((tmp_path / "r.xml.sig.json").read_text())
    assert signature == {"signature": "ab" * 32}

    def failing_sign(file: Path, **kw: Any) -> None:
        raise typer.Exit(1)

    monkeypatch.setattr(signer_ffi.cli, "sign_file", failing_sign)
    (tmp_path / "r.xml.sig.json").unlink()
    with pytest.raises(typer.Exit):
        _sign(report, None, "signing-coordinator")
    assert not (tmp_path / "r.xml.sig.json").exists()
