"""`tradetape up|down|status`: the broker, the database, topics and migrations together.

With `TRADETAPE_KAFKA_BOOTSTRAP` or `TRADETAPE_POSTGRES_DSN` set, `up` starts no local
broker or database in their place: it checks that the external one answers, and creates
the topics and applies the migrations there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from deploy import groups
from deploy.groups import group_id
from deploy.kafka import (
    COORDINATOR_NOT_READY,
    admin_client,
    asked_again,
    create_topics,
    declared_partitions_error,
    describe_partition_changes,
    end_offsets,
    partition_changes,
)
from deploy.local.kafka_node import STOP_SECONDS, KafkaNode, KafkaStartError
from deploy.local.postgres_node import PostgresNode, PostgresStartError
from deploy.local.process import port_open
from deploy.settings import Settings
from schemas.topics import TOPICS

Echo = Callable[[str], None]


class StackError(RuntimeError):
    pass


def topic_listing(settings: Settings, names: list[str]) -> dict[str, list[str]]:
    """The topics under the prefix by kind: the catalogue's there (`topics`) and not
    (`missing_topics`), surveillance's faust app's own changelogs and repartitions
    (`internal_topics`, named after its app id) and any other (`other_topics`). `status`
    counted them all as one, `(23 topics)` of a 15-topic catalogue."""
    catalogue = {settings.topic(t) for t in TOPICS}
    internal = group_id(settings.topic_prefix, groups.SURVEILLANCE) + "-"
    return {
        "topics": sorted(t for t in names if t in catalogue),
        "missing_topics": sorted(catalogue - set(names)),
        "internal_topics": sorted(t for t in names if t.startswith(internal)),
        "other_topics": sorted(
            t for t in names if t not in catalogue and not t.startswith(internal)
        ),
    }


@dataclass
class LocalStack:
    settings: Settings
    echo: Echo = field(default=print)

    @property
    def kafka(self) -> KafkaNode:
        return KafkaNode(self.settings)

    @property
    def postgres(self) -> PostgresNode:
        return PostgresNode(self.settings)

    def up(self) -> dict[str, bool]:
        """Start what is not running; returns which components this call started (an
        external cluster or database, when set, is checked instead, never replaced)."""
        s = self.settings
        s.resolved_data_dir.mkdir(parents=True, exist_ok=True)
        started = {"kafka": False, "postgres": False}
        try:
            if s.kafka_bootstrap:
                self._check_external_kafka()
            elif self.kafka.running():
                self.echo(f"kafka: already running at {self.kafka.local_bootstrap}")
            else:
                self._refuse_a_stranger("kafka", s.kafka_port, "TRADETAPE_KAFKA_PORT")
                self.echo(f"kafka: starting KRaft node on {self.kafka.local_bootstrap} ...")
                started["kafka"] = self.kafka.start(echo=self.echo)
                self.echo("kafka: ready")
            if s.postgres_dsn:
                self._check_external_postgres()
            elif self.postgres.running():
                self.echo(f"postgres: already running on port {s.postgres_port}")
            else:
                self._refuse_a_stranger("postgres", s.postgres_port, "TRADETAPE_POSTGRES_PORT")
                self.echo(f"postgres: starting on 127.0.0.1:{s.postgres_port} ...")
                started["postgres"] = self.postgres.start()
                self.echo("postgres: ready")
        except (KafkaStartError, PostgresStartError) as exc:
            raise StackError(str(exc)) from exc
        created = create_topics(s)
        if created:
            self.echo(f"topics: created {len(created)}")
        from projections.migrate import apply_migrations

        applied = apply_migrations(s.dsn, readonly_role=s.readonly_role, pin_reader=False)
        if applied:
            self.echo(f"migrations: applied {', '.join(applied)}")
        if s.postgres_dsn:
            self.echo(
                f"postgres: the read-only role {s.readonly_role} of an external database is"
                " hardened by its superuser (projections.migrate.harden_reader;"
                " docs/operations.md, External cluster and database)"
            )
        else:
            self.harden_reader()
        if (why := declared_partitions_error(s)) is not None:
            raise StackError(f"topics: {why}")
        return started

    def _check_external_kafka(self) -> None:
        bootstrap = self.settings.bootstrap
        if not self.kafka.ready(timeout=10):
            raise StackError(
                f"kafka: the external cluster {bootstrap} (TRADETAPE_KAFKA_BOOTSTRAP) does"
                " not answer metadata requests"
            )
        self.echo(
            f"kafka: external cluster {bootstrap} (TRADETAPE_KAFKA_BOOTSTRAP) is reachable;"
            " no local broker started"
        )

    def _check_external_postgres(self) -> None:
        shown = self.settings.redacted_dsn()
        why = _connect_error(self.settings.dsn)
        if why is not None:
            raise StackError(
                f"postgres: the external database {shown} (TRADETAPE_POSTGRES_DSN) does not"
                f" accept connections: {why}"
            )
        self.echo(
            f"postgres: external database {shown} (TRADETAPE_POSTGRES_DSN) is reachable;"
            " no local server started"
        )

    def _refuse_a_stranger(self, what: str, port: int, setting: str) -> None:
        """Something that is not this data directory's server already holds the port: a
        stack started from another data directory, most likely. Starting ours would fail
        on the port (and `status`/`down` here would never see the other one)."""
        if port_open("127.0.0.1", port):
            raise StackError(
                f"{what}: 127.0.0.1:{port} is in use, but not by a server of"
                f" {self.settings.resolved_data_dir}: another stack (`tradetape status"
                f" --data-dir DIR`), or another program; set {setting} to use another port"
            )

    def harden_reader(self) -> None:
        """The reader's superuser-only hardening (`projections.migrate.harden_reader`): the
        local stack holds the admin role, so no operator step is left to forget."""
        import psycopg

        from projections.migrate import harden_reader

        s = self.settings
        with psycopg.connect(self.postgres.admin_dsn(s.postgres_db), autocommit=True) as conn:
            harden_reader(conn, s.readonly_role)

    def down(self) -> dict[str, bool]:
        """Stop this data directory's PostgreSQL, then its broker; a line for each before
        it is stopped (the broker's controlled shutdown takes seconds: `down` was silent
        for ~7 s after a demo)."""
        stopped: dict[str, bool] = {}
        kafka = self.kafka
        for name, node in (("postgres", self.postgres), ("kafka", kafka)):
            if (pid := node.pid()) is not None:
                self.echo(f"{name}: stopping (pid {pid}) ...")
            stopped[name] = node.stop()
        if kafka.killed:
            self.echo(
                f"kafka: did not stop within {STOP_SECONDS:.0f} s: killed (its next start"
                " recovers every log)"
            )
        return stopped

    def status(self) -> dict[str, Any]:
        s = self.settings
        kafka_ok = self.kafka.ready() if (s.kafka_bootstrap or self.kafka.running()) else False
        topics: list[str] = []
        changed: dict[str, tuple[int, int]] = {}
        if kafka_ok:
            try:
                md = admin_client(s).list_topics(timeout=5)
                topics = sorted(
                    t for t in md.topics if t.startswith(s.topic_prefix) and not t.startswith("__")
                )
                changed = partition_changes(
                    s, {t: len(md.topics[t].partitions) for t in topics if not md.topics[t].error}
                )
            except Exception:
                kafka_ok = False
        listing = topic_listing(s, topics)
        pg_ok = self.postgres.ready() if (s.postgres_dsn or self.postgres.running()) else False
        if s.postgres_dsn:
            pg_ok = _can_connect(s.dsn)
        result: dict[str, Any] = {
            "ok": kafka_ok and pg_ok,
            "data_dir": str(s.resolved_data_dir),
            "kafka": {
                "ok": kafka_ok,
                "bootstrap": s.bootstrap,
                "pid": self.kafka.pid(),
                "version": s.kafka_version,
                **listing,
            },
            "postgres": {"ok": pg_ok, "dsn": s.redacted_dsn(), "pid": self.postgres.pid()},
        }
        # `status` run from another directory finds another data directory (the nearest
        # .tradetape/), and said only "DOWN" of a stack that was up (the newcomer's
        # audit): a port of this data directory's server that answers is named.
        for what, local, port in (
            ("kafka", not s.kafka_bootstrap, s.kafka_port),
            ("postgres", not s.postgres_dsn, s.postgres_port),
        ):
            if local and not result[what]["ok"] and port_open("127.0.0.1", port):
                result[what]["elsewhere"] = (
                    f"127.0.0.1:{port} answers, but not a server of this data directory:"
                    " another stack's (run from its directory, or `--data-dir DIR`), or"
                    " another program"
                )
        if not (s.kafka_bootstrap or s.postgres_dsn) and not any(
            result[w]["ok"] or result[w].get("elsewhere") for w in ("kafka", "postgres")
        ):
            result["hint"] = "nothing runs for this data directory: `tradetape up` starts it"
        if changed:
            # Fail closed: the engine decides every intent as STALE_STATE, and every
            # projection of these topics is DEGRADED (deploy.kafka.partition_changes).
            result["kafka"]["partitions_changed"] = describe_partition_changes(changed)
            result["degraded"] = True
        if pg_ok:
            result["projections"] = _projection_health(s.dsn)
            if kafka_ok:
                _add_projection_lag(s, result["projections"])
            if any(p.get("degraded") for p in result["projections"].values()):
                result["degraded"] = True
        if kafka_ok:
            result["engine"] = _engine_group(s)
        if kafka_ok and s.engine_snapshots:
            result["engine_snapshots"] = _engine_snapshots(s)
        return result


def _engine_group(
    settings: Settings,
    timeout: float = 5.0,  # seconds, not money
) -> dict[str, Any]:
    """The engine group's state, its members and the committed records of its inputs it
    has not decided yet (`lag`, per topic in `inputs`). A worker that holds (the log went
    back, partitions changed, a rebuild incomplete) keeps its group membership and stops
    committing: its inputs' lag grows while `members` stays. Lag is counted as the
    projections' is (`projections.lag`: records, not offsets; a partition the group never
    committed counts from its first offset)."""
    try:
        from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

        from engine.worker import INPUT_TOPICS
        from projections.lag import committed_lag, gap_lag

        admin = admin_client(settings)
        gid = group_id(settings.topic_prefix, groups.ENGINE)
        desc = asked_again(
            lambda: admin.describe_consumer_groups([gid], request_timeout=timeout)[gid].result(),
            timeout,
            waiting=COORDINATOR_NOT_READY,
        )
        listed = asked_again(
            lambda: admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(gid)], request_timeout=timeout
            )[gid].result(),
            timeout,
            waiting=COORDINATOR_NOT_READY,
        )
        names = [settings.topic(t) for t in INPUT_TOPICS]
        metadata = admin.list_topics(timeout=timeout).topics
        every = [
            TopicPartition(n, p)
            for n in names
            if n in metadata and metadata[n].error is None
            for p in sorted(metadata[n].partitions)
        ]
        ends = end_offsets(admin, every, timeout=timeout)
        starts = end_offsets(admin, every, earliest=True, timeout=timeout)
        stored = {
            (tp.topic, tp.partition): tp.offset
            for tp in listed.topic_partitions or []
            if tp.offset >= 0 and (tp.topic, tp.partition) in ends
        }
        # never committed: from the partition's first offset (what the group reads first)
        for tp in ends:
            stored.setdefault(tp, starts[tp])
        gaps = [(t, n, o) for (t, n), o in stored.items() if o < ends[(t, n)]]
        lag = committed_lag(stored, ends, gap_lag(settings, gaps, ends, timeout=timeout))
        return {
            "group": gid,
            "state": desc.state.name,
            "members": len(desc.members),
            "lag": sum(lag.values()),
            "inputs": {n: sum(v for (t, _p), v in lag.items() if t == n) for n in names},
        }
    except Exception as exc:  # status reports, it never crashes
        return {"error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}


def _engine_snapshots(settings: Settings) -> dict[str, Any]:
    """The newest usable slice per engine partition and the offsets after it."""
    try:
        from engine.snapshot_io import slice_status

        return {str(p): v for p, v in slice_status(settings).items()}
    except Exception as exc:  # status reports, it never crashes
        return {"error": str(exc)}


def _can_connect(dsn: str) -> bool:
    return _connect_error(dsn) is None


def _connect_error(dsn: str) -> str | None:
    """Why a connection to `dsn` fails (its first line), or None if it succeeds."""
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=5):
            return None
    except psycopg.Error as exc:
        lines = str(exc).strip().splitlines()
        return lines[0] if lines else type(exc).__name__


def _add_projection_lag(settings: Settings, health: dict[str, dict[str, Any]]) -> None:
    """Each projection's lag over every partition its topics have now (a partition with
    no stored offset counts from 0); `lag` None if it cannot be measured."""
    try:
        from projections.lag import status_lag

        lags = status_lag(settings)
    except Exception as exc:  # status reports, it never crashes
        for entry in health.values():
            entry["lag"] = None
            entry["lag_error"] = str(exc)
        return
    for name, lag in lags.items():
        health.setdefault(name, {}).update(lag)


def _projection_health(dsn: str) -> dict[str, dict[str, Any]]:
    """Per projection: stored offsets, quarantined events and a fold version other than
    the code's (each marks it degraded), and a rebuild's build schema if there is one."""
    import psycopg

    from projections.core import PROJECTIONS

    # Every figure the table shows, for every projection: `--json` lacked `consumed`
    # of one that had stored no offsets yet, and `quarantined`/`degraded` unless set.
    # `lag` stays None where it cannot be measured (the broker down).
    health: dict[str, dict[str, Any]] = {
        name: {"consumed": 0, "quarantined": 0, "degraded": False, "lag": None}
        for name in PROJECTIONS
    }
    try:
        with psycopg.connect(dsn, connect_timeout=2) as conn:
            for name, offsets in conn.execute(
                "SELECT projection, sum(next_offset) FROM projection_offsets GROUP BY 1 ORDER BY 1"
            ):
                health.setdefault(name, {})["consumed"] = int(offsets)
            for name, count in conn.execute(
                "SELECT projection, count(*) FROM projection_quarantine GROUP BY 1 ORDER BY 1"
            ):
                entry = health.setdefault(name, {})
                entry["quarantined"] = int(count)
                entry["degraded"] = True
            from projections.rebuild import leftover_builds

            for name, schema in leftover_builds(conn).items():
                # a rebuild under way, or one killed before its clean-up: not degraded
                health.setdefault(name, {})["build_schema"] = schema
            from projections.foldversion import mismatches

            for name, (have, want) in mismatches(conn).items():
                # its projector refuses to run until rebuilt (projections.foldversion)
                entry = health.setdefault(name, {})
                entry["rebuild_needed"] = f"folded by fold version {have}, code folds {want}"
                entry["degraded"] = True
    except psycopg.Error:
        return {}
    return health
