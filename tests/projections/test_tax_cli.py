"""`tradetape tax form8949` / `1099da` on the real stack: refused while `tax_lots` lags
behind the log, the hand-computed form (test_tax_book) once it has caught up, and a
rebuild of `tax_lots` gives the live checksum."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from deploy.settings import Settings
from projections.core import PROJECTIONS
from projections.projector import Projector
from projections.tax.cli import account_of, concerning, refusal
from schemas import encode, new_event
from schemas.events import TransferSettled
from schemas.topics import Topic
from tests.projections.helpers import produce
from tests.projections.test_tax_book import _history
from tests.projections.test_tax_lots_projection import _flat
from tests.streams.helpers import produce_raw

pytestmark = pytest.mark.integration


def test_refusals() -> None:
    assert refusal({"lag": 0, "partitions": 3, "unread_partitions": []}, 0) is None
    assert "3 records behind" in str(refusal({"lag": 3}, 0))
    assert "degraded" in str(refusal({"lag": 0, "degraded": True, "partitions_changed": "x"}, 0))
    assert "has not read" in str(refusal({"lag": 0, "unread_partitions": ["t[1]"]}, 0))
    assert "quarantined 2 events" in str(refusal({"lag": 0}, 2))
    assert "quarantined 2 events of account W1" in str(refusal({"lag": 0}, 2, 0, "W1"))
    assert "1 events whose account cannot be told" in str(refusal({"lag": 0}, 0, 1, "W1"))
    assert refusal({"lag": 0}, 0, 0, "W1") is None
    assert "records behind" in str(refusal({"lag": 3}, 0, 0, "W1"))  # lagging refuses first


def _value(account: str) -> bytes:
    settled = TransferSettled(
        transfer_id="t9",
        account=account,
        tx_hash="0x9",
        settled_at=datetime(2026, 5, 1, tzinfo=UTC),
    )
    return bytes(encode(new_event(settled, producer="transfers"))[1])


def test_a_quarantined_event_refuses_only_its_accounts_form() -> None:
    """The account a quarantined record concerns is its payload's, as `tax_lots` keys
    it; one that cannot be told refuses every account's form (fail closed). Until
    session 26 any quarantined event refused every form."""
    w2 = _value("W2")
    assert account_of(w2) == "W2"
    assert concerning([w2, w2], "W1") == (0, 0)
    assert concerning([w2, _value("W1")], "W1") == (1, 0)
    assert concerning([w2, _value("W1"), None], None) == (2, 1)  # any account's (the demo)
    doc = json.loads(w2)
    odd: list[bytes | None] = [
        None,  # no value kept
        b"\x00 not an event",
        b"[1, 2]",
        json.dumps({**doc, "payload": None}).encode(),
        json.dumps({**doc, "payload": {**doc["payload"], "account": ""}}).encode(),
        json.dumps({**doc, "payload": {**doc["payload"], "account": 7}}).encode(),
        json.dumps({**doc, "key": "W1"}).encode(),  # keyed to another account than its own
        w2.replace(b'"account":"W2"', b'"account":"W2","account":"W1"'),  # which one?
        b'{"payload": ' * 100_000,  # deeper than any reader goes
    ]
    assert w2.replace(b'"account":"W2"', b"") != w2  # the duplicate above is one
    for raw in odd:
        assert account_of(raw) is None, raw
    assert concerning(odd, "W1") == (0, len(odd))
    assert refusal({"lag": 0}, *concerning([w2], "W1"), "W1") is None
    assert refusal({"lag": 0}, *concerning([w2, None], "W1"), "W1") is not None


def test_forms_from_the_stack(
    env: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deploy.cli import app
    from deploy.settings import get_settings

    produce(env, [item.event for item in _flat(_history())])
    monkeypatch.setenv("TRADETAPE_TOPIC_PREFIX", env.topic_prefix)
    monkeypatch.setenv("TRADETAPE_POSTGRES_PORT", str(env.postgres_port))
    monkeypatch.setenv("TRADETAPE_POSTGRES_DB", env.postgres_db)
    monkeypatch.setenv("TRADETAPE_KAFKA_PORT", str(env.kafka_port))
    get_settings.cache_clear()
    runner = CliRunner()
    args = ["tax", "form8949", "--account", "W1", "--year", "2026"]
    try:
        res = runner.invoke(app, args)  # nothing folded yet: the form would be empty
        assert res.exit_code == 1 and "records behind the log" in res.output, res.output

        with Projector(env, PROJECTIONS["tax_lots"]) as proj:
            proj.catch_up()
        res = runner.invoke(app, [*args, "--format", "json"])
        assert res.exit_code == 0, res.output
        doc = json.loads(res.stdout)
        assert [(r["box"], r["proceeds"], r["cost_basis"], r["gain"]) for r in doc["rows"]] == [
            ("G", "15000.00", "27067.82", "-12067.82"),
            ("G", "4950.00", "8932.38", "-3982.38"),
            ("H", "59970.00", "48024.00", "11946.00"),
            ("H", "20000.00", None, None),
            ("K", "40000.00", "32016.00", "7984.00"),
            ("K", "10000.00", None, None),
        ]
        assert doc["totals"]["G"]["gain"] == "-16050.20"
        assert [e["units"] for e in doc["exceptions"]] == ["0.901", "0.5"]
        assert "2 disposal slices of 2026 are on no form" in res.stderr

        out = tmp_path / "1099da.csv"
        cmd = ["tax", "1099da", "--account", "W1", "--year", "2026", "--format", "csv"]
        res = runner.invoke(app, [*cmd, "--out", str(out)])
        assert res.exit_code == 0, res.output
        lines = out.read_text().splitlines()
        assert lines[0].startswith("1a DTI,1b asset,1c units") and len(lines) == 7
        assert ",BTC,0.3,2026-01-15,2026-07-01,15000.00,27067.82,X,SHORT," in lines

        res = runner.invoke(app, ["tax", "form8949", "--account", "W1", "--year", "2026"])
        assert res.exit_code == 0 and "On no form (2)" in res.stdout, res.output

        res = runner.invoke(app, [*args[:-1], "1999"])
        assert res.exit_code == 2 and "--year" in res.output
        res = runner.invoke(app, [*args, "--format", "xml"])
        assert res.exit_code == 2 and "--format" in res.output

        res = runner.invoke(app, ["checksum", "tax_lots"])
        assert res.exit_code == 0, res.output
        live = res.stdout.strip()
        res = runner.invoke(app, ["rebuild", "tax_lots"])
        assert res.exit_code == 0, res.output
        assert res.stdout.strip().splitlines()[-1] == live

        # Another account's quarantined event (a settlement of a transfer it never
        # requested) refuses that account's form only; one of no account every form.
        unknown = TransferSettled(
            transfer_id="t9", account="W2", tx_hash="0x9",
            settled_at=datetime(2026, 5, 1, tzinfo=UTC),
        )  # fmt: skip
        produce(env, [new_event(unknown, producer="transfers")])
        with Projector(env, PROJECTIONS["tax_lots"]) as proj:
            proj.catch_up()
        res = runner.invoke(app, args)
        assert res.exit_code == 0 and "On no form (2)" in res.stdout, res.output
        res = runner.invoke(app, ["tax", "1099da", "--account", "W2", "--year", "2026"])
        assert res.exit_code == 1, res.output
        assert "quarantined 1 events of account W2" in res.output
        produce_raw(env, Topic.TRANSFERS, b"\x00 not an event")
        with Projector(env, PROJECTIONS["tax_lots"]) as proj:
            proj.catch_up()
        res = runner.invoke(app, args)
        assert res.exit_code == 1 and "account cannot be told" in res.output, res.output
    finally:
        get_settings.cache_clear()


def test_the_quarantine_is_read_a_page_at_a_time(
    env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`check_ready` counts `tax_lots`' quarantine through a server-side cursor,
    `QUARANTINE_PAGE` records at a time: no fetch of it returns more (until session 27 one
    `fetchall` loaded the whole quarantine, whatever its size). The counts, and so the
    refusals, are those of every record."""
    import psycopg

    import projections.lag
    from projections.tax import cli

    raws = [_value("W2")] * 3 + [_value("W1"), None]
    with psycopg.connect(env.dsn) as conn:
        for offset, raw in enumerate(raws):
            conn.execute(
                'INSERT INTO projection_quarantine (projection, topic, partition, "offset",'
                " error, raw_value) VALUES ('tax_lots', 't', 0, %s, 'test', %s)",
                (offset, raw),
            )
    fetched: list[int] = []
    for kind in (psycopg.Cursor, psycopg.ServerCursor):
        for method in ("fetchall", "fetchmany"):
            real = getattr(kind, method)

            def spy(self: Any, *args: Any, _real: Any = real) -> Any:
                rows = _real(self, *args)
                if rows and len(rows[0]) == 1:  # raw_value alone: the quarantine's
                    fetched.append(len(rows))
                return rows

            monkeypatch.setattr(kind, method, spy)
    monkeypatch.setattr(cli, "QUARANTINE_PAGE", 2, raising=False)  # none before session 27
    monkeypatch.setattr(
        projections.lag, "projection_lag", lambda *_a: {"tax_lots": {"lag": 0}}
    )  # caught up: only the quarantine can refuse
    with pytest.raises(cli.Refused, match="quarantined 1 events of account W1"):
        cli.check_ready(env, "W1")
    assert fetched and max(fetched) <= 2 and sum(fetched) == len(raws), fetched
    with pytest.raises(cli.Refused, match="1 events whose account cannot be told"):
        cli.check_ready(env, "W3")
    with pytest.raises(cli.Refused, match="quarantined 4 events"):
        cli.check_ready(env)  # any account's (the demo)
