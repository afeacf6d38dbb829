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
    number = float(value)
    return None if math.isnan(number) else number


def param_value(key: str, value: Any) -> str:
    """Return ``value`` as the string stored for a param; raise if it is too long."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_PARAM_VALUE:
        raise InvalidArgumentError(
            f"The param {key!r} is {len(text)} characters long; at most {MAX_PARAM_VALUE}.",
            hint="Log long values as an artifact (log_text or log_dict).",
        )
    return text


def tag_value(key: str, value: Any) -> str:
    """Return ``value`` as the string stored for a tag; raise if it is too long."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_TAG_VALUE:
        raise InvalidArgumentError(
            f"The tag {key!r} is {len(text)} characters long; at most {MAX_TAG_VALUE}."
        )
    return text
