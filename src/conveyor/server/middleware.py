"""Request hardening as plain ASGI (no per-request task overhead): security headers on every
answer and a size limit on request bodies (artifact uploads are streamed to disk instead)."""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

import orjson

from conveyor.core.errors import ConveyorError
from conveyor.server.errors import error_body

__all__ = ["Hardening"]

_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"cache-control", b"no-store"),
]
# The web UI's pages load their own stylesheet and script, nothing from elsewhere; charts
# are inline SVG (a series' colour is an inline style).
_UI_HEADERS = [
    *(h for h in _HEADERS if h[0] != b"content-security-policy"),
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        b"img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; "
        b"frame-ancestors 'none'",
    ),
]


class _TooLarge(ConveyorError):
    code = "conveyor.payload_too_large"


# The uploads that stream to disk (their routes bound the size themselves): PUT only.
_STREAMED = re.compile(r"^/api/v1/projects/[^/]+/(artifacts/[^/]+/[^/]+/.+|environments)$")
# Uploads of model and dataset versions (multipart, bounded by their routes): POST only.
_UPLOADS = re.compile(r"^/api/v1/projects/[^/]+/(models|datasets)/[^/]+/versions$")


def _loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost (with or without the trailing dot)."""
    if host.rstrip(".").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Hardening:
    """Adds security headers; answers 413 to bodies over ``max_body`` bytes, except on the
    artifact upload routes. Without authentication (``local_only``), refuses requests that
    do not come from and name this machine (a web page elsewhere, DNS rebinding)."""

    def __init__(self, app: Any, *, max_body: int, local_only: bool = False) -> None:
        self.app = app
        self.max_body = max_body
        self.local_only = local_only

    def _foreign(self, scope: Any) -> str | None:
        client = scope.get("client")
        if client and not _loopback(client[0]):
            return f"from {client[0]}"
        host_header = origin = None
        for name, value in scope["headers"]:
            if name == b"host":
                host_header = value.decode("latin-1")
                host = urlsplit("//" + host_header).hostname or ""
                if not _loopback(host):
                    return f"for host {host}"
            if name == b"origin":
                origin = value.decode("latin-1")
                if not _loopback(urlsplit(origin).hostname or ""):
                    return f"from a page at {origin}"
        # A page served by another program on this machine (another port) is another
        # origin: only this server's own pages may send requests with an Origin.
        if origin is not None and urlsplit(origin).netloc != host_header:
            return f"from a page at {origin}, not this server's"
        return None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\x00" in scope["path"] or b"%00" in scope.get("query_string", b""):
            await self._refuse(
                send,
                422,
                "conveyor.invalid_argument",
                "A NUL character (%00) is not allowed in a URL: no name or value holds one.",
            )
            return
        if self.local_only and (why := self._foreign(scope)):
            await self._refuse(
                send,
                403,
                "conveyor.permission_denied",
                f"This server runs without authentication and answers only "
                f"requests from this machine; refused a request {why}.",
            )
            return
        streamed = (scope["method"] == "PUT" and _STREAMED.match(scope["path"]) is not None) or (
            scope["method"] == "POST" and _UPLOADS.match(scope["path"]) is not None
        )
        limit = None if streamed else self.max_body
        if limit is not None:
            for name, value in scope["headers"]:
                if name == b"content-length" and value.isdigit() and int(value) > limit:
                    await self._too_large(send, limit)
                    return
        received = 0
        started = False
        exceeded = False  # the body went over the limit (the app may answer it as a bad body)

        async def limited_receive() -> Any:
            nonlocal received, exceeded
            message = await receive()
            if limit is not None and message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise _TooLarge(
                        f"The request body is larger than the server's limit of {limit} bytes.",
                        hint="Send fewer values per request, or upload files as artifacts.",
                    )
            return message

        async def secured_send(message: Any) -> None:
            nonlocal started
            if exceeded:  # FastAPI turns the error into "400: error parsing the body"
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await self._too_large(send, limit or 0)
                return
            if message["type"] == "http.response.start":
                started = True
                extra = _UI_HEADERS if scope.get("path", "").startswith("/ui") else _HEADERS
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        try:
            await self.app(scope, limited_receive, secured_send)
        except _TooLarge:
            if not started:
                await self._too_large(send, limit or 0)

    async def _too_large(self, send: Any, limit: int) -> None:
        await self._refuse(
            send,
            413,
            "conveyor.payload_too_large",
            f"The request body is larger than the server's limit of {limit} bytes.",
            "Send fewer values per request, or upload files as artifacts.",
        )

    async def _refuse(
        self, send: Any, status: int, code: str, message: str, hint: str | None = None
    ) -> None:
        body = orjson.dumps(error_body(code, message, hint))
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    *_HEADERS,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
