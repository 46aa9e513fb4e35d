"""One KRaft Kafka node (broker + controller) from Apache's jars on Maven Central."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import AdminClient

from deploy.kafka import security_config
from deploy.local.process import any_port_open, ensure_dir, owned_process, stop_process, tail
from deploy.settings import Settings

POM = Path(__file__).with_name("pom.xml")
MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"


class KafkaStartError(RuntimeError):
    pass


NODE_OWNED_PROPS = frozenset(
    {
        "process.roles",
        "node.id",
        "controller.quorum.voters",
        "listeners",
        "advertised.listeners",
        "controller.listener.names",
        "inter.broker.listener.name",
        "listener.security.protocol.map",
        "log.dirs",
    }
)
"""What the node itself decides (its identity, ports, storage): no override may change it."""


def broker_prop_overrides(spec: str) -> dict[str, str]:
    """`Settings.kafka_broker_props` (whitespace-separated key=value pairs) as a dict;
    a malformed pair or a key the node owns is an error, never ignored."""
    out: dict[str, str] = {}
    for pair in spec.split():
        key, sep, value = pair.partition("=")
        if not sep or not key or not value:
            raise KafkaStartError(f"kafka_broker_props: {pair!r} is not key=value")
        if key in NODE_OWNED_PROPS:
            raise KafkaStartError(f"kafka_broker_props: {key} is the local node's own")
        out[key] = value
    return out


def jar_dir(settings: Settings) -> Path:
    return settings.cache_dir.expanduser() / f"kafka-{settings.kafka_version}" / "libs"


def ensure_jars(settings: Settings, *, echo: object = print) -> Path:
    """Fetch the jars once into the user cache; later runs need no network."""
    libs = jar_dir(settings)
    marker = libs / ".complete"
    if marker.exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaStartError("Maven (mvn) is needed once to fetch the Kafka jars")
    if callable(echo):
        echo(f"fetching Apache Kafka {settings.kafka_version} jars from Maven Central ...")
    ensure_dir(libs.parent)
    staging = Path(tempfile.mkdtemp(prefix="libs-", dir=libs.parent))
    cmd = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(POM),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={staging}",
        f"-Dkafka.version={settings.kafka_version}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
        shutil.rmtree(staging, ignore_errors=True)
        raise KafkaStartError(f"mvn failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    if libs.exists():
        shutil.rmtree(libs)
    staging.rename(libs)
    marker.write_text(settings.kafka_version)
    return libs


STOP_SECONDS = 300.0
"""How long `stop` waits for the broker's clean shutdown before SIGKILL (seconds, not
money). Its log manager flushes and closes every partition's log one by one, ~10-20 ms
each on the bench machine's disk: at 30 s (before session 18) a broker holding ~2,000
partitions (a stack after many test namespaces) was killed half-way, and its next start
recovered every log (45 s)."""


@dataclass
class KafkaNode:
    settings: Settings
    killed: bool = False
    """The last `stop` had to SIGKILL the broker (its next start recovers its logs)."""

    @property
    def home(self) -> Path:
        return self.settings.resolved_data_dir / "kafka"

    @property
    def pid_file(self) -> Path:
        return self.home / "kafka.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "broker.log"

    @property
    def config_file(self) -> Path:
        return self.home / "server.properties"

    @property
    def marker(self) -> str:
        """Appears in our broker's command line and no other."""
        return str(self.config_file)

    def _write_config(self) -> None:
        s = self.settings
        logs = self.home / "data"
        listener = "SASL_PLAINTEXT" if s.kafka_local_sasl else "PLAINTEXT"
        security = self._security_props()
        overrides = broker_prop_overrides(s.kafka_broker_props)
        if taken := sorted(set(overrides) & set(security)):
            raise KafkaStartError(
                f"kafka_broker_props: {', '.join(taken)} is the local node's own with"
                " kafka_local_sasl (authentication and ACLs)"
            )
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{s.kafka_controller_port}",
            "listeners": (
                f"{listener}://127.0.0.1:{s.kafka_port},CONTROLLER://127.0.0.1:{s.kafka_controller_port}"
            ),
            "advertised.listeners": f"{listener}://127.0.0.1:{s.kafka_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": listener,
            "listener.security.protocol.map": (f"{listener}:{listener},CONTROLLER:{listener}"),
            **security,
            "log.dirs": str(logs),
            "num.partitions": "6",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "12",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "12",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            "transaction.max.timeout.ms": "900000",
            "log.retention.hours": "-1",
            # Threads per log directory that load the logs at start and flush and close
            # them at a clean stop (Kafka's default: 1, one log after another). With
            # ~2,000 partitions (a stack after many test namespaces) the stop's close
            # took 8-21 s on one thread and 1.1-1.7 s on four, the start's load 16-19 s
            # and 11 s (docs/operations.md, *Stopping*); same flushes, same safety.
            "num.recovery.threads.per.data.dir": "4",
            **overrides,
        }
        # With SASL on, it holds the super user's password: readable by its owner only.
        self.config_file.touch(mode=0o600)
        self.config_file.chmod(0o600)
        self.config_file.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        log4j = self.home / "log4j.properties"
        log4j.write_text(
            "log4j.rootLogger=INFO, file\n"
            "log4j.appender.file=org.apache.log4j.RollingFileAppender\n"
            f"log4j.appender.file.File={self.home / 'server.log'}\n"
            "log4j.appender.file.MaxFileSize=20MB\n"
            "log4j.appender.file.MaxBackupIndex=2\n"
            "log4j.appender.file.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
            "log4j.logger.kafka=INFO\nlog4j.logger.org.apache.kafka=INFO\n"
        )

    def _security_props(self) -> dict[str, str]:
        """`kafka_local_sasl`: clients authenticate with SCRAM on the broker listener, the
        node's controller listener takes PLAIN (KRaft controllers cannot take SCRAM: the
        credentials live in the metadata they serve), both with the super user
        `kafka_sasl_username`, and the StandardAuthorizer refuses whatever no ACL allows
        (`deploy.acls`). Empty for the open default node."""
        s = self.settings
        if not s.kafka_local_sasl:
            return {}
        user, password = s.kafka_sasl_username, s.kafka_sasl_password
        assert user is not None and password is not None  # Settings checked both
        secret = password.get_secret_value()
        if not re.fullmatch(r"[A-Za-z0-9._-]+", user) or not re.fullmatch(r'[^\s"\\,\]]+', secret):
            raise KafkaStartError(
                "kafka_local_sasl: the super user's name may hold only letters, digits,"
                " '.', '_' and '-', and its password no space, quote, backslash, ',' or ']'"
                " (the broker's config and StorageTool's --add-scram syntax)"
            )
        mech = s.kafka_sasl_mechanism
        scram = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required"
            f' username="{user}" password="{secret}";'
        )
        plain = (
            "org.apache.kafka.common.security.plain.PlainLoginModule required"
            f' username="{user}" password="{secret}" user_{user}="{secret}";'
        )
        return {
            "sasl.enabled.mechanisms": mech,
            "sasl.mechanism.inter.broker.protocol": mech,
            f"listener.name.sasl_plaintext.{mech.lower()}.sasl.jaas.config": scram,
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config": plain,
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": f"User:{user}",
            "allow.everyone.if.no.acl.found": "false",
        }

    @property
    def sasl_marker(self) -> Path:
        """Present when the node's storage was formatted with SASL users (`kafka_local_sasl`)."""
        return self.home / "sasl-formatted"

    def _check_sasl_storage(self) -> None:
        """Refuse to start a node whose storage and `kafka_local_sasl` disagree: one formatted
        open has no SCRAM user for its own listener, and one formatted with users started
        open would serve the ACL-guarded log to anyone (fail closed)."""
        formatted = (self.home / "data" / "meta.properties").exists()
        if not formatted:
            return
        if self.settings.kafka_local_sasl and not self.sasl_marker.exists():
            raise KafkaStartError(
                "TRADETAPE_KAFKA_LOCAL_SASL is on, but the local broker's storage was"
                f" formatted without SASL users ({self.home}): use a fresh data directory"
            )
        if not self.settings.kafka_local_sasl and self.sasl_marker.exists():
            raise KafkaStartError(
                "the local broker's storage was formatted with SASL users and ACLs; started"
                " without TRADETAPE_KAFKA_LOCAL_SASL it would serve them to anyone: set it"
                " (with TRADETAPE_KAFKA_SASL_USERNAME and _PASSWORD)"
            )

    @property
    def local_bootstrap(self) -> str:
        """This node's listener (whatever `TRADETAPE_KAFKA_BOOTSTRAP` says)."""
        return f"127.0.0.1:{self.settings.kafka_port}"

    def _scram_argfile(self) -> Path | None:
        """A java launcher argument file (`java @FILE`, readable by its owner only) that
        holds StorageTool's main class and its `--add-scram` for the super user (the
        broker's own listener needs its credential before the first start); None when the
        node is open. The password is never on a command line: `ps` shows every process's
        argv to every user of the host (before, it was on the format command's line while
        StorageTool ran). The launcher expands an argument file only up to the main class,
        so the class is in the file and the format command's other arguments follow it on
        the command line. `deploy.acls.upsert_scram_user` adds the other users."""
        s = self.settings
        if not s.kafka_local_sasl or s.kafka_sasl_password is None:
            return None
        secret = s.kafka_sasl_password.get_secret_value()
        # Quoted: in an argument file an unquoted '#' starts a comment. `_security_props`
        # refused a password holding a quote, a backslash or white space.
        scram = f"{s.kafka_sasl_mechanism}=[name={s.kafka_sasl_username},password={secret}]"
        path = self.home / "format.args"
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(f'{STORAGE_TOOL}\nformat\n--add-scram\n"{scram}"\n')
        return path

    def running(self) -> bool:
        return owned_process(self.pid_file, self.marker) is not None

    def ready(self, timeout: float = 2.0, bootstrap: str | None = None) -> bool:
        """Whether `bootstrap` (default: the settings' one, an external cluster's if set)
        answers a metadata request."""
        servers = bootstrap or self.settings.bootstrap
        if not any_port_open(servers):
            return False  # no client, so no librdkafka connection errors on stderr
        try:
            AdminClient(
                {
                    "bootstrap.servers": servers,
                    "socket.timeout.ms": 2000,
                    **security_config(self.settings),
                }
            ).list_topics(timeout=timeout)
        except Exception:
            return False
        return True

    def start(self, *, timeout: float = 120.0, echo: object = print) -> bool:
        """Start the broker unless ours is already running. Returns True if it started it."""
        if self.running():
            return False
        libs = ensure_jars(self.settings, echo=echo)
        ensure_dir(self.home)
        self._check_sasl_storage()
        self._write_config()
        java = shutil.which("java")
        if java is None:
            raise KafkaStartError("java is not on PATH")
        cp = f"{libs}/*"
        if not (self.home / "data" / "meta.properties").exists():
            cluster_id = self.home / "cluster.id"
            if not cluster_id.exists():
                # Like Kafka's Uuid.randomUuid: an id starting with '-' would be parsed
                # by StorageTool as an option ("--cluster-id: expected one argument").
                encoded = "-"
                while encoded.startswith("-"):
                    encoded = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
                cluster_id.write_text(encoded)
            argfile = self._scram_argfile()
            tool = [f"@{argfile}"] if argfile is not None else [STORAGE_TOOL, "format"]
            try:
                fmt = subprocess.run(
                    [
                        java,
                        "-cp",
                        cp,
                        *tool,
                        "-t",
                        cluster_id.read_text().strip(),
                        "-c",
                        str(self.config_file),
                        "--ignore-formatted",
                    ],
                    capture_output=True,
                    text=True,
                    check=False,
                )
            finally:
                if argfile is not None:
                    argfile.unlink(missing_ok=True)
            if fmt.returncode != 0:
                raise KafkaStartError(f"StorageTool format failed:\n{fmt.stdout}\n{fmt.stderr}")
            if self.settings.kafka_local_sasl:
                self.sasl_marker.write_text(f"User:{self.settings.kafka_sasl_username}\n")
        log = self.log_file.open("ab")
        proc = subprocess.Popen(
            [
                java,
                f"-Xmx{self.settings.kafka_heap}",
                "-Xms128m",
                "-XX:+UseG1GC",
                *self.settings.kafka_jvm_opts.split(),
                f"-Dlog4j.configuration=file:{self.home / 'log4j.properties'}",
                f"-Dkafka.logs.dir={self.home}",
                "-cp",
                cp,
                MAIN_CLASS,
                str(self.config_file),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=self.home,
        )
        self.pid_file.write_text(str(proc.pid))

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise KafkaStartError(
                    f"broker exited with {proc.returncode}; last lines of its log:\n"
                    f"{tail(self.log_file)}\n{tail(self.home / 'server.log')}"
                )
            if self.ready(bootstrap=self.local_bootstrap):  # the broker it started
                return True
            time.sleep(0.5)
        raise KafkaStartError(
            f"broker did not answer metadata requests within {timeout:.0f}s; last lines:\n"
            f"{tail(self.home / 'server.log')}"
        )

    def stop(self) -> bool:
        proc = owned_process(self.pid_file, self.marker)
        if proc is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        self.killed = stop_process(proc, timeout=STOP_SECONDS)
        self.pid_file.unlink(missing_ok=True)
        return True

    def pid(self) -> int | None:
        proc = owned_process(self.pid_file, self.marker)
        return proc.pid if proc else None
