"""`tradetape stor` and `tradetape simulate surveillance`. faust is never imported here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import typer

from deploy.settings import Settings, get_settings
from schemas.topics import Topic


def read_topic(settings: Settings, topic: Topic, timeout: float = 10.0) -> list[Any]:
    """Every event currently on `topic`, read once from the beginning."""
    import time

    from confluent_kafka import Consumer, TopicPartition

    from deploy.kafka import consumer_config
    from schemas import MalformedEventError, decode

    c = Consumer(consumer_config(settings, group_id=f"stor-{time.monotonic_ns()}"))
    name = settings.topic(topic)
    meta = c.list_topics(name, timeout=timeout).topics[name]
    parts = [TopicPartition(name, p) for p in sorted(meta.partitions)]
    ends = {p.partition: c.get_watermark_offsets(p, timeout=timeout)[1] for p in parts}
    c.assign([TopicPartition(name, p.partition, 0) for p in parts])
    out: list[Any] = []
    done = {p for p, end in ends.items() if end == 0}
    deadline = time.monotonic() + timeout
    while len(done) < len(ends) and time.monotonic() < deadline:
        msg = c.poll(0.5)
        if msg is None or msg.error():
            continue
        try:
            out.append(decode(msg.value(), msg.headers()))
        except MalformedEventError:
            pass
        part, off = msg.partition(), msg.offset()
        if part is not None and off is not None and off + 1 >= ends[part]:
            done.add(part)
    c.close()
    return out


def find_alert(settings: Settings, alert_id: UUID) -> Any:
    from schemas.events import SurveillanceAlert

    for e in read_topic(settings, Topic.SURVEILLANCE_ALERTS):
        if isinstance(e.payload, SurveillanceAlert) and e.payload.alert_id == alert_id:
            return e.payload
    return None


def register(app: typer.Typer) -> None:
    @app.command()
    def stor(
        alert_id: Annotated[str, typer.Argument(help="The alert's id")],
        fmt: Annotated[str, typer.Option("--format", help="json or html")] = "json",
        out: Annotated[Path | None, typer.Option("--out", help="Write here, not stdout")] = None,
    ) -> None:
        """Draft a STOR (EU 2025/885, sections 1-4) for one surveillance alert."""
        from schemas.events import AccountOpened
        from streams.stor import build_stor, render_html

        if fmt not in ("json", "html"):
            raise typer.BadParameter("--format must be json or html")
        settings = get_settings()
        try:
            wanted = UUID(alert_id)
        except ValueError as exc:
            raise typer.BadParameter(f"not a UUID: {alert_id}") from exc
        alert = find_alert(settings, wanted)
        if alert is None:
            typer.echo(
                f"alert {alert_id} not found on {settings.topic(Topic.SURVEILLANCE_ALERTS)}",
                err=True,
            )
            raise typer.Exit(1)
        accounts = {
            e.payload.account: e.payload
            for e in read_topic(settings, Topic.ACCOUNTS)
            if isinstance(e.payload, AccountOpened)
        }
        draft = build_stor(alert, accounts, reporting_entity="tradetape operator")
        text = render_html(draft) if fmt == "html" else json.dumps(draft, indent=2, default=str)
        if out is None:
            typer.echo(text)
        else:
            out.write_text(text)
            typer.echo(f"wrote {out}", err=True)

    simulate = typer.Typer(help="Synthetic scenarios")
    app.add_typer(simulate, name="simulate")

    @simulate.command("surveillance")
    def simulate_surveillance(
        seed: Annotated[int, typer.Option(help="Scenario seed")] = 1,
        minutes: Annotated[int, typer.Option(help="Scenario length")] = 5,
        labels: Annotated[Path, typer.Option(help="Where to write episode labels")] = Path(
            "surveillance-labels.json"
        ),
        speed: Annotated[float, typer.Option(help="Replay speed (event time runs ahead)")] = 1.0,
        namespace: Annotated[
            str, typer.Option(help="Prefix for owners, accounts and producer (repeat runs)")
        ] = "",
        dense: Annotated[bool, typer.Option(help="An episode every ~10 s, not ~40 s")] = False,
    ) -> None:
        """Publish market makers, takers and labelled abusive episodes through the engine.

        Episodes: spoofing, layering, wash trading, one order-to-trade/cancel-ratio burst
        and one marking-the-close run (the scenario's end is the reference time). It also
        publishes DetectorConfigChanged for order_to_trade and marking_close (test setups
        only: those settings then apply to every account).
        """
        from streams.scenario import publish_scenario

        n = publish_scenario(get_settings(), seed=seed, minutes=minutes, labels_path=labels,
                             speed=speed, namespace=namespace, dense=dense)  # fmt: skip
        typer.echo(f"published {n} intents; labels in {labels}", err=True)
