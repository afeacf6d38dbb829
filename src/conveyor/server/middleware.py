"""Request hardening as plain ASGI (no per-request task overhead): security headers on every
answer and a size limit on request bodies (artifact uploads are streamed to disk instead)."""

from __future__ import annotations

from typing import Any

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


class _TooLarge(ConveyorError):
    code = "conveyor.payload_too_large"


class Hardening:
    """Adds security headers; answers 413 to bodies over ``max_body`` bytes, except on the
    artifact routes (``/artifacts/`` and ``/environments`` under ``streamed_prefixes``)."""

    def __init__(self, app: Any, *, max_body: int, streamed_prefixes: tuple[str, ...]) -> None:
        self.app = app
        self.max_body = max_body
        self.streamed_prefixes = streamed_prefixes

    def _streamed(self, path: str) -> bool:
        return path.startswith(self.streamed_prefixes) and (
            "/artifacts/" in path or path.endswith("/environments")
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = None if self._streamed(scope["path"]) else self.max_body
        if limit is not None:
            for name, value in scope["headers"]:
                if name == b"content-length" and value.isdigit() and int(value) > limit:
                    await self._too_large(send, limit)
                    return
        received = 0
        started = False

        async def limited_receive() -> Any:
            nonlocal received
            message = await receive()
            if limit is not None and message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge(
                        f"The request body is larger than the server's limit of {limit} bytes.",
                        hint="Send fewer values per request, or upload files as artifacts.",
                    )
            return message

        async def secured_send(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), *_HEADERS]
            await send(message)

        try:
            await self.app(scope, limited_receive, secured_send)
        except _TooLarge:
            if not started:
                await self._too_large(send, limit or 0)

    async def _too_large(self, send: Any, limit: int) -> None:
        body = orjson.dumps(
            error_body(
                "conveyor.payload_too_large",
                f"The request body is larger than the server's limit of {limit} bytes.",
                hint="Send fewer values per request, or upload files as artifacts.",
            )
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    *_HEADERS,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
