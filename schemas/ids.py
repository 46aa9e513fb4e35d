"""Event identifiers.

Fresh events get a UUIDv7 (time-ordered). Derived events get a UUIDv7-shaped id whose
timestamp comes from the triggering event and whose remaining bits are a hash of the
inputs, so a replay reproduces the same id and a duplicate is visible at a glance.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid
from datetime import datetime

_lock = threading.Lock()
_new_uuid = object.__new__
_set = object.__setattr__
_last_ms = 0
_counter = 0


def _assemble(unix_ms: int, rand_a: int, rand_b: int) -> uuid.UUID:
    value = (unix_ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= (rand_a & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand_b & ((1 << 62) - 1)
    # What `uuid.UUID(int=value)` sets (value is in range by construction), without its
    # argument checks: this runs for every event the engine derives.
    result = _new_uuid(uuid.UUID)
    _set(result, "int", value)
    _set(result, "is_safe", uuid.SafeUUID.unknown)
    return result


def uuid7() -> uuid.UUID:
    """A new, monotonically increasing UUIDv7 (RFC 9562 method 1 counter in rand_a)."""
    global _last_ms, _counter
    with _lock:
        now_ms = time.time_ns() // 1_000_000
        if now_ms <= _last_ms:
            _counter += 1
            if _counter > 0xFFF:
                _last_ms += 1
                _counter = 0
            now_ms = _last_ms
        else:
            _last_ms = now_ms
            _counter = int.from_bytes(os.urandom(2), "big") & 0x3FF
        counter = _counter
    rand_b = int.from_bytes(os.urandom(8), "big")
    return _assemble(now_ms, counter, rand_b)


def derived_uuid7(at: datetime, *parts: str) -> uuid.UUID:
    """Deterministic UUIDv7-shaped id for an event derived from `parts` at time `at`."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    unix_ms = int(at.timestamp() * 1000)
    return _assemble(
        unix_ms, int.from_bytes(digest[:2], "big"), int.from_bytes(digest[2:10], "big")
    )


def uuid7_time_ms(value: uuid.UUID) -> int:
    return value.int >> 80
