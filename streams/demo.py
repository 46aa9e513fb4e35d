"""`make demo` stage: a seeded scenario through the engine's processor and the detectors;
alerts published, projected into PostgreSQL, and one STOR draft written."""

from __future__ import annotations

from collections import Counter

from deploy.settings import Settings
from schemas.events import AccountOpened, SurveillanceAlert


def run(settings: Settings) -> list[str]:
    import psycopg
    from confluent_kafka import Producer

    from deploy.kafka import create_topics, producer_config
    from projections.core import PROJECTIONS
    from projections.projector import Projector
    from schemas import encode
    from schemas.topics import Topic
    from streams.detectors import all_detectors
    from streams.scenario import build_scenario, run_through_engine, score
    from streams.sequencer import sequence_log
    from streams.stor import build_stor, render_html
    from streams.surveillance_state import Surveillance

    create_topics(settings)
    scenario = build_scenario(seed=1, minutes=2)
    events = run_through_engine(scenario)
    released, _ = sequence_log(events)  # folded in the order the app folds
    alerts = Surveillance(all_detectors()).process_batch(released)
    producer = Producer(producer_config(settings))
    for a in alerts:
        key, value, headers = encode(a)
        producer.produce(settings.topic(Topic.SURVEILLANCE_ALERTS), key=key, value=value,
                         headers=headers)  # fmt: skip
    producer.flush(30)
    with Projector(settings, PROJECTIONS["alerts"]) as proj:
        proj.catch_up(idle_timeout=5)
    with psycopg.connect(settings.dsn) as conn:
        row = conn.execute("SELECT count(*) FROM proj_alerts.alerts").fetchone()
    payloads = [a.payload for a in alerts if isinstance(a.payload, SurveillanceAlert)]
    lines = [
        f"surveillance: {len(scenario.inputs)} scenario inputs -> {len(events)} engine events -> "
        f"{len(payloads)} alerts ({_by_pattern(payloads)}); "
        f"proj_alerts.alerts holds {row[0] if row else 0}"
    ]
    for pattern, s in score(scenario.labels, payloads).items():
        lines.append(
            f"surveillance: {pattern}: recall {s.recall:.2f}, precision {s.precision:.2f} "
            f"({s.detected}/{s.episodes} episodes)"
        )
    if payloads:
        accounts = {
            e.payload.account: e.payload for e in events if isinstance(e.payload, AccountOpened)
        }
        out = settings.resolved_data_dir / f"stor-{payloads[0].alert_id}.html"
        out.write_text(render_html(build_stor(payloads[0], accounts, reporting_entity="demo CASP")))
        lines.append(f"surveillance: STOR draft for {payloads[0].pattern} alert -> {out}")
    return lines


def _by_pattern(payloads: list[SurveillanceAlert]) -> str:
    """'LAYERING 1, SPOOFING 2': the alerts per pattern, in name order."""
    counts = Counter(p.pattern for p in payloads)
    return ", ".join(f"{pattern} {n}" for pattern, n in sorted(counts.items()))
