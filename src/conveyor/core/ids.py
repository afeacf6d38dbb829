"""Identifiers: ULIDs, sortable by creation time and unique across processes and hosts."""

from __future__ import annotations

import os
import threading
import time

__all__ = ["is_id", "made_at_ms", "new_id", "new_ids"]

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base32, as ULIDs use
_CROCKFORD = frozenset(_ALPHABET)
# Every pair of characters, indexed by the 10 bits they encode: an id is 13 lookups.
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]
_SHIFTS = tuple(range(120, -1, -10))
_last = 0  # the last id made in this process, as a number
_lock = threading.Lock()


def new_id() -> str:
    """Return a new 26-character ULID string (48-bit millisecond time + 80 random bits).

    Made here rather than with a ULID library: a dataset version links thousands of files,
    each link an id, and this is several times faster than building a ULID object each.

    >>> len(new_id()), new_id() < new_id() or True
    (26, True)
    """
    global _last
    fresh = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    with _lock:
        # Within one millisecond (or if the clock steps back), count up from the last id, so
        # ids made one after another in a process sort in that order (audit logs rely on it).
        value = fresh if fresh > _last else _last + 1
        _last = value
    return _encode(value)


def new_ids(count: int) -> list[str]:
    """Return ``count`` new ids, the ones :func:`new_id` called ``count`` times would give.

    For the thousands of link rows of one dataset version: the clock and the random source
    are read once, and the first 14 characters, shared by consecutive ids, are encoded once.
    """
    global _last
    if count <= 0:
        return []
    fresh = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    with _lock:
        first = fresh if fresh > _last else _last + 1
        _last = first + count - 1
    low = first & _LOW
    if low + count - 1 > _LOW:  # the shared prefix would change within the batch
        return [_encode(v) for v in range(first, first + count)]
    prefix = _encode(first)[:14]
    p = _PAIRS
    return [
        f"{prefix}{p[v >> 50]}{p[(v >> 40) & 1023]}{p[(v >> 30) & 1023]}"
        f"{p[(v >> 20) & 1023]}{p[(v >> 10) & 1023]}{p[v & 1023]}"
        for v in range(low, low + count)
    ]


_LOW = (1 << 60) - 1  # the bits of an id's last 12 characters


def _encode(value: int) -> str:
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS])


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # a thread of the parent may have held it at the fork


os.register_at_fork(after_in_child=_after_fork_in_child)


def is_id(value: str) -> bool:
    """Return whether ``value`` has the form of an id made by :func:`new_id`."""
    return len(value) == 26 and value[0] in "01234567" and set(value.upper()) <= _CROCKFORD


def made_at_ms(value: str) -> int:
    """Return when the id ``value`` was made, in milliseconds since the epoch (its first
    10 characters). Raises ValueError for a value that is not an id.

    >>> made_at_ms(_encode(1_700_000_000_000 << 80))
    1700000000000
    """
    if not is_id(value):
        raise ValueError(f"{value!r} is not an id")
    ms = 0
    for c in value[:10].upper():
        ms = ms * 32 + _ALPHABET.index(c)
    return ms
