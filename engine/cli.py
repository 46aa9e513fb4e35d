"""Engine commands: producers, publishing, market data and admin helpers.

Heavy imports happen inside the commands so `tradetape --help` stays fast.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer

ADMIN = "admin"


def _settings() -> Any:
    from deploy.settings import get_settings

    return get_settings()


def _publish_admin(payload: Any) -> Any:
    """Publish one admin command and wait for the engine's answer (or report none)."""
    from engine.client import IntentPublisher

    pub = IntentPublisher(_settings(), ADMIN)
    try:
        event = pub.publish(payload, admin=True)
        pub.flush()
        return event
    finally:
        pub.close()


def register(app: typer.Typer) -> None:
    producer_app = typer.Typer(help="Strategy producers and their Ed25519 keys.")
    marketdata_app = typer.Typer(help="Feed the market-data topic.")
    admin_app = typer.Typer(help="Admin commands, published on admin.commands.")
    app.add_typer(producer_app, name="producer")
    app.add_typer(marketdata_app, name="marketdata")
    app.add_typer(admin_app, name="admin")

    @producer_app.command("add")
    def producer_add(
        name: str,
        accounts: Annotated[str, typer.Option("--accounts", help="A1,A2,...")],
    ) -> None:
        """Create a keypair (private key 0600 in the data dir) and register the producer."""
        from engine import auth
        from schemas.events import ProducerRegistered

        settings = _settings()
        path = auth.key_path(settings.resolved_data_dir, name)
        if path.exists():
            key = auth.read_private_key(path)
            typer.echo(f"reusing the existing key in {path}", err=True)
        else:
            key, _ = auth.new_keypair()
            auth.write_private_key(path, key)
        accs = tuple(a.strip() for a in accounts.split(",") if a.strip())
        _publish_admin(
            ProducerRegistered(
                producer_id=name,
                public_key=auth.public_hex(key),
                accounts=accs,
                registered_by=ADMIN,
            )
        )
        typer.echo(
            json.dumps(
                {
                    "producer": name,
                    "public_key": auth.public_hex(key),
                    "accounts": list(accs),
                    "key_file": str(path),
                }
            )
        )

    @app.command("publish")
    def publish(
        file: Path,
        wait: Annotated[float, typer.Option(help="Seconds to wait for each decision")] = 30.0,
    ) -> None:
        """Publish each JSONL line (an intent or an admin command) and print the decisions.

        A line is `{"event_type": "OrderIntent", "payload": {...}}` or just the payload
        with an `event_type` field. Intents are signed with their producer's key file.
        """
        from engine.client import DecisionWatcher, IntentPublisher
        from schemas.events.admin import ADMIN_COMMAND_TYPES
        from schemas.registry import payload_class

        settings = _settings()
        watcher = DecisionWatcher(settings)
        publishers: dict[str, IntentPublisher] = {}
        sent: list[Any] = []
        answers: dict[Any, Any] = {}
        for n, line in enumerate(file.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
                etype = raw.get("event_type")
                body = raw.get("payload", {k: v for k, v in raw.items() if k != "event_type"})
                cls = payload_class(etype, int(raw.get("schema_version", 1)))
                payload = cls.model_validate(body)
            except Exception as exc:  # a bad line is reported, the rest still go out
                typer.echo(f"line {n}: skipped: {exc}", err=True)
                continue
            is_admin = etype in ADMIN_COMMAND_TYPES
            who = ADMIN if is_admin else str(getattr(payload, "producer_id", ADMIN))
            pub = publishers.get(who)
            if pub is None:
                pub = publishers[who] = IntentPublisher(settings, who, watch=False)
            if is_admin:
                # Intents sent before an admin command are decided before it applies...
                for other in publishers.values():
                    other.flush()
                for prior in sent:
                    if prior.event_id not in answers:
                        answers[prior.event_id] = watcher.wait(prior.correlation_id, wait)
            try:
                event = pub.publish(payload, admin=is_admin)
            except ValueError as exc:
                typer.echo(f"line {n}: {exc}", err=True)
                continue
            sent.append(event)
            if is_admin:
                # ...and it takes effect before the lines after it are sent.
                pub.flush()
                answers[event.event_id] = watcher.wait(event.correlation_id, wait)
        for pub in publishers.values():
            pub.close()
        for event in sent:
            answer = answers.get(event.event_id) or watcher.wait(event.correlation_id, wait)
            p = None if answer is None else answer.payload
            typer.echo(
                json.dumps(
                    {
                        "line_event": event.event_type,
                        "event_id": str(event.event_id),
                        "answer": None if answer is None else answer.event_type,
                        "outcome": None
                        if p is None
                        else (
                            "ACCEPTED"
                            if answer is not None
                            and answer.producer == "engine"
                            and answer.event_type == event.event_type
                            else getattr(p, "outcome", None) or getattr(p, "reason", None)
                        ),
                        "reasons": list(getattr(p, "reason_codes", ()) or []),
                    },
                    default=str,
                )
            )
        watcher.close()

    @marketdata_app.command("load")
    def marketdata_load(
        file: Path,
        speed: Annotated[float | None, typer.Option(help="Replay speed, 1.0 = real time")] = None,
        as_fast_as_possible: Annotated[bool, typer.Option("--as-fast-as-possible")] = False,
        instrument: Annotated[
            str | None, typer.Option(help="Publish under this instrument, e.g. BTC/USDC")
        ] = None,
        limit: Annotated[int | None, typer.Option(help="Only the first N lines")] = None,
    ) -> None:
        """Replay a raw Binance capture (trade + bookTicker) onto the market-data topic."""
        from engine.marketdata.loader import load_capture

        rate = None if as_fast_as_possible else (speed or 1.0)
        report = load_capture(_settings(), file, speed=rate, instrument=instrument, limit=limit)
        typer.echo(
            json.dumps(
                {
                    "published": report.published,
                    "dead_letters": report.dead_letters,
                    "counts": report.counts,
                }
            )
        )

    @marketdata_app.command("simulate")
    def marketdata_simulate(
        symbol: Annotated[str, typer.Option("--symbol")] = "BTC/USDC",
        minutes: Annotated[float, typer.Option("--minutes")] = 5.0,
        seed: Annotated[int, typer.Option("--seed")] = 1,
        speed: Annotated[float | None, typer.Option(help="1.0 = real time; default: fast")] = None,
    ) -> None:
        """Publish a seeded synthetic stream of quotes and trades."""
        from engine.marketdata.loader import run_simulation

        n = run_simulation(_settings(), symbol, minutes, seed, speed=speed)
        typer.echo(json.dumps({"published": n, "symbol": symbol, "seed": seed}))

    @admin_app.command("open-account")
    def open_account(
        account: str,
        owner: Annotated[str, typer.Option(help="Beneficial owner's name")],
        country: Annotated[str, typer.Option()] = "DE",
        currency: Annotated[str, typer.Option()] = "USDC",
    ) -> None:
        from schemas.events import AccountOpened, BeneficialOwner, OwnerKind

        bo = BeneficialOwner(
            owner_id=f"owner-{account}", kind=OwnerKind.NATURAL, name=owner, country=country
        )
        ev = _publish_admin(
            AccountOpened(account=account, beneficial_owner=bo, base_currency=currency)
        )
        typer.echo(str(ev.event_id))

    @admin_app.command("kyc")
    def kyc(account: str, reference: str = "") -> None:
        from schemas.events import KycVerified

        typer.echo(
            str(
                _publish_admin(
                    KycVerified(account=account, verified_by=ADMIN, reference=reference)
                ).event_id
            )
        )

    @admin_app.command("deposit")
    def deposit(account: str, asset: str, amount: str, deposit_id: str) -> None:
        from schemas.events import DepositReceived

        typer.echo(
            str(
                _publish_admin(
                    DepositReceived(
                        deposit_id=deposit_id, account=account, asset=asset, amount=Decimal(amount)
                    )
                ).event_id
            )
        )

    @admin_app.command("aml")
    def aml(
        account: str,
        flag_id: str,
        reason: str = "",
        clear: Annotated[bool, typer.Option("--clear")] = False,
    ) -> None:
        from schemas.events import AmlFlagCleared, AmlFlagRaised

        payload: Any = (
            AmlFlagCleared(account=account, flag_id=flag_id, note=reason, cleared_by=ADMIN)
            if clear
            else AmlFlagRaised(account=account, flag_id=flag_id, reason=reason, raised_by=ADMIN)
        )
        typer.echo(str(_publish_admin(payload).event_id))

    @admin_app.command("kill-switch")
    def kill(action: str, scope: str = "*", reason: str = "manual") -> None:
        """`engage` or `release` the kill switch for an account or '*' (everything)."""
        from schemas.events import KillSwitchEngaged, KillSwitchReleased

        if action not in ("engage", "release"):
            typer.echo("action must be engage or release", err=True)
            raise typer.Exit(2)
        payload: Any = (
            KillSwitchEngaged(scope=scope, engaged_by=ADMIN, reason=reason)
            if action == "engage"
            else KillSwitchReleased(scope=scope, released_by=ADMIN, reason=reason)
        )
        typer.echo(str(_publish_admin(payload).event_id))

    @admin_app.command("limits")
    def limits(
        scope: str,
        version: int,
        values: Annotated[str, typer.Option(help="JSON object of RiskLimits fields")] = "{}",
        reason: str = "",
    ) -> None:
        """Publish new risk limits for an account or '*' with a higher config version."""
        from schemas.events import RiskLimits, RiskLimitsChanged

        lim = RiskLimits.model_validate(json.loads(values))
        typer.echo(
            str(
                _publish_admin(
                    RiskLimitsChanged(
                        scope=scope,
                        config_version=version,
                        limits=lim,
                        changed_by=ADMIN,
                        reason=reason,
                    )
                ).event_id
            )
        )
