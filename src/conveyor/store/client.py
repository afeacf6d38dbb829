"""The HTTP client of a Conveyor team server: what remote mode talks through.

``CONVEYOR_STORE_URI=http://host:5000`` (or ``https://``) plus ``CONVEYOR_TOKEN`` make a
workspace remote: its project, tracking and artifacts go through the server's REST API instead
of a database and an object store of its own. The client keeps one connection pool, retries
what is safe to retry (reads, and writes that carry an idempotency key) on network errors and
on 502/503/504 with backoff, and turns the server's error bodies back into the same typed
:class:`~conveyor.core.errors.ConveyorError` the embedded store raises.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from conveyor.core import errors as _errors
from conveyor.core.errors import (
    BackendUnavailableError,
    ConveyorError,
    InvalidArgumentError,
    UnauthenticatedError,
)
from conveyor.core.uris import redact_uri

if TYPE_CHECKING:
    import httpx

__all__ = ["API", "ServerClient", "is_server_uri", "revive_times"]

API = "/api/v1"
TOKEN_ENV = "CONVEYOR_TOKEN"  # noqa: S105 - the variable's name, not a secret
_RETRY_STATUSES = {502, 503, 504}
_CODES: dict[str, type[ConveyorError]] = {
    cls.code: cls
    for name in _errors.__all__
    if isinstance(cls := getattr(_errors, name), type) and issubclass(cls, ConveyorError)
}


def revive_times(value: Any, is_time: Callable[[str], bool]) -> Any:
    """``value`` (JSON from the server) with the ISO times under the keys ``is_time`` picks
    turned back into datetimes, at any depth, as the embedded services return them."""
    from datetime import datetime

    if isinstance(value, dict):
        return {
            k: datetime.fromisoformat(v)
            if is_time(k) and isinstance(v, str)
            else revive_times(v, is_time)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [revive_times(v, is_time) for v in value]
    return value


def is_server_uri(uri: str) -> bool:
    """Whether ``uri`` names a team server (http:// or https://) rather than a database."""
    return uri.startswith(("http://", "https://"))


def error_from_body(status: int, body: Any) -> ConveyorError:
    """Rebuild the typed error a server answered with (its body: ``{"error": {...}}``)."""
    detail = body.get("error") if isinstance(body, dict) else None
    if not isinstance(detail, dict):
        return ConveyorError(f"The Conveyor server answered HTTP {status}.")
    cls = _CODES.get(str(detail.get("code")), ConveyorError)
    return cls(str(detail.get("message", f"HTTP {status}")), hint=detail.get("hint") or None)


class ServerClient:
    """Requests to one team server with one token (thread-safe; one pool per process)."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 60.0,
        retries: int = 5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not is_server_uri(base_url):
            raise InvalidArgumentError(
                "A Conveyor server URL starts with http:// or https://; "
                f"got {redact_uri(base_url)!r}."
            )
        self.base_url = base_url.rstrip("/")
        self.shown_url = redact_uri(self.base_url)  # for messages: no password
        self.token = token if token is not None else os.environ.get(TOKEN_ENV) or None
        self.timeout = timeout
        self.retries = retries
        self._transport = transport  # tests pass httpx.MockTransport
        self._client: httpx.Client | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ServerClient({self.shown_url!r})"  # never the token

    @property
    def http(self) -> httpx.Client:
        with self._lock:
            if self._client is None or self._pid != os.getpid():
                import httpx

                headers = {"User-Agent": "conveyor-client"}
                if self.token:
                    headers["Authorization"] = f"Bearer {self.token}"
                self._client = httpx.Client(
                    base_url=self.base_url,
                    headers=headers,
                    timeout=httpx.Timeout(self.timeout, connect=10.0),
                    limits=httpx.Limits(max_keepalive_connections=8),
                    transport=self._transport,
                )
                self._pid = os.getpid()
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None and self._pid == os.getpid():
                self._client.close()
            self._client = None

    @staticmethod
    def project_path(project: str, *rest: str) -> str:
        """``/api/v1/projects/<project>/<rest...>``, each part one URL-quoted segment.

        Slashes and dots inside a part are encoded too, so a name like ``train/loss`` or
        ``..`` stays one segment: nothing can walk to another route.
        """
        parts = [_segment(project), *(_segment(p) for p in rest)]
        return f"{API}/projects/" + "/".join(parts)

    # -- requests --------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        content: Any = None,
        files: Any = None,
        headers: dict[str, str] | None = None,
        retry: bool | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """Send one request; raise the server's typed error for a 4xx/5xx answer.

        ``retry`` (default: for GET, PUT, DELETE and requests with an Idempotency-Key)
        resends after network errors and 502/503/504, backing off up to ``retries`` times.
        ``timeout``: seconds to wait for the answer, for a request the server takes long on.
        """
        import httpx

        if retry is None:
            retry = method in ("GET", "PUT", "DELETE", "HEAD") or bool(
                headers and "Idempotency-Key" in headers
            )
        body: Any = None
        if json is not None:
            body = _dumps(json)
            headers = {**(headers or {}), "Content-Type": "application/json"}
        attempts = self.retries + 1 if retry else 1
        delay = 0.2
        for attempt in range(1, attempts + 1):
            try:
                response = self.http.request(
                    method,
                    path,
                    content=body if body is not None else content,
                    files=files,
                    params=params,
                    headers=headers,
                    timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
                )
            except (httpx.TransportError, httpx.TimeoutException) as e:
                if attempt == attempts:
                    raise BackendUnavailableError(
                        f"The Conveyor server at {self.shown_url} cannot be reached "
                        f"({str(e).rstrip('.')}).",
                        hint="Check the URL in CONVEYOR_STORE_URI and that the server runs.",
                    ) from e
            else:
                if response.status_code not in _RETRY_STATUSES or attempt == attempts:
                    break
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        return self._checked(response)

    def _checked(self, response: httpx.Response) -> httpx.Response:
        if response.status_code < 400:
            return response
        try:
            body = response.json()
        except ValueError:
            body = None
        error = error_from_body(response.status_code, body)
        if response.status_code == 401 and not self.token and isinstance(error, ConveyorError):
            raise UnauthenticatedError(
                error.message, hint=f"Set {TOKEN_ENV} to an API token of this server."
            )
        raise error

    def get_json(self, path: str, **params: Any) -> Any:
        clean = {k: v for k, v in params.items() if v is not None}
        return _loads(self.request("GET", path, params=clean).content)

    def send_json(self, method: str, path: str, payload: Any = None, **kw: Any) -> Any:
        response = self.request(method, path, json=payload if payload is not None else {}, **kw)
        return _loads(response.content) if response.content else None

    @contextmanager
    def stream(self, path: str) -> Iterator[httpx.Response]:
        """Open a GET whose body is read in chunks (``response.iter_bytes()``)."""
        import httpx

        try:
            with self.http.stream("GET", path) as response:
                if response.status_code >= 400:
                    response.read()
                    self._checked(response)
                yield response
        except httpx.TransportError as e:
            raise BackendUnavailableError(
                f"The Conveyor server at {self.shown_url} cannot be reached ({str(e).rstrip('.')})."
            ) from e


def _segment(part: str) -> str:
    return quote(part, safe="").replace(".", "%2E")


def _dumps(value: Any) -> bytes:
    try:
        import orjson
    except ImportError:  # pragma: no cover - orjson comes with the server extra
        import json

        return json.dumps(value, default=str).encode()
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS, default=str)


def _loads(data: bytes) -> Any:
    try:
        import orjson
    except ImportError:  # pragma: no cover
        import json

        return json.loads(data)
    return orjson.loads(data)
