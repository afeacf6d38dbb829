"""Local paths users give: refused up front, by name, when no file system call can use them."""

from __future__ import annotations

import errno
import os

from conveyor.core.errors import InvalidArgumentError

__all__ = ["check_usable_path"]


def check_usable_path(path: str | os.PathLike[str], what: str) -> None:
    """Raise if ``path`` (``what`` it is for, e.g. "the folder to check out into") cannot be
    used at all: a name in it is longer than the file system allows, or a link on it loops.

    A path that does not exist yet is fine; so is one the caller has other reasons to refuse.

    >>> check_usable_path("no/such/file.csv", "the file to validate")
    >>> try:
    ...     check_usable_path("x" * 300, "the file to validate")
    ... except InvalidArgumentError as e:
    ...     print(e.message)
    Cannot use xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx as the file to validate: a name in it is longer than the file system allows.
    """  # noqa: E501
    try:
        os.stat(path)
    except OSError as e:
        if e.errno == errno.ENAMETOOLONG:
            problem = "a name in it is longer than the file system allows"
            hint = "Choose a shorter path (most file systems allow 255 bytes a name)."
        elif e.errno == errno.ELOOP:
            problem = "a symbolic link on it loops (it leads back to itself)"
            hint = "Fix or remove that link, or choose another path."
        else:
            return
        raise InvalidArgumentError(
            f"Cannot use {_shown(os.fspath(path))} as {what}: {problem}.", hint=hint
        ) from e


def _shown(path: str) -> str:
    """``path``, its middle left out when it is too long to read in one line."""
    return path if len(path) <= 80 else f"{path[:30]}...{path[-30:]}"
