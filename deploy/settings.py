"""Runtime settings from `TRADETAPE_*` environment variables and an optional TOML file.

Precedence: explicit arguments, then environment, then the TOML file named by
`TRADETAPE_CONFIG` (default `./tradetape.toml` if present), then these defaults,
which suit the embedded local stack. No secret has a default here.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from schemas.topics import TOPICS, Topic


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tradetape"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TRADETAPE_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    data_dir: Path = Field(Path(".tradetape"), description="Broker, database, logs, keys")
    cache_dir: Path = Field(default_factory=_default_cache_dir, description="Kafka jars")

    kafka_version: str = "3.9.1"
    kafka_port: int = 39092
    kafka_controller_port: int = 39093
    kafka_bootstrap: str | None = Field(None, description="Use an external cluster instead")
    kafka_heap: str = "768m"
    kafka_jvm_opts: str = Field(
        "", description="Extra JVM flags for the local broker (like KAFKA_JVM_PERFORMANCE_OPTS)"
    )
    topic_prefix: str = Field("", description="Namespace for every topic name")
    default_partitions: int | None = Field(None, description="Override catalogue partitions")

    postgres_port: int = 39432
    postgres_db: str = "tradetape"
    postgres_user: str = "tradetape"
    postgres_password: SecretStr | None = None
    postgres_host: str = "127.0.0.1"
    postgres_dsn: str | None = Field(None, description="Use an external database instead")
    postgres_fsync: bool = Field(True, description="Off only for throwaway test stacks")
    readonly_role: str = "tradetape_reader"

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

    log_level: str = "INFO"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = Path(os.environ.get("TRADETAPE_CONFIG", "tradetape.toml"))
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_path.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        return tuple(sources)

    @property
    def bootstrap(self) -> str:
        return self.kafka_bootstrap or f"127.0.0.1:{self.kafka_port}"

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
        """DSN for analyst SQL: a role that can only read."""
        return (
            f"postgresql://{self.readonly_role}@{self.postgres_host}:{self.postgres_port}"
            f"/{self.postgres_db}"
        )

    def redacted_dsn(self) -> str:
        if self.postgres_password is None:
            return self.dsn
        return self.dsn.replace(self.postgres_password.get_secret_value(), "***")

    def topic(self, topic: Topic) -> str:
        return TOPICS[topic].full_name(self.topic_prefix)

    def with_overrides(self, **changes: Any) -> Settings:
        data = self.model_dump()
        data.update(changes)
        return Settings.model_validate(data)

    @property
    def resolved_data_dir(self) -> Path:
        return self.data_dir.expanduser().resolve()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
