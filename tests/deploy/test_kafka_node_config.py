"""The local broker's generated server.properties: `TRADETAPE_KAFKA_BROKER_PROPS` adds or
replaces settings, never the node's identity, and a malformed pair is an error. No broker
started."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.local.kafka_node import KafkaNode, KafkaStartError
from deploy.settings import Settings


def _written(tmp_path: Path, props: str) -> dict[str, str]:
    node = KafkaNode(Settings(data_dir=tmp_path, kafka_broker_props=props))
    node.home.mkdir(parents=True)
    node._write_config()
    lines = node.config_file.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines)


def test_broker_props_add_and_replace_settings(tmp_path: Path) -> None:
    base = _written(tmp_path / "a", "")
    got = _written(tmp_path / "b", "num.io.threads=4  transaction.state.log.num.partitions=3\n")
    assert got["num.io.threads"] == "4"
    assert got["transaction.state.log.num.partitions"] == "3"
    assert {k: v for k, v in got.items() if k not in base} == {"num.io.threads": "4"}


@pytest.mark.parametrize("props", ["listeners=PLAINTEXT://0.0.0.0:9092", "log.dirs=/tmp/x"])
def test_broker_props_cannot_change_the_nodes_identity(tmp_path: Path, props: str) -> None:
    with pytest.raises(KafkaStartError, match="local node's own"):
        _written(tmp_path, props)


@pytest.mark.parametrize("props", ["num.io.threads", "=4", "num.io.threads="])
def test_a_malformed_broker_prop_is_an_error(tmp_path: Path, props: str) -> None:
    with pytest.raises(KafkaStartError, match="is not key=value"):
        _written(tmp_path, props)


def test_logs_are_closed_and_loaded_on_several_threads(tmp_path: Path) -> None:
    """Before: Kafka's default, one thread, closed ~2,000 logs one by one at `down` (8-21 s,
    and the 30 s kill that cut it short made the next start recover every log)."""
    assert _written(tmp_path / "a", "")["num.recovery.threads.per.data.dir"] == "4"
    replaced = _written(tmp_path / "b", "num.recovery.threads.per.data.dir=1")
    assert replaced["num.recovery.threads.per.data.dir"] == "1"
