"""Durations written the way people write them: ``30s``, ``15m``, ``1h``, ``7d``."""

from __future__ import annotations

import re
from datetime import timedelta

from conveyor.core.errors import InvalidArgumentError

__all__ = ["format_duration", "parse_duration"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_duration(text: str, *, what: str = "duration") -> timedelta:
    """Parse ``text`` like ``'90s'``, ``'1h'`` or ``'7d'`` into a timedelta.

    >>> parse_duration("1h")
    datetime.timedelta(seconds=3600)
    """
    match = _PATTERN.match(text) if isinstance(text, str) else None
    if match is None:
        raise InvalidArgumentError(
            f"The {what} must be a number and a unit (s, m, h, d, w) like '30m' or '1h'; "
            f"got {text!r}."
        )
    try:
        return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    except OverflowError:
        raise InvalidArgumentError(f"The {what} {text!r} is too long to be a duration.") from None


def format_duration(value: timedelta) -> str:
    """Format ``value`` in the largest unit that divides it (``3600s`` -> ``'1h'``)."""
    seconds = int(value.total_seconds())
    for unit in ("w", "d", "h", "m"):
        if seconds and seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"
