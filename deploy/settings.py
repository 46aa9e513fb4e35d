"""Runtime settings from `TRADETAPE_*` environment variables and an optional TOML file.

Precedence: explicit arguments, then environment, then the TOML file named by
`TRADETAPE_CONFIG` (default: the nearest `tradetape.toml`, `find_config_file`), then these defaults,
which suit the embedded local stack. No secret has a default here.

Mistakes are errors, never silently ignored (`SettingsError`, which the CLI prints as one
`error:` line and exits 2 on): a `TRADETAPE_CONFIG` that does not exist, a file that is
not TOML, a key in it or a `TRADETAPE_*` environment variable that is no setting (the
nearest valid name is suggested), a value that does not validate.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import stat
import tomllib
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from schemas.topics import TOPICS, Topic
from schemas.types import Lei

DATA_DIR_NAME = ".tradetape"
_log = logging.getLogger(__name__)


class SettingsError(ValueError):
    """Settings that cannot be used. The message names the setting; the CLI prints it as
    one `error:` line and exits 2 (which also stops a `tradetape run` group)."""


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tradetape"


PROJECT_ROOT_MARKERS = (".git", "tradetape.toml", "pyproject.toml")
"""A directory holding one of these is a project root: `find_data_dir` looks no higher."""


def find_data_dir(start: Path | None = None) -> Path:
    """The default data directory, found the way git finds `.git` (with git's checks after
    CVE-2022-24765), so every command run from a subdirectory of a project reaches the
    stack `up` made at its top.

    From `start` (the working directory) upwards, the nearest `.tradetape` entry that is
    a directory, looking no higher than the first project root on the way: a directory
    holding `.git`, `tradetape.toml` or `pyproject.toml` (itself included). A directory
    above a clone (a `~/.tradetape`, a `/tmp/.tradetape`) is never used. The one found is
    used only if it is a real directory (not a symbolic link) owned by the current user;
    one owned by someone else is ignored with a warning naming it (anyone can create
    `/tmp/.tradetape`, and it would get the keys and data of whoever works below it).
    Else, and when there is none, `./.tradetape` in `start` (where `up` creates it)."""
    here = (start or Path.cwd()).absolute()
    fallback = here / DATA_DIR_NAME
    found = _nearest_entry(
        DATA_DIR_NAME,
        here,
        lambda p, st: stat.S_ISDIR(st.st_mode) or (stat.S_ISLNK(st.st_mode) and p.is_dir()),
    )
    if found is None:
        return fallback
    candidate, st = found
    if candidate == fallback:
        # ./.tradetape is the default anyway (a symbolic link there is the user's).
        if stat.S_ISDIR(st.st_mode) and st.st_uid != os.getuid():
            _log.warning(
                "%s is owned by uid %d, not by you (uid %d); it is used because it"
                " is in the working directory (--data-dir chooses another)",
                candidate,
                st.st_uid,
                os.getuid(),
            )
        return candidate
    return (
        candidate
        if _trusted_above(candidate, st, f"the data directory; using {fallback}")
        else fallback
    )


def _nearest_entry(
    name: str, here: Path, fits: Callable[[Path, os.stat_result], bool]
) -> tuple[Path, os.stat_result] | None:
    """From `here` upwards, the nearest entry `name` that `fits` (with its `lstat`),
    looking no higher than the first project root on the way (a directory holding one of
    `PROJECT_ROOT_MARKERS`, itself included)."""
    for directory in (here, *here.parents):
        candidate = directory / name
        try:
            st = candidate.lstat()
        except OSError:
            st = None
        if st is not None and fits(candidate, st):
            return candidate, st
        if any((directory / marker).exists() for marker in PROJECT_ROOT_MARKERS):
            break
    return None


def _trusted_above(candidate: Path, st: os.stat_result, what: str) -> bool:
    """Whether `candidate`, found above the working directory, may be used as `what`: only
    a real entry (not a symbolic link) owned by the current user; else a warning names it
    (anyone can create `/tmp/.tradetape` or `/tmp/tradetape.toml`)."""
    if stat.S_ISLNK(st.st_mode):
        _log.warning("%s is a symbolic link: not used as %s", candidate, what)
        return False
    if st.st_uid != os.getuid():
        _log.warning(
            "%s is owned by uid %d, not by you (uid %d): not used as %s",
            candidate,
            st.st_uid,
            os.getuid(),
            what,
        )
        return False
    return True


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TRADETAPE_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    data_dir: Path = Field(
        default_factory=find_data_dir,
        description="Broker, database, logs, keys (default: the nearest .tradetape"
        " directory at or above the working directory, up to the project root, if you own"
        " it; else ./.tradetape)",
    )
    cache_dir: Path = Field(default_factory=_default_cache_dir, description="Kafka jars")

    kafka_version: str = "3.9.1"
    kafka_port: int = 39092
    kafka_controller_port: int = 39093
    kafka_bootstrap: str | None = Field(None, description="Use an external cluster instead")
    kafka_heap: str = "768m"
    kafka_jvm_opts: str = Field(
        "", description="Extra JVM flags for the local broker (like KAFKA_JVM_PERFORMANCE_OPTS)"
    )
    kafka_broker_props: str = Field(
        "",
        description="Extra server.properties for the local broker, whitespace-separated"
        " key=value pairs, over the node's own (not its identity: listeners, ports, roles,"
        " node id, log dirs)",
    )
    kafka_sasl_username: str | None = Field(
        None,
        min_length=1,
        description="SASL user every Kafka client authenticates as (with the password;"
        " unset: no authentication, the local stack's default)",
    )
    kafka_sasl_password: SecretStr | None = Field(
        None, validate_default=True, description="That user's password"
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism of the clients and the local broker"
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL"] | None = Field(
        None,
        validate_default=True,
        description="Kafka security protocol (default: SASL_PLAINTEXT with a SASL user,"
        " else PLAINTEXT)",
    )
    kafka_ssl_ca_location: Path | None = Field(
        None, description="CA certificate(s) a SASL_SSL client verifies the brokers with"
    )
    kafka_local_sasl: bool = Field(
        False,
        validate_default=True,
        description="The local broker authenticates clients (SASL/SCRAM) and authorizes"
        " them by ACL, with the SASL user as its super user; only on a fresh data directory",
    )
    topic_prefix: str = Field(
        "", description="Namespace for every topic name and consumer-group id"
    )
    default_partitions: int | None = Field(
        None,
        ge=1,
        description="Partitions of each partitioned catalogue topic at creation (the"
        " single-partition ones keep one: `deploy.kafka.partition_count`)",
    )

    postgres_port: int = 39432
    postgres_db: str = "tradetape"
    postgres_user: str = "tradetape"
    postgres_password: SecretStr | None = None
    postgres_host: str = "127.0.0.1"
    postgres_dsn: str | None = Field(None, description="Use an external database instead")
    postgres_fsync: bool = Field(True, description="Off only for throwaway test stacks")
    readonly_role: str = Field(
        "tradetape_reader", description="Role for analysts' SQL (`tradetape query`)"
    )
    readonly_password: SecretStr | None = Field(
        None, description="The read-only role's password, if the server asks for one"
    )

    projection_fetch_wait_ms: int = Field(
        50,
        ge=1,
        le=1_000,
        description="How long the broker may hold a live projector's fetch for 64 KB to"
        " gather: a floor under its lag, and what bounds its batches (and transactions)"
        " a second while records trickle in. 50 ms: lag p99 87-89 ms at 5,000 events/s on"
        " 2 cores, against 144-159 ms and 0.4 more cores busy at 20 ms (docs/benchmarks.md)",
    )
    projection_partition_check_seconds: float = Field(
        5.0,
        description="How often a live projector looks for partitions added to its topics"
        " (seconds, not money; 0 turns the check off)",
    )

    engine_snapshots: bool = Field(
        True,
        description="The snapshotter (`tradetape run snapshotter`) writes per-partition"
        " slices of the engine's state to engine.snapshots and engine workers start from"
        " them (false: neither write nor read; a full replay of the log)",
    )
    engine_snapshot_load: bool = Field(
        True, description="false: ignore existing snapshots at start (force a full replay)"
    )
    engine_incremental_handover: bool = Field(
        True,
        description="At a rebalance a worker keeps its state, forgets the partitions it gave"
        " up and folds only the ones it gained (false: rebuild every owned partition from the"
        " log at each assignment)",
    )
    engine_snapshot_every: int = Field(
        20_000, ge=1, description="Write a partition's slice after this many own output events"
    )
    engine_snapshot_seconds: float = Field(
        300.0,
        gt=0,
        description="...or this many seconds after its last one if it has new output"
        " (seconds, not money)",
    )
    engine_snapshotter_nice: int = Field(
        10,
        ge=0,
        le=19,
        description="The snapshotter's niceness: on a busy machine it takes only the CPU"
        " the workers and the broker leave (a late slice means a longer replay, nothing else)",
    )
    engine_session_timeout_ms: int = Field(
        10_000,
        ge=6_000,
        description="How long the group waits for a silent engine worker before its"
        " partitions move to the others (a crash, or a clean stop: static members do not"
        " leave the group). Shorter means faster failover and more false ones on a loaded"
        " machine; the broker's group.min.session.timeout.ms is 6,000",
    )
    engine_partition_check_seconds: float = Field(
        5.0,
        ge=0,
        description="How often an engine worker looks for partitions added to the topics it"
        " reads in full (reference topics, market data); a new one means a rebuild, so a"
        " kill switch or limit on it is never missed (seconds, not money; 0: off)",
    )

    report_lei: Lei | None = Field(
        None,
        description="The reporting firm's LEI (ISO 17442): ExctgPty and SubmitgPty of the"
        " ISO 20022 transaction reports and their header's sender; `tradetape export"
        " auth016` refuses without it",
    )
    report_recipient: str | None = Field(
        None,
        min_length=1,
        max_length=35,
        description="Whom the reports go to (the header's To): an LEI, or another identifier"
        " of the competent authority; `tradetape export auth016` refuses without it",
    )
    report_dti: dict[str, str] = Field(
        default_factory=dict,
        description="Asset code -> its ISO 24165 Digital Token Identifier (DTI); a report"
        " with an asset not here is refused, naming it",
    )
    report_mic: dict[str, str] = Field(
        default_factory=lambda: {"paper": "XOFF"},
        description="Venue (a fill's `venue`) -> ISO 10383 MIC for the reports (TradVn,"
        " the counterparty); XOFF: off venue",
    )
    report_currency: dict[str, str] = Field(
        default_factory=dict,
        description="Quote asset -> the ISO 4217 currency its prices are stated in as a"
        " monetary value (a stablecoin's peg: USDC = USD is the firm's statement)",
    )

    log_level: str = "INFO"

    @field_validator("kafka_sasl_password")
    @classmethod
    def _password_with_user(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        user = info.data.get("kafka_sasl_username")
        if user is not None and value is None:
            raise ValueError("TRADETAPE_KAFKA_SASL_USERNAME is set: its password is needed too")
        if user is None and value is not None and "kafka_sasl_username" not in info.data:
            return value  # the user failed validation itself: its error says why
        if user is None and value is not None:
            raise ValueError("a SASL password without TRADETAPE_KAFKA_SASL_USERNAME")
        return value

    @field_validator("kafka_security_protocol")
    @classmethod
    def _protocol_with_user(cls, value: str | None, info: ValidationInfo) -> str | None:
        user = info.data.get("kafka_sasl_username")
        if value is not None and value.startswith("SASL") and user is None:
            raise ValueError(f"{value} needs TRADETAPE_KAFKA_SASL_USERNAME and its password")
        if value == "PLAINTEXT" and user is not None:
            raise ValueError(
                "PLAINTEXT would not send TRADETAPE_KAFKA_SASL_USERNAME's credentials:"
                " SASL_PLAINTEXT or SASL_SSL"
            )
        return value

    @field_validator("kafka_local_sasl")
    @classmethod
    def _local_sasl_with_user(cls, value: bool, info: ValidationInfo) -> bool:
        if value and info.data.get("kafka_sasl_username") is None:
            raise ValueError(
                "the local broker's super user is TRADETAPE_KAFKA_SASL_USERNAME: set it"
                " and its password"
            )
        if value and info.data.get("kafka_security_protocol") == "SASL_SSL":
            raise ValueError("the local broker listens with SASL_PLAINTEXT, not SASL_SSL")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_path = config_file()
        if toml_path is not None:
            sources.append(_CheckedTomlSource(settings_cls, toml_path))
        return tuple(sources)

    @property
    def bootstrap(self) -> str:
        return self.kafka_bootstrap or f"127.0.0.1:{self.kafka_port}"

    @property
    def kafka_protocol(self) -> str:
        """The security protocol the clients use (`kafka_security_protocol`, else
        SASL_PLAINTEXT with a SASL user, else PLAINTEXT)."""
        if self.kafka_security_protocol is not None:
            return self.kafka_security_protocol
        return "PLAINTEXT" if self.kafka_sasl_username is None else "SASL_PLAINTEXT"

    @property
    def dsn(self) -> str:
        """Owner DSN for projectors and migrations."""
        if self.postgres_dsn:
            return self.postgres_dsn
        auth = self.postgres_user
        if self.postgres_password is not None:
            auth += ":" + self.postgres_password.get_secret_value()
        return f"postgresql://{auth}@{self.postgres_host}:{self.postgres_port}/{self.postgres_db}"

    @property
    def readonly_dsn(self) -> str:
        """DSN for analyst SQL: a role that can only read, on the same server and database
        as `dsn` (`TRADETAPE_POSTGRES_DSN` when set: its host, port, database, TLS and other
        parameters are kept); only the role and its password differ. The owner's password
        is never passed on: the reader's is `readonly_password`, else libpq's own sources
        (`PGPASSWORD`, `~/.pgpass`)."""
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        params = conninfo_to_dict(self.dsn)
        params.pop("password", None)
        params["user"] = self.readonly_role
        if self.readonly_password is not None:
            params["password"] = self.readonly_password.get_secret_value()
        return make_conninfo("", **params)

    def redacted_dsn(self) -> str:
        """`dsn` with its password (from `TRADETAPE_POSTGRES_PASSWORD` or inside
        `TRADETAPE_POSTGRES_DSN`) shown as `***`."""
        return redact_dsn(self.dsn)

    def topic(self, topic: Topic) -> str:
        return TOPICS[topic].full_name(self.topic_prefix)

    def with_overrides(self, **changes: Any) -> Settings:
        data = self.model_dump()
        data.update(changes)
        return Settings.model_validate(data)

    @property
    def resolved_data_dir(self) -> Path:
        return self.data_dir.expanduser().resolve()

    def child_env(self, **extra: str) -> dict[str, str]:
        """This process's environment with the variables that put a child process (a
        `tradetape` command or component) on this stack: its local broker's and
        database's ports, database, topic prefix and data directory; then `extra`
        (`TRADETAPE_LOG_LEVEL="WARNING"`, say), over them."""
        env = dict(os.environ)
        env.update(
            TRADETAPE_KAFKA_PORT=str(self.kafka_port),
            TRADETAPE_KAFKA_CONTROLLER_PORT=str(self.kafka_controller_port),
            TRADETAPE_TOPIC_PREFIX=self.topic_prefix,
            TRADETAPE_POSTGRES_PORT=str(self.postgres_port),
            TRADETAPE_POSTGRES_DB=self.postgres_db,
            TRADETAPE_DATA_DIR=str(self.resolved_data_dir),
        )
        env.update(extra)
        return env


def redact_dsn(dsn: str) -> str:
    """A libpq DSN (URI or key=value) with its password shown as `***`."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    try:
        if not conninfo_to_dict(dsn).get("password"):
            return dsn
    except Exception:  # unparsable: psycopg reports it where it is used; show nothing
        return "(unparsable DSN)"
    if "://" not in dsn:
        return make_conninfo(dsn, password="***")
    parts = urlsplit(dsn)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, hosts = netloc.rsplit("@", 1)
        if ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:***@{hosts}"
    query = urlencode(
        [(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query)], safe="*"
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


CONFIG_FILE_NAME = "tradetape.toml"


def find_config_file(start: Path | None = None) -> Path | None:
    """The default settings file, found as the data directory is (`find_data_dir`): from
    `start` (the working directory) upwards, the nearest `tradetape.toml`, looking no
    higher than the first project root on the way (a directory holding `.git`,
    `tradetape.toml` or `pyproject.toml`, itself included). One above `start` is used
    only if it is a regular file (not a symbolic link) owned by the current user; else it
    is ignored with a warning naming it (anyone can write `/tmp/tradetape.toml`, and it
    could point every command below it at their broker). The one in `start` itself is
    used whoever owns it (a warning says so if another user does), as before. None if
    there is none. Before session 15 only `./tradetape.toml` was read: from a
    subdirectory every command ran on the defaults without a word."""
    here = (start or Path.cwd()).absolute()
    found = _nearest_entry(CONFIG_FILE_NAME, here, lambda _p, _st: True)
    if found is None:
        return None
    candidate, st = found
    if candidate.parent == here:
        if not candidate.is_file():
            return None
        if stat.S_ISREG(st.st_mode) and st.st_uid != os.getuid():
            _log.warning(
                "%s is owned by uid %d, not by you (uid %d); it is read because it"
                " is in the working directory",
                candidate,
                st.st_uid,
                os.getuid(),
            )
        return candidate
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
        return None
    return candidate if _trusted_above(candidate, st, "the settings file") else None


def config_file() -> Path | None:
    """The TOML file to read: `TRADETAPE_CONFIG` (which must exist), else the nearest
    `tradetape.toml` (`find_config_file`)."""
    named = os.environ.get("TRADETAPE_CONFIG")
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            what = "is not a file" if path.exists() else "does not exist"
            raise SettingsError(f"TRADETAPE_CONFIG names {path}, which {what}")
        return path
    return find_config_file()


def _nearest(name: str, valid: list[str]) -> str:
    near = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    return f" (did you mean {near[0]}?)" if near else ""


RELATIVE_TO_FILE = ("data_dir", "cache_dir")
"""Path settings that, relative in the settings file, are relative to its directory."""


class _CheckedTomlSource(TomlConfigSettingsSource):
    """The TOML file, refused whole if it is not TOML or has a key that is no setting."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        self.path = path
        try:
            super().__init__(settings_cls, toml_file=path)
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{path} is not valid TOML: {exc}") from exc
        except OSError as exc:
            raise SettingsError(f"cannot read {path}: {exc}") from exc
        fields = sorted(settings_cls.model_fields)
        for key in RELATIVE_TO_FILE:
            value = self.toml_data.get(key)
            if isinstance(value, str) and not Path(value).expanduser().is_absolute():
                # Relative to the file, which may be a directory or more above the
                # working directory (`find_config_file`).
                self.toml_data[key] = self.init_kwargs[key] = str(path.absolute().parent / value)
        unknown = [k for k in self.toml_data if k not in settings_cls.model_fields]
        if unknown:
            raise SettingsError(
                "; ".join(f"{path}: unknown setting {k!r}{_nearest(k, fields)}" for k in unknown)
            )


OTHER_ENV: dict[str, str] = {
    "TRADETAPE_CONFIG": "the TOML settings file",
    "TRADETAPE_ENGINE_WORKER_ID": "engine worker id (engine/worker.py)",
    "TRADETAPE_ENGINE_ADMINS": "producers allowed to send admin commands (engine/worker.py)",
    "TRADETAPE_ENGINE_GC_FREEZE": "0: the engine's heap policy off (engine/worker.py)",
    "TRADETAPE_ENGINE_REPORT_SECONDS": "engine worker report interval (engine/worker.py)",
    "TRADETAPE_ENGINE_PROFILE": "cProfile an engine worker (engine/worker.py)",
    "TRADETAPE_SIGNER_ID": "participant id of `tradetape run signer` (--id sets it)",
    "TRADETAPE_SIGNER_KEY_DIR": "a signer's key directory (signer_ffi/participant.py)",
    "TRADETAPE_SIGNER_LIB": "the signer's native library (signer_ffi/_lib.py)",
    "TRADETAPE_SIGNER_ARTEFACT_ROOT": "artefact store of signers (signer_ffi/artefacts.py)",
    "TRADETAPE_SIGNER_PASSPHRASE": "key-file passphrase (signer_ffi/group.py)",
    "TRADETAPE_SIGNER_PASSPHRASE_FILE": "file holding it (signer_ffi/group.py)",
    "TRADETAPE_PYTHON_CANDIDATES": "interpreters `make` may build .venv/ with (deploy/pick-python)",
}
"""`TRADETAPE_*` variables that are no `Settings` field but are read by a component
directly (`TRADETAPE_SIGNER_PASSPHRASE_<id>` too), or by the build: `make` runs
`tradetape setup` in the environment it was given. Any other is a mistake: a
misspelled setting would otherwise be ignored without a word."""
_PASSPHRASE_OF_ID = re.compile(r"TRADETAPE_SIGNER_PASSPHRASE_\d+")


def setting_env_names() -> list[str]:
    return sorted(f"TRADETAPE_{name.upper()}" for name in Settings.model_fields)


def check_environment(environ: dict[str, str] | None = None) -> None:
    """SettingsError naming each `TRADETAPE_*` environment variable nothing reads."""
    env = os.environ if environ is None else environ
    known = [*setting_env_names(), *OTHER_ENV]
    unknown = [
        name
        for name in sorted(env)
        if name.upper().startswith("TRADETAPE_")
        and name.upper() not in known
        and not _PASSPHRASE_OF_ID.fullmatch(name.upper())
    ]
    if unknown:
        raise SettingsError(
            "; ".join(
                f"unknown environment variable {n}{_nearest(n.upper(), known)}" for n in unknown
            )
        )


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming each setting that failed, where it came from and why."""
    try:
        toml_path: Path | str | None = config_file()
    except SettingsError:
        toml_path = None
    toml_path = toml_path or "tradetape.toml"
    env_upper = {k.upper() for k in os.environ}
    parts = []
    for err in exc.errors(include_url=False):
        name = str(err["loc"][0]) if err.get("loc") else "settings"
        env_name = f"TRADETAPE_{name.upper()}"
        where = env_name if env_name in env_upper else f"{name} (in {toml_path} or {env_name})"
        got = "" if "password" in name else f" (got {err.get('input')!r})"
        parts.append(f"setting {where}: {err['msg']}{got}")
    return "; ".join(parts)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings; `SettingsError` (naming the setting) if they are wrong."""
    check_environment()
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc)) from exc


def use_data_dir(path: Path) -> None:
    """`--data-dir PATH`: every later `get_settings()` in this process, and every child
    process it starts (a `tradetape run` group), uses PATH as the data directory."""
    os.environ["TRADETAPE_DATA_DIR"] = str(path.expanduser().absolute())
    get_settings.cache_clear()
