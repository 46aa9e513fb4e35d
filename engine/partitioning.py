"""Which partition an account's events land on: Kafka's murmur2 partitioner, in Python.

Every engine topic is keyed by account and produced with `partitioner=murmur2_random`
(librdkafka's Java-compatible murmur2), so an account's intents, decisions, orders and
fills share one partition number. A snapshot slice is "the state of the accounts on
partition p", so the engine needs that mapping without asking the broker. A unit test pins
Kafka's own test vectors and an integration test checks it against the broker's placement.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's `Utils.murmur2` as an unsigned 32-bit value."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    n4 = length // 4
    for i in range(n4):
        j = i * 4
        k = data[j] | (data[j + 1] << 8) | (data[j + 2] << 16) | (data[j + 3] << 24)
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = (h * _M) & _MASK
        h ^= k
    rest = length % 4
    tail = n4 * 4
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def signed32(v: int) -> int:
    return v - (1 << 32) if v & 0x80000000 else v


def partition_for(key: str, partitions: int) -> int:
    """The partition Kafka's default (murmur2) partitioner picks for a non-empty key."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def partitioner(partitions: int) -> Callable[[str], int]:
    """A cached account -> partition function for a topic of `partitions` partitions."""

    @lru_cache(maxsize=65_536)
    def part(account: str) -> int:
        return partition_for(account, partitions)

    return part
