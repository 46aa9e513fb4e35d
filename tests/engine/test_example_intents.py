"""The README's worked example of `tradetape publish` runs as documented.

`docs/examples/intents.jsonl` is what a newcomer publishes first (before it, the README
named `tradetape publish intents.jsonl` with no such file anywhere). This test runs the
README's commands on the test stack, with an engine, and checks the decisions the README
shows: the admin commands accepted, the orders and the cancel approved, and the last
line's oversized buy rejected for its balance. Changing the file, the commands or what
the engine decides without the README fails here.
"""

from __future__ import annotations

import json
import re
import shlex

import pytest

from deploy.settings import Settings
from schemas.topics import Topic
from tests.engine.helpers import running_worker, wait_for
from tests.engine.workers import REPO, cli_env, run_cli

pytestmark = pytest.mark.integration

EXAMPLE = REPO / "docs" / "examples" / "intents.jsonl"


def _documented_commands() -> list[list[str]]:
    """The `tradetape` command lines of the README's example block, in order."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"<!-- example:publish -->\n```sh\n(.*?)```", text, flags=re.S)
    assert block is not None, "README.md: the publish example block is missing"
    commands = []
    for line in re.sub(r"\\\n\s*", " ", block.group(1)).splitlines():
        for part in line.split(" && "):
            words = shlex.split(part, comments=True)
            if words and words[0].endswith("tradetape"):
                commands.append(words[1:])
    return commands


def test_the_documented_commands_are_the_ones_run_here() -> None:
    commands = _documented_commands()
    assert [c[:2] for c in commands] == [
        ["producer", "add"],
        ["marketdata", "simulate"],
        ["publish", "docs/examples/intents.jsonl"],
    ], commands
    assert all(json.loads(line) for line in EXAMPLE.read_text().splitlines())


def test_the_example_file_publishes_as_documented(env: Settings) -> None:
    cli = cli_env(env)
    printed: list[dict[str, object]] = []
    with running_worker(env):
        for args in _documented_commands():
            done = run_cli(cli, *args)
            assert done.returncode == 0, (args, done.stderr[-2000:])
            if args[0] == "publish":
                printed = [json.loads(x) for x in done.stdout.splitlines()]
        again = run_cli(cli, "publish", str(EXAMPLE))  # the README's "run again"
        lifecycle = wait_for(
            env,
            Topic.ORDERS,
            lambda evs: {e.event_type for e in evs} >= {"Fill", "OrderCanceled"},
        )
    assert [(p["line_event"], p["outcome"], p["reasons"]) for p in printed] == [
        ("AccountOpened", "ACCEPTED", []),
        ("KycVerified", "ACCEPTED", []),
        ("DepositReceived", "ACCEPTED", []),
        ("OrderIntent", "APPROVED", []),
        ("OrderIntent", "APPROVED", []),
        ("CancelIntent", "APPROVED", []),
        ("OrderIntent", "REJECTED", ["INSUFFICIENT_BALANCE"]),
    ], printed
    assert all(p["answer_event_id"] for p in printed)
    assert again.returncode == 0, again.stderr[-2000:]
    rerun = [json.loads(x) for x in again.stdout.splitlines()]
    assert [p["outcome"] for p in rerun[:3]] == [
        "account EX-1 is already open",
        "ACCEPTED",
        "deposit dep-EX-1 already recorded",
    ], rerun
    # the intents are answered with their first decisions
    assert [p["answer_event_id"] for p in rerun[3:]] == [p["answer_event_id"] for p in printed[3:]]
    # what the README says they did: the market buy filled, the limit buy was canceled
    order_of = {
        e.payload.client_order_id: e.payload.order_id
        for e in lifecycle
        if e.event_type == "OrderSubmitted"
    }
    assert sorted(order_of) == ["ex-1", "ex-2"], order_of
    seen = {(e.event_type, e.payload.order_id) for e in lifecycle if hasattr(e.payload, "order_id")}
    assert ("Fill", order_of["ex-1"]) in seen, seen
    assert ("OrderCanceled", order_of["ex-2"]) in seen, seen
    assert ("Fill", order_of["ex-2"]) not in seen, seen
