"""Who may call each route: one rule per route, declared where the route is.

A rule is a project role (``viewer`` < ``editor`` < ``approver`` < ``admin``, checked in the
route's project), ``server-admin`` (users, projects, the server-wide audit) or ``user`` (any
valid token: who am I, my tokens). :data:`RULES` lists every route's rule; a test fails when a
route has none, and calls every route with every role.

The check here decides whether a caller reaches the service at all; the services check again
what depends on the object (a protected alias, the four-eyes rule), acting as the caller.
"""

from __future__ import annotations

import hmac
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Request

from conveyor.core.errors import NotFoundError, PermissionDeniedError, UnauthenticatedError
from conveyor.store.principal import ROLES, Principal, acting

if TYPE_CHECKING:
    from conveyor.server.app import ServerState
    from conveyor.store.records import Project
    from conveyor.store.workspace import Workspace

__all__ = ["PUBLIC", "RULES", "SERVER_ADMIN", "USER", "Api", "Call", "need", "rule_of"]

SERVER_ADMIN = "server-admin"
USER = "user"
PUBLIC = "public"  # no caller needed: only logging in
_RULES = (*ROLES, SERVER_ADMIN, USER, PUBLIC)
#: (method, path) -> rule, filled as routes are declared.
RULES: dict[tuple[str, str], str] = {}


@dataclass
class Call:
    """What a route works with: the caller, where they call from and (for project routes)
    the project's workspace. ``with call:`` runs the block as the caller."""

    state: ServerState
    principal: Principal | None
    source: str | None
    project: Project | None = None
    ws: Workspace | None = None

    @contextmanager
    def acting(self) -> Iterator[Call]:
        if self.principal is None:
            yield self
            return
        with acting(self.principal, source=self.source):
            yield self

    def __enter__(self) -> Call:
        self._cm = self.acting()
        return self._cm.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._cm.__exit__(*exc)

    @property
    def workspace(self) -> Workspace:
        assert self.ws is not None, "a project route"
        return self.ws

    @property
    def actor(self) -> str:
        return self.principal.name if self.principal else self.state.root.settings.actor


def _state(request: Request) -> ServerState:
    state: ServerState = request.app.state.conveyor
    return state


def _source(request: Request) -> str | None:
    return request.client.host if request.client else None


def _principal(request: Request) -> Principal | None:
    state = _state(request)
    if not state.auth:
        return None
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        session = request.cookies.get(SESSION_COOKIE)
        if session:
            return _session_principal(request, state, session)
        raise UnauthenticatedError(
            "This server needs an API token: send 'Authorization: Bearer <token>'.",
            hint="Create one with: conveyor tokens create USER (SDK/CLI: set CONVEYOR_TOKEN).",
        )
    return _authenticated(request, state, secret.strip())


def _authenticated(request: Request, state: ServerState, secret: str) -> Principal:
    """A valid token always passes; an address whose tokens keep failing is slowed down
    (429) instead of being told which tokens are wrong."""
    try:
        return state.authenticate(secret)
    except UnauthenticatedError:
        state.limiter.spend(f"auth:{_source(request)}")  # past the budget: 429 from now on
        raise


SESSION_COOKIE = "conveyor_session"
CSRF_COOKIE = "conveyor_csrf"
CSRF_HEADER = "x-csrf-token"
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def _session_principal(request: Request, state: ServerState, secret: str) -> Principal:
    """The user of a browser session cookie. A change needs the CSRF header too: its value
    must equal the CSRF cookie, which only pages of this server can read (double submit)."""
    if request.method not in _SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        expected = request.cookies.get(CSRF_COOKIE, "")
        if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
            raise PermissionDeniedError(
                "This change comes with a session cookie but without the matching CSRF token.",
                hint=f"Send the {CSRF_COOKIE} cookie's value in the X-CSRF-Token header.",
            )
    return _authenticated(request, state, secret)


def _dependency(rule: str) -> Callable[..., Call]:
    if rule in ROLES:

        def project_call(request: Request, project: str) -> Call:
            principal = _principal(request)
            state = _state(request)
            found = state.find_project(project)
            held = principal.role_in(found.id) if (principal and found) else None
            if found is None or (principal is not None and held is None):
                # The same answer whether it does not exist or is not yours: no leak.
                raise NotFoundError(f"No project called {project!r} that you can see.")
            if principal is not None and not principal.can(found.id, rule):
                raise PermissionDeniedError(
                    f"{principal.name!r} holds the {held} role in project {project!r}; "
                    f"this needs {rule}.",
                    hint="Ask a project admin: conveyor users grant USER ROLE --project "
                    f"{project}.",
                )
            return Call(state, principal, _source(request), found, state.workspace(found.name))

        return project_call

    def server_call(request: Request) -> Call:
        if rule == PUBLIC:
            return Call(_state(request), None, _source(request))
        principal = _principal(request)
        if rule == SERVER_ADMIN and principal is not None and not principal.server_admin:
            raise PermissionDeniedError(
                f"{principal.name!r} is not a server administrator using a token for every "
                "project; this needs one.",
            )
        return Call(_state(request), principal, _source(request))

    return server_call


def rule_of(endpoint: Callable[..., Any]) -> str | None:
    """The rule an endpoint declares through its ``call: Call = need(RULE)`` parameter."""
    for param in inspect.signature(endpoint).parameters.values():
        dependency = getattr(param.default, "dependency", None)
        rule = getattr(dependency, "rule", None)
        if rule is not None:
            return str(rule)
    return None


class Api(APIRouter):
    """An APIRouter whose every route declares its rule with a ``need(RULE)`` parameter."""

    def add_api_route(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        rule = rule_of(endpoint)
        if rule is None:
            raise TypeError(f"The route {path} declares no rule: add `call: Call = need(...)`.")
        kwargs["openapi_extra"] = {**(kwargs.get("openapi_extra") or {}), "x-conveyor-rule": rule}
        super().add_api_route(path, endpoint, **kwargs)
        for method in kwargs.get("methods") or ["GET"]:
            RULES[(method.upper(), self.prefix + path)] = rule

    def api_route(self, path: str, **kwargs: Any) -> Callable[..., Any]:
        def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
            self.add_api_route(path, func, **kwargs)
            return func

        return decorator

    def get(self, path: str, **kwargs: Any) -> Callable[..., Any]:
        return self.api_route(path, methods=["GET"], **kwargs)

    def post(self, path: str, **kwargs: Any) -> Callable[..., Any]:
        return self.api_route(path, methods=["POST"], **kwargs)

    def put(self, path: str, **kwargs: Any) -> Callable[..., Any]:
        return self.api_route(path, methods=["PUT"], **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Callable[..., Any]:
        return self.api_route(path, methods=["DELETE"], **kwargs)


def need(rule: str) -> Any:
    """The dependency of a route with ``rule`` (pass it as ``call: Call = need("viewer")``)."""
    if rule not in _RULES:
        raise TypeError(f"Unknown rule {rule!r}; expected one of {_RULES}.")
    dependency = _dependency(rule)
    dependency.rule = rule  # type: ignore[attr-defined]
    return Depends(dependency)
