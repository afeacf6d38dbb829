"""URIs as people may see them: with any password masked."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

__all__ = ["redact_uri"]


def redact_uri(uri: str) -> str:
    """Return ``uri`` with the password (if any) replaced by ``***``.

    >>> redact_uri("postgresql://bob:hunter2@db:5432/x")
    'postgresql://bob:***@db:5432/x'
    """
    try:
        parts = urlsplit(uri)
    except ValueError:
        return "<unparseable URI>"
    if parts.password is None:
        return uri
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))
