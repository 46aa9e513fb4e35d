"""Shared helpers for the surveillance tests: a spoofing tape; produce, consume, spawn."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer

from deploy.kafka import consumer_config, producer_config
from deploy.settings import Settings
from schemas import Envelope, decode, encode
from schemas.topics import Topic
from streams.surveillance_state import MemoryStore, OwnerBook, QuoteRec
from streams.synthetic import Tape

ROOT = Path(__file__).resolve().parents[2]


def child_env(settings: Settings, data_dir: Path, log_level: str = "WARNING") -> dict[str, str]:
    return settings.child_env(TRADETAPE_DATA_DIR=str(data_dir), TRADETAPE_LOG_LEVEL=log_level)


def spawn(
    settings: Settings, data_dir: Path, *args: str, log_level: str = "WARNING"
) -> subprocess.Popen[bytes]:
    """Run `tradetape ARGS` with the test's settings; its output goes to DATA_DIR/ARGS.log."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log = open(data_dir / f"{'-'.join(args)}.log", "wb")
    return subprocess.Popen(
        [sys.executable, "-m", "deploy.cli_entry", *args],
        cwd=ROOT,
        env=child_env(settings, data_dir, log_level),
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> int | None:
    """SIGTERM, then SIGKILL; returns the exit code of a clean stop, None if killed."""
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


def produce(settings: Settings, events: Iterable[Envelope[Any]]) -> None:
    p = Producer(producer_config(settings))
    for e in events:
        key, value, headers = encode(e)
        p.produce(settings.topic(Topic(e.topic)), key=key, value=value, headers=headers)
    assert p.flush(30) == 0


def produce_raw(settings: Settings, topic: Topic, value: bytes) -> None:
    p = Producer(producer_config(settings))
    p.produce(settings.topic(topic), key=b"junk", value=value)
    assert p.flush(30) == 0


def consume(
    settings: Settings,
    topic: Topic,
    *,
    want: int,
    timeout: float = 60,
    until: Callable[[list[Envelope[Any]]], bool] | None = None,
) -> list[Envelope[Any]]:
    """Read `topic` from the start until `want` events arrived, `until(events)` holds (checked
    when the topic goes quiet for a moment), or the timeout passed."""
    c = Consumer(consumer_config(settings, group_id=f"probe-{time.monotonic_ns()}"))
    c.subscribe([settings.topic(topic)])
    out: list[Envelope[Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < want and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None and until is not None and until(out):
                break
            if msg is None or msg.error():
                continue
            out.append(decode(msg.value(), msg.headers()))
    finally:
        c.close()
    return out


def wait_for_log(path: Path, text: str, *, timeout: float) -> None:
    """Until `text` shows up in a child's log; fails with the log's tail otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        time.sleep(0.2)
    tail = path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"
    raise AssertionError(f"{text!r} not in {path.name} after {timeout}s:\n{tail}")


def wait_until_caught_up(path: Path, *, timeout: float, quiet: float = 6.0) -> str:
    """Until the streams worker's progress shows every input folded and nothing buffered,
    with no new input for `quiet` seconds; returns that progress line."""
    deadline = time.monotonic() + timeout
    last, since = "", time.monotonic()
    while time.monotonic() < deadline:
        lines = [x for x in path.read_text(errors="replace").splitlines() if "progress" in x]
        line = lines[-1].split("progress", 1)[1] if lines else ""
        if line != last:
            last, since = line, time.monotonic()
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        done = fields.get("intake") == fields.get("pushed") == fields.get("released")
        if line and done and fields.get("buffered") == "0" and time.monotonic() - since > quiet:
            return line
        time.sleep(0.5)
    return last


def from_changelog(store: Any) -> MemoryStore:
    """What a restarted worker reads back: the JSON its faust changelogs hold."""
    return MemoryStore(
        owners=dict(store.owners),
        quotes={
            k: QuoteRec.model_validate_json(v.model_dump_json()) for k, v in store.quotes.items()
        },
        configs={k: dict(v) for k, v in store.configs.items()},
        books={
            k: OwnerBook.model_validate_json(v.model_dump_json()) for k, v in store.books.items()
        },
    )


def spoof_tape() -> Tape:
    """One spoofing episode: A1 rests a large buy, its owner's A2 sells into the bid and is
    filled, the large buy is canceled (the detectors' and the app's example)."""
    t = Tape()
    t.open_account("A1", "owner-x")
    t.open_account("A2", "owner-x")
    t.quote(0.5, "100.00", "100.10", "2", "2")
    t.submit(1.0, "A1", "big", "BUY", "10", "99.95")
    t.submit(2.0, "A2", "sell", "SELL", "1", "100.10")
    t.fill(2.5, "sell")
    t.cancel(4.0, "big")
    return t
