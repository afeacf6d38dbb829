"""URIs as people may see them: with any password masked."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit, urlunsplit

if TYPE_CHECKING:
    import urllib.request

__all__ = ["post_request", "redact_uri"]


def redact_uri(uri: str) -> str:
    """Return ``uri`` with the password (if any) replaced by ``***``.

    >>> redact_uri("postgresql://bob:hunter2@db:5432/x")
    'postgresql://bob:***@db:5432/x'

    Text that does not parse as a URI still has anything shaped like ``user:secret@`` masked:

    >>> redact_uri("postgresql//bob:hunter2@db/x")
    'postgresql//bob:***@db/x'
    >>> redact_uri("file:///data/team@2024/a"), redact_uri("postgresql://bob@db/x")
    ('file:///data/team@2024/a', 'postgresql://bob@db/x')
    """
    try:
        parts = urlsplit(uri)
    except ValueError:
        return _USERINFO.sub(r"\g<user>:***@", uri)
    if parts.password is None:
        # A URI that parsed has no password. Text that is not a URI (the scheme's colon
        # forgotten) may still hold one: mask what looks like user:secret@ there only.
        return _USERINFO.sub(r"\g<user>:***@", uri) if "@" in uri and "://" not in uri else uri
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


#: ``user:password@`` anywhere in a text (the user may be empty).
_USERINFO = re.compile(r"(?P<user>[^/:@\s]*):[^@\s]*@")


def post_request(url: str, data: bytes, headers: dict[str, str]) -> urllib.request.Request:
    """A POST of ``data`` to the http(s) ``url``. Credentials written in it
    (``https://user:secret@host/hook``) go in a Basic Authorization header, as receivers
    expect: urllib would take them for part of the host name.

    >>> r = post_request("https://u:p%40ss@hooks.example:8443/x?t=1", b"{}", {})
    >>> r.full_url, r.get_header("Authorization")
    ('https://hooks.example:8443/x?t=1', 'Basic dTpwQHNz')
    """
    import base64
    import urllib.request

    parts = urlsplit(url)
    authorization = None
    if parts.username is not None or parts.password is not None:
        pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(pair.encode()).decode()
        url = urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")  # noqa: S310
    if authorization is not None:  # never sent on to wherever a redirect points
        request.add_unredirected_header("Authorization", authorization)
    return request
