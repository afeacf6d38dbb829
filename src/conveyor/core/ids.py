"""Identifiers: ULIDs, sortable by creation time and unique across processes and hosts."""

from __future__ import annotations

from ulid import ULID

__all__ = ["is_id", "new_id"]

_CROCKFORD = frozenset("0123456789ABCDEFGHJKMNPQRSTVWXYZ")


def new_id() -> str:
    """Return a new 26-character ULID string (48-bit millisecond time + 80 random bits).

    >>> len(new_id())
    26
    """
    return str(ULID())


def is_id(value: str) -> bool:
    """Return whether ``value`` has the form of an id made by :func:`new_id`."""
    return len(value) == 26 and value[0] in "01234567" and set(value.upper()) <= _CROCKFORD
