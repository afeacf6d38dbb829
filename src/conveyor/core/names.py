"""Validation of the names users give: artifact paths, object kinds, keys."""

from __future__ import annotations

import re

from conveyor.core.errors import InvalidArgumentError

__all__ = ["validate_artifact_path", "validate_kind", "validate_project_name"]

MAX_PATH = 1024  # characters in an artifact path
_MAX_PATH = MAX_PATH
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DRIVE = re.compile(r"[A-Za-z]:")
_KIND = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_PROJECT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}$")


def validate_artifact_path(name: str, *, what: str = "artifact path") -> str:
    """Return ``name`` normalized to forward slashes, or raise if it could escape its folder.

    A valid path is relative, has no ``..`` or empty segments, no NUL or control characters,
    and is at most 1,024 characters long.

    >>> validate_artifact_path("plots/roc.png")
    'plots/roc.png'
    """
    if not isinstance(name, str):
        raise InvalidArgumentError(f"The {what} must be a string; got {type(name).__name__}.")
    fixed = name.replace("\\", "/")
    problem = None
    if not fixed or fixed.strip() == "":
        problem = "it is empty"
    elif len(fixed) > _MAX_PATH:
        problem = f"it is {len(fixed)} characters long (at most {_MAX_PATH})"
    elif _CONTROL.search(fixed):
        problem = "it contains a NUL or control character"
    elif fixed.startswith("/") or _DRIVE.match(fixed):
        problem = "it is absolute"
    else:
        parts = fixed.split("/")
        if any(p == ".." for p in parts):
            problem = "it contains a '..' segment"
        elif any(p in ("", ".") for p in parts):
            problem = "it contains an empty or '.' segment"
    if problem:
        raise InvalidArgumentError(
            f"The {what} {name!r} is not allowed: {problem}.",
            hint="Use a relative path like 'plots/roc.png' without '..'.",
        )
    return fixed


def validate_kind(kind: str) -> str:
    """Return ``kind`` if it is a lowercase identifier like ``model_version``; raise otherwise."""
    if not isinstance(kind, str) or not _KIND.match(kind):
        raise InvalidArgumentError(
            f"The object kind {kind!r} is not valid: expected a lowercase identifier "
            "such as 'run' or 'model_version'."
        )
    return kind


def validate_project_name(name: str) -> str:
    """Return ``name`` if it is a valid project name; raise otherwise."""
    if not isinstance(name, str) or not _PROJECT.match(name):
        raise InvalidArgumentError(
            f"The project name {name!r} is not valid: use 1 to 100 letters, digits, '.', '_' "
            "or '-', starting with a letter, digit or '_'."
        )
    return name
