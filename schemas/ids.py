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
_UUID = uuid.UUID
_UNKNOWN = uuid.SafeUUID.unknown
"""Read once: each read of an enum member is a Python-level descriptor call."""
_set_int = _UUID.__dict__["int"].__set__
_set_safe = _UUID.__dict__["is_safe"].__set__
"""`uuid.UUID`'s own slot setters: what `object.__setattr__` ends in, without its lookup."""
_sha256 = hashlib.sha256
_last_ms = 0
_counter = 0
_MS_MASK = (1 << 48) - 1
_VERSION_VARIANT = (0x7 << 76) | (0b10 << 62)
_RANDOM_BITS = ((1 << 128) - 1) ^ (0xF << 76) ^ (0b11 << 62)
"""Of a 128-bit id: everything but the version nibble and the variant's two bits."""


def _new_id(value: int) -> uuid.UUID:
    # What `uuid.UUID(int=value)` sets (value is in range by construction), without its
    # argument checks: this runs for every event the engine derives.
    result = _new_uuid(_UUID)
    _set_int(result, value)
    _set_safe(result, _UNKNOWN)
    return result


def _assemble(unix_ms: int, rand_a: int, rand_b: int) -> uuid.UUID:
    return _new_id(
        ((unix_ms & _MS_MASK) << 80)
        | ((rand_a & 0xFFF) << 64)
        | (rand_b & ((1 << 62) - 1))
        | _VERSION_VARIANT
    )


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


_last_at: tuple[datetime | None, int] = (None, 0)
"""The last time an id was derived at and its milliseconds: an engine input's outputs are
all derived at the input's own `occurred_at` object. Keyed by identity (a datetime is
immutable); one tuple, replaced whole, so another thread never pairs a time with
another's milliseconds."""


def derived_uuid7(at: datetime, *parts: str) -> uuid.UUID:
    """Deterministic UUIDv7-shaped id for an event derived from `parts` at time `at`."""
    global _last_at
    digest = _sha256("\x1f".join(parts).encode()).digest()
    last = _last_at
    if last[0] is at:
        unix_ms = last[1]
    else:
        unix_ms = int(at.timestamp() * 1000)
        _last_at = (at, unix_ms)
    if 0 <= unix_ms <= _MS_MASK:
        # `_assemble(unix_ms, digest[:2], digest[2:10])` in one conversion: the time's 48
        # bits, then the digest's first 80 less the version nibble and the variant's bits.
        whole = int.from_bytes(unix_ms.to_bytes(6, "big") + digest[:10], "big")
        return _new_id((whole & _RANDOM_BITS) | _VERSION_VARIANT)
    return _assemble(
        unix_ms, int.from_bytes(digest[:2], "big"), int.from_bytes(digest[2:10], "big")
    )


_last_text: tuple[int, str, int, str] = (-1, "", -1, "")
"""The last two ids written as text (by value) and their texts: an engine input's
decision names the input's id twice (`causation_id`, `intent_event_id`), usually its
correlation too, and the processor wrote it for the derived ids already. One tuple,
replaced whole, as `_last_at`."""


def uuid_text(value: uuid.UUID) -> str:
    """`str(value)` of a `uuid.UUID` (lowercase, hyphenated) at about half the cost, the
    last two remembered."""
    global _last_text
    i = value.int
    last = _last_text
    if last[0] == i:
        return last[1]
    if last[2] == i:
        return last[3]
    h = "%032x" % i  # noqa: UP031  (what `UUID.__str__` formats)
    text = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
    _last_text = (i, text, last[0], last[1])
    return text


def uuid7_time_ms(value: uuid.UUID) -> int:
    return value.int >> 80
