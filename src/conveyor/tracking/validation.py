"""Checks on what users log, done in the caller so mistakes surface where they are made."""

from __future__ import annotations

import math
import numbers
import re
from typing import Any

from conveyor.core.errors import InvalidArgumentError

__all__ = ["MAX_KEY", "MAX_PARAM_VALUE", "check_key", "metric_value", "param_value"]

MAX_KEY = 250
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
_KEY = re.compile(r"^[\w\-. /:]+$")


def check_key(key: Any, what: str) -> str:
    """Return ``key`` if it is a valid metric, param or tag key; raise naming the rule."""
    if not isinstance(key, str) or not key or len(key) > MAX_KEY or not _KEY.match(key):
        shown = key if isinstance(key, str) and len(key) <= 60 else f"{str(key)[:60]}..."
        raise InvalidArgumentError(
            f"The {what} key {shown!r} is not valid: use 1 to {MAX_KEY} letters, digits, "
            "'_', '-', '.', ' ', ':' or '/'."
        )
    if key.startswith("/") or ".." in key.split("/"):
        raise InvalidArgumentError(
            f"The {what} key {key!r} is not valid: it must not start with '/' or contain '..'."
        )
    return key


def metric_value(key: str, value: Any) -> float | None:
    """Return ``value`` as a float (None for NaN); raise if it is not a number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidArgumentError(
            f"The metric {key!r} must be a number; got {type(value).__name__} {value!r}.",
            hint="Log text with set_tags or log_params instead.",
        )
    try:
        number = float(value)
    except OverflowError:  # an int beyond a float's range: 10**400
        raise InvalidArgumentError(
            f"The metric {key!r} is too large to store as a number (a float64): {value!r}."
        ) from None
    return None if math.isnan(number) else number


#: Steps are stored as 64-bit integers.
STEP_RANGE = (-(2**63), 2**63 - 1)


def check_step(key: str, step: Any) -> int:
    """Return ``step`` if it is an integer a metric's step can be (64-bit); raise if not."""
    if isinstance(step, bool) or not isinstance(step, numbers.Integral):
        raise InvalidArgumentError(f"The step of metric {key!r} must be an integer; got {step!r}.")
    step = int(step)
    if not STEP_RANGE[0] <= step <= STEP_RANGE[1]:
        raise InvalidArgumentError(
            f"The step of metric {key!r} must fit in 64 bits (-2**63 to 2**63-1); got {step}."
        )
    return step


def timestamp_ms(key: str, timestamp: Any) -> int:
    """A metric's time (seconds since the epoch, as time.time() gives) as milliseconds."""
    if isinstance(timestamp, bool) or not isinstance(timestamp, numbers.Real):
        raise InvalidArgumentError(
            f"The timestamp of metric {key!r} is seconds since the epoch (time.time()); "
            f"got {timestamp!r}."
        )
    ms = float(timestamp) * 1000
    if not math.isfinite(ms) or not STEP_RANGE[0] <= ms <= STEP_RANGE[1]:
        raise InvalidArgumentError(
            f"The timestamp of metric {key!r} is out of range: {timestamp!r} (seconds since "
            "the epoch, as time.time() gives)."
        )
    return int(ms)


def param_value(key: str, value: Any) -> str:
    """Return ``value`` as the string stored for a param; raise if it is too long."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_PARAM_VALUE:
        raise InvalidArgumentError(
            f"The param {key!r} is {len(text)} characters long; at most {MAX_PARAM_VALUE}.",
            hint="Log long values as an artifact (log_text or log_dict).",
        )
    return no_nul(text, f"The param {key!r}")


def tag_value(key: str, value: Any) -> str:
    """Return ``value`` as the string stored for a tag; raise if it is too long."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_TAG_VALUE:
        raise InvalidArgumentError(
            f"The tag {key!r} is {len(text)} characters long; at most {MAX_TAG_VALUE}."
        )
    return no_nul(text, f"The tag {key!r}")


def no_nul(text: str, what: str) -> str:
    """Return ``text``; raise if it holds a NUL character, which PostgreSQL cannot store
    (the write would fail later, in the background, and the values be lost)."""
    if "\x00" in text:
        raise InvalidArgumentError(
            f"{what} holds a NUL character (\\x00), which cannot be stored.",
            hint="Remove the NUL character.",
        )
    return text
