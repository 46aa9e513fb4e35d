"""SASL settings (`TRADETAPE_KAFKA_SASL_*`): every client builder authenticates with them,
a half-given or contradictory set is refused, and the local node with
`TRADETAPE_KAFKA_LOCAL_SASL` authenticates and authorizes (no broker started here:
test_kafka_acls.py starts one). Unset, nothing changes: the open local stack."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from deploy.kafka import consumer_config, producer_config, security_config
from deploy.local.kafka_node import KafkaNode, KafkaStartError
from deploy.settings import Settings, check_environment

SASL: dict[str, Any] = {"kafka_sasl_username": "engine", "kafka_sasl_password": "pw"}


def test_without_a_sasl_user_the_clients_are_as_before() -> None:
    s = Settings()
    assert security_config(s) == {}
    assert not {k for k in producer_config(s) if k.startswith(("sasl.", "security."))}


def test_every_client_builder_authenticates_as_the_settings_user() -> None:
    s = Settings(**SASL)
    want = {
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "engine",
        "sasl.password": "pw",
    }
    assert security_config(s) == want
    for conf in (producer_config(s, transactional_id="engine-0"), consumer_config(s, group_id="g")):
        assert want.items() <= conf.items()


def test_sasl_ssl_takes_the_ca() -> None:
    s = Settings(**SASL, kafka_security_protocol="SASL_SSL", kafka_ssl_ca_location="/etc/ca.pem")
    conf = security_config(s)
    assert conf["security.protocol"] == "SASL_SSL" and conf["ssl.ca.location"] == "/etc/ca.pem"


@pytest.mark.parametrize(
    "given",
    [
        {"kafka_sasl_username": "engine"},
        {"kafka_sasl_password": "pw"},
        {"kafka_security_protocol": "SASL_PLAINTEXT"},
        {**SASL, "kafka_security_protocol": "PLAINTEXT"},
        {"kafka_local_sasl": True},
        {**SASL, "kafka_local_sasl": True, "kafka_security_protocol": "SASL_SSL"},
        {**SASL, "kafka_sasl_mechanism": "PLAIN"},
    ],
    ids=str,
)
def test_a_half_given_or_contradictory_sasl_setting_is_refused(given: dict[str, Any]) -> None:
    """Fail closed: a user without a password (or the reverse) would connect without
    authenticating, or not at all, after the operator meant it to authenticate."""
    with pytest.raises(ValidationError):
        Settings(**given)


def test_the_sasl_variables_are_known() -> None:
    check_environment(
        {
            "TRADETAPE_KAFKA_SASL_USERNAME": "a",
            "TRADETAPE_KAFKA_SASL_PASSWORD": "b",
            "TRADETAPE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "TRADETAPE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "TRADETAPE_KAFKA_SSL_CA_LOCATION": "/x",
            "TRADETAPE_KAFKA_LOCAL_SASL": "true",
        }
    )


def _node(tmp_path: Path, **extra: Any) -> KafkaNode:
    node = KafkaNode(Settings(data_dir=tmp_path, **extra))
    node.home.mkdir(parents=True, exist_ok=True)
    return node


def _props(node: KafkaNode) -> dict[str, str]:
    node._write_config()
    return dict(line.split("=", 1) for line in node.config_file.read_text().splitlines())


def test_the_local_node_stays_open_by_default(tmp_path: Path) -> None:
    props = _props(_node(tmp_path))
    assert props["listeners"].startswith("PLAINTEXT://")
    assert "authorizer.class.name" not in props and "super.users" not in props


def test_the_local_node_with_sasl_authenticates_and_authorizes(tmp_path: Path) -> None:
    node = _node(tmp_path, kafka_local_sasl=True, **SASL)
    props = _props(node)
    assert props["listeners"].startswith("SASL_PLAINTEXT://127.0.0.1:")
    assert props["listener.security.protocol.map"] == (
        "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT"
    )
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    assert props["super.users"] == "User:engine"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert stat.S_IMODE(node.config_file.stat().st_mode) == 0o600  # it holds the password
    argfile = node._scram_argfile()
    assert argfile is not None and stat.S_IMODE(argfile.stat().st_mode) == 0o600
    assert argfile.read_text().split() == [
        "kafka.tools.StorageTool",
        "format",
        "--add-scram",
        '"SCRAM-SHA-512=[name=engine,password=pw]"',
    ]
    assert _node(tmp_path / "open")._scram_argfile() is None


@pytest.mark.parametrize(
    "props", ["allow.everyone.if.no.acl.found=true", "super.users=User:ANONYMOUS"]
)
def test_broker_props_cannot_open_the_secured_node(tmp_path: Path, props: str) -> None:
    node = _node(tmp_path, kafka_local_sasl=True, kafka_broker_props=props, **SASL)
    with pytest.raises(KafkaStartError, match="local node's own"):
        node._write_config()


def test_a_password_the_broker_config_cannot_hold_is_refused(tmp_path: Path) -> None:
    node = _node(
        tmp_path, kafka_local_sasl=True, kafka_sasl_username="root", kafka_sasl_password='a"b'
    )
    with pytest.raises(KafkaStartError, match="password"):
        node._write_config()


def test_storage_formatted_open_is_not_started_secured(tmp_path: Path) -> None:
    node = _node(tmp_path, kafka_local_sasl=True, **SASL)
    (node.home / "data").mkdir()
    (node.home / "data" / "meta.properties").write_text("")
    with pytest.raises(KafkaStartError, match="without SASL users"):
        node._check_sasl_storage()


def test_storage_formatted_secured_is_not_started_open(tmp_path: Path) -> None:
    node = _node(tmp_path)
    (node.home / "data").mkdir()
    (node.home / "data" / "meta.properties").write_text("")
    node.sasl_marker.write_text("User:root\n")
    with pytest.raises(KafkaStartError, match="serve them to anyone"):
        node._check_sasl_storage()


def test_the_surveillance_app_authenticates_too() -> None:
    from streams.app import faust_credentials

    assert faust_credentials(Settings()) == {}
    creds = faust_credentials(Settings(**SASL))["broker_credentials"]
    assert (creds.username, creds.password) == ("engine", "pw")
    assert (creds.protocol.value, creds.mechanism.value) == ("SASL_PLAINTEXT", "SCRAM-SHA-512")
