"""The remote-mode client: typed errors back from the server's bodies, and retries only of
what is safe to resend (reads, and writes with an idempotency key)."""

from __future__ import annotations

import httpx
import pytest

from conveyor.core.errors import (
    BackendUnavailableError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from conveyor.store.client import ServerClient


def _client(handler, **kw) -> ServerClient:  # type: ignore[no-untyped-def]
    return ServerClient(
        "http://server.test", "cvt_secret", transport=httpx.MockTransport(handler), **kw
    )


def test_error_bodies_come_back_as_the_same_typed_errors() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        code = {"/a": ("conveyor.not_found", 404), "/b": ("conveyor.permission_denied", 403)}
        name, status = code[request.url.path]
        return httpx.Response(status, json={"error": {"code": name, "message": "m", "hint": "h"}})

    client = _client(handler)
    with pytest.raises(NotFoundError, match="m h"):
        client.get_json("/a")
    with pytest.raises(PermissionDeniedError):
        client.get_json("/b")


def test_the_token_travels_as_a_bearer_header_and_never_in_repr() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return httpx.Response(200, json={})

    client = _client(handler)
    client.get_json("/x")
    assert seen == ["Bearer cvt_secret"]
    assert "cvt_secret" not in repr(client)


def test_a_keyed_write_is_resent_with_its_key_after_a_network_error() -> None:
    keys: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers["idempotency-key"])
        if len(keys) == 1:
            raise httpx.ReadError("connection reset", request=request)
        return httpx.Response(200, json={"applied": True})

    client = _client(handler)
    client.retries = 3
    body = client.send_json("POST", "/w", {"x": 1}, headers={"Idempotency-Key": "k-123456"})
    assert body == {"applied": True}
    assert keys == ["k-123456", "k-123456"]


def test_an_unkeyed_write_is_not_resent() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        raise httpx.ConnectError("refused", request=request)

    client = _client(handler)
    with pytest.raises(BackendUnavailableError, match="cannot be reached"):
        client.send_json("POST", "/w", {"x": 1})
    assert len(calls) == 1


def test_a_missing_token_says_which_variable_to_set() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = {"error": {"code": "conveyor.unauthenticated", "message": "needs a token"}}
        return httpx.Response(401, json=body)

    client = ServerClient("http://server.test", "", transport=httpx.MockTransport(handler))
    with pytest.raises(UnauthenticatedError, match="CONVEYOR_TOKEN"):
        client.get_json("/x")


def test_path_parts_stay_single_segments() -> None:
    path = ServerClient.project_path("p", "runs", "r1", "metrics", "train/../loss")
    assert path == "/api/v1/projects/p/runs/r1/metrics/train%2F%2E%2E%2Floss"
