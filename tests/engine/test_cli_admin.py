"""`tradetape admin ...` and `producer add` report what the engine did with the command
(review helper-50, rev54 defects 5 and 6): before, the CLI exited 0 without waiting, so
a rejected command looked accepted; and `producer add` wrote its key file before checking
the name (`../../x` outside the key directory, an orphan key for `bad name`)."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest

from deploy.settings import Settings
from engine import auth
from tests.conftest import free_port
from tests.engine.helpers import running_worker, world
from tests.engine.workers import run_cli


def _run(
    data_dir: Path, port: int, *args: str, prefix: str = ""
) -> subprocess.CompletedProcess[str]:
    env = {
        "TRADETAPE_KAFKA_PORT": str(port),
        "TRADETAPE_TOPIC_PREFIX": prefix,
        "TRADETAPE_DATA_DIR": str(data_dir),
    }
    return run_cli(env, *args)


@pytest.mark.parametrize("name", ["../../escaped", "bad name", ".hidden", "a/b", "x" * 65])
def test_producer_add_refuses_a_bad_name_before_writing_anything(tmp_path: Path, name: str) -> None:
    data = tmp_path / "deep" / "data"
    done = _run(data, free_port(), "producer", "add", name, "--accounts", "A1")
    assert done.returncode == 2, done.stderr[-2000:]
    assert "invalid producer id" in done.stderr and "Traceback" not in done.stderr
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_producer_add_refuses_bad_accounts_before_writing_the_key(tmp_path: Path) -> None:
    done = _run(tmp_path / "data", free_port(), "producer", "add", "ok", "--accounts", "a b")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_key_files_are_written_whole_owner_only_and_never_through_a_link(
    tmp_path: Path,
) -> None:
    key, _ = auth.new_keypair()
    target = tmp_path / "elsewhere"
    target.write_text("keep me\n")
    target.chmod(0o644)
    path = auth.key_path(tmp_path, "p1")
    path.parent.mkdir()
    path.symlink_to(target)
    auth.write_private_key(path, key)
    assert target.read_text() == "keep me\n"
    assert not path.is_symlink() and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert auth.public_hex(auth.read_private_key(path)) == auth.public_hex(key)
    loose = auth.key_path(tmp_path, "p2")
    loose.write_text("old\n")
    loose.chmod(0o644)
    auth.write_private_key(loose, key)
    assert stat.S_IMODE(loose.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []
    with pytest.raises(ValueError):
        auth.key_path(tmp_path, "../p3")


def test_an_admin_command_without_an_engine_says_no_answer(tmp_path: Path) -> None:
    done = _run(tmp_path / "data", free_port(), "admin", "--wait", "2", "kyc", "A1")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "error: " in done.stderr


@pytest.mark.integration
def test_admin_commands_report_acceptance_and_rejection(env: Settings) -> None:
    data = env.resolved_data_dir
    with running_worker(env):
        world(env, ["ACC1"])
        first = _run(
            data,
            env.kafka_port,
            "admin",
            "kill-switch",
            "engage",
            "--scope",
            "ACC1",
            prefix=env.topic_prefix,
        )
        second = _run(
            data,
            env.kafka_port,
            "admin",
            "kill-switch",
            "engage",
            "--scope",
            "ACC1",
            prefix=env.topic_prefix,
        )
        unknown = _run(data, env.kafka_port, "admin", "kyc", "NOPE", prefix=env.topic_prefix)
        # Session 23: an account in a currency the allow-list does not permit is refused
        # at open time (before, opened, and every order of it refused later).
        usdt = _run(
            data,
            env.kafka_port,
            *("admin", "open-account", "ACC9", "--owner", "O", "--currency", "USDT"),
            prefix=env.topic_prefix,
        )
    assert first.returncode == 0, first.stderr[-2000:]
    assert "accepted: KillSwitchEngaged" in first.stderr
    assert len(first.stdout.split()) == 1  # the command's event id, as before
    assert second.returncode == 1, (second.stdout, second.stderr[-2000:])
    assert "error: the engine rejected KillSwitchEngaged" in second.stderr
    assert unknown.returncode == 1 and "rejected" in unknown.stderr, unknown.stderr[-2000:]
    assert usdt.returncode == 1, (usdt.stdout, usdt.stderr[-2000:])
    assert "error: the engine rejected AccountOpened" in usdt.stderr, usdt.stderr[-2000:]
    assert "base_currency USDT is not permitted" in usdt.stderr
    assert "STABLECOIN_NOT_PERMITTED" in usdt.stderr and "Traceback" not in usdt.stderr


@pytest.mark.parametrize("command", ["revoke", "rotate"])
def test_producer_revoke_and_rotate_refuse_a_bad_name(tmp_path: Path, command: str) -> None:
    done = _run(tmp_path / "data", free_port(), "producer", command, "../x")
    assert done.returncode == 2, done.stderr[-2000:]
    assert "invalid producer id" in done.stderr and "Traceback" not in done.stderr
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_producer_rotate_needs_the_current_key_and_keeps_it_when_not_sent(
    tmp_path: Path,
) -> None:
    """Without the current key (file or --previous-key) there is nothing to name: exit 2,
    nothing written. With it but no broker: exit 1, the key file untouched and the new
    key (`.next`) removed, since the rotation certainly took no effect."""
    data = tmp_path / "data"
    missing = _run(data, free_port(), "producer", "rotate", "p1")
    assert missing.returncode == 2 and "--previous-key" in missing.stderr, missing.stderr
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    key, _ = auth.new_keypair()
    path = auth.key_path(data, "p1")
    auth.write_private_key(path, key)
    before = path.read_bytes()
    done = _run(data, free_port(), "producer", "rotate", "p1")
    assert done.returncode == 1 and "not sent" in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["p1.ed25519"]
