"""Routes for identity and governance: who am I, projects and members, users, tokens, audit."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import Query, Request, Response
from pydantic import BaseModel, Field

from conveyor.core.encoding import jsonable
from conveyor.core.errors import (
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from conveyor.server.rules import (
    CSRF_COOKIE,
    PUBLIC,
    SERVER_ADMIN,
    SESSION_COOKIE,
    USER,
    Api,
    Call,
    need,
)
from conveyor.store.principal import Principal, acting
from conveyor.store.records import ObjectRef

api = Api(prefix="/api/v1")


class Login(BaseModel):
    user: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=1000)


SESSION_HOURS = 12


@api.post("/login")
def login(body: Login, request: Request, response: Response, call: Call = need(PUBLIC)) -> Any:
    """Log in with a password (browser sessions): sets an HTTP-only session cookie and a
    CSRF cookie whose value changes must echo in the X-CSRF-Token header."""
    attempt = call.state.limiter.spend(f"login:{call.source}")  # taken back if it succeeds
    user = call.state.identity.check_password(body.user, body.password)
    call.state.limiter.refund(attempt)
    principal = Principal(user_id=user.id, name=user.name, is_admin=user.is_admin)
    with acting(principal, source=call.source):
        _end_session(call, request)  # a new login replaces this browser's old session
        info, secret = call.state.identity.create_token(
            user.name, "browser session", expires_in=timedelta(hours=SESSION_HOURS)
        )
    csrf = secrets.token_urlsafe(32)
    # Secure always: browsers keep it over https and on http://localhost; a server reached
    # over plain http from elsewhere should not be handing out sessions anyway.
    secure = True
    age = SESSION_HOURS * 3600
    response.set_cookie(
        SESSION_COOKIE, secret, max_age=age, httponly=True, samesite="strict", secure=secure
    )
    response.set_cookie(CSRF_COOKIE, csrf, max_age=age, samesite="strict", secure=secure)
    return {"user": user.name, "csrf_token": csrf, "expires_at": jsonable(info.expires_at)}


@api.post("/logout")
def logout(request: Request, response: Response, call: Call = need(PUBLIC)) -> Any:
    """End the browser session of this request's cookie (its token is revoked; an expired or
    unknown session is just forgotten). A bearer token is never revoked here. Like every
    change made with the session cookie, it needs the CSRF header."""
    expected = request.cookies.get(CSRF_COOKIE, "")
    sent = request.headers.get("x-csrf-token", "")
    if request.cookies.get(SESSION_COOKIE) and not (
        expected and secrets.compare_digest(sent, expected)
    ):
        raise PermissionDeniedError(
            "Logging out with a session cookie needs the matching CSRF token.",
            hint=f"Send the {CSRF_COOKIE} cookie's value in the X-CSRF-Token header.",
        )
    _end_session(call, request)
    response.delete_cookie(SESSION_COOKIE)
    response.delete_cookie(CSRF_COOKIE)
    return {"logged_out": True}


def _end_session(call: Call, request: Request) -> None:
    secret = request.cookies.get(SESSION_COOKIE)
    if not secret:
        return
    identity = call.state.identity
    try:
        principal = identity.authenticate(secret)
    except UnauthenticatedError:
        return
    if principal.token_id is not None:
        with acting(principal, source=call.source):
            identity.revoke_token(principal.token_id)


class NewProject(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=10_000)


class Membership(BaseModel):
    role: str = Field(description="viewer, editor, approver or admin")


class NewUser(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    admin: bool = False
    password: str | None = Field(default=None, min_length=8, max_length=1000)


class NewToken(BaseModel):
    name: str = Field(default="default", min_length=1, max_length=100)
    user: str | None = Field(default=None, description="another user's (server admins only)")
    project: str | None = Field(default=None, description="limit the token to one project")
    expires_in_days: float | None = Field(default=None, gt=0, le=3650)


def _project(project: Any) -> dict[str, Any]:
    return {
        "id": project.id,
        "name": project.name,
        "description": project.description,
        "created_at": project.created_at.isoformat(),
    }


@api.get("/whoami")
def whoami(call: Call = need(USER)) -> dict[str, Any]:
    """The caller: user name, server-admin flag, token id and role per project."""
    p = call.principal
    if p is None:
        return {"user": call.actor, "admin": True, "auth": False, "roles": {}}
    names = {pr.id: pr.name for pr in call.state.root.metadata.list_projects()}
    roles = {names[pid]: p.role_in(pid) for pid in names if p.role_in(pid) is not None}
    return {
        "user": p.name,
        "admin": p.server_admin,
        "auth": True,
        "token_id": p.token_id,
        "token_project": names.get(p.token_project_id or ""),
        "roles": roles,
    }


@api.get("/projects")
def list_projects(call: Call = need(USER)) -> dict[str, Any]:
    """The projects the caller can see, with their role in each."""
    out = []
    for project in call.state.root.metadata.list_projects():
        role = call.principal.role_in(project.id) if call.principal else "admin"
        if role is not None:
            out.append({**_project(project), "role": role})
    return {"projects": out}


@api.post("/projects", status_code=201)
def create_project(body: NewProject, call: Call = need(SERVER_ADMIN)) -> dict[str, Any]:
    """Create a project (server admins)."""
    with call:
        metadata = call.state.root.metadata
        if metadata.find_project(body.name) is not None:
            from conveyor.core.errors import AlreadyExistsError

            raise AlreadyExistsError(f"There is already a project called {body.name!r}.")
        return _project(metadata.ensure_project(body.name, description=body.description))


@api.get("/projects/{project}")
def get_project(project: str, call: Call = need("viewer")) -> dict[str, Any]:
    """One project, with the caller's role in it."""
    assert call.project is not None
    role = call.principal.role_in(call.project.id) if call.principal else "admin"
    return {**_project(call.project), "role": role}


@api.get("/projects/{project}/members")
def members(project: str, call: Call = need("admin")) -> dict[str, Any]:
    """The users with a role in the project."""
    found = [
        {"user": u.name, "role": u.roles[project], "disabled": u.disabled}
        for u in call.state.identity.list_users()
        if project in u.roles
    ]
    return {"members": found}


@api.put("/projects/{project}/members/{user}")
def grant(project: str, user: str, body: Membership, call: Call = need("admin")) -> dict[str, Any]:
    """Give a user a role in the project (replacing the one they held)."""
    with call:
        granted = call.state.identity.grant(user, project, body.role)
    return {"user": granted.name, "role": granted.roles[project]}


@api.delete("/projects/{project}/members/{user}")
def revoke(project: str, user: str, call: Call = need("admin")) -> dict[str, Any]:
    """Take away a user's role in the project."""
    with call:
        call.state.identity.revoke_role(user, project)
    return {"user": user, "role": None}


def _audit(
    call: Call,
    *,
    project_id: str | None,
    obj: str | None,
    actor: str | None,
    action: str | None,
    since: str | None,
    limit: int,
) -> dict[str, Any]:
    when = None
    if since:
        try:
            when = datetime.fromisoformat(since)
            when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
        except (ValueError, OverflowError):
            raise InvalidArgumentError(f"since must be an ISO 8601 time; got {since!r}.") from None
    events = call.state.root.metadata.audit_log(
        obj=ObjectRef.parse(obj) if obj else None,
        actor=actor,
        action=action,
        since=when,
        project_id=project_id,
        limit=limit,
    )
    return {"events": jsonable(events)}


@api.get("/projects/{project}/audit")
def project_audit(
    project: str,
    object: str | None = Query(default=None, description="KIND:ID"),
    actor: str | None = None,
    action: str | None = None,
    since: str | None = Query(default=None, description="ISO 8601 time"),
    limit: int = Query(default=100, ge=1, le=10_000),
    call: Call = need("admin"),
) -> dict[str, Any]:
    """The project's audit events, newest first (project admins)."""
    assert call.project is not None
    return _audit(
        call,
        project_id=call.project.id,
        obj=object,
        actor=actor,
        action=action,
        since=since,
        limit=limit,
    )


@api.get("/audit")
def server_audit(
    object: str | None = Query(default=None, description="KIND:ID"),
    actor: str | None = None,
    action: str | None = None,
    since: str | None = Query(default=None, description="ISO 8601 time"),
    limit: int = Query(default=100, ge=1, le=10_000),
    call: Call = need(SERVER_ADMIN),
) -> dict[str, Any]:
    """Every audit event of the server, newest first (server admins)."""
    return _audit(
        call, project_id=None, obj=object, actor=actor, action=action, since=since, limit=limit
    )


@api.get("/users")
def list_users(call: Call = need(SERVER_ADMIN)) -> dict[str, Any]:
    """Every user with their roles (server admins)."""
    return {"users": jsonable(call.state.identity.list_users())}


@api.post("/users", status_code=201)
def add_user(body: NewUser, call: Call = need(SERVER_ADMIN)) -> dict[str, Any]:
    """Create a user (server admins)."""
    with call:
        user = call.state.identity.add_user(body.name, admin=body.admin, password=body.password)
    return jsonable(user)


@api.post("/users/{user}/disable")
def disable_user(user: str, call: Call = need(SERVER_ADMIN)) -> dict[str, Any]:
    """Disable a user: their tokens stop working at once (server admins; not oneself)."""
    with call:
        if call.principal is not None and call.principal.name == user:
            raise ConflictError(
                "You cannot disable yourself: your token would stop working at once.",
                hint="Ask another administrator.",
            )
        return jsonable(call.state.identity.set_disabled(user, True))


@api.post("/users/{user}/enable")
def enable_user(user: str, call: Call = need(SERVER_ADMIN)) -> dict[str, Any]:
    """Enable a disabled user again (server admins)."""
    with call:
        return jsonable(call.state.identity.set_disabled(user, False))


class NewPassword(BaseModel):
    password: str = Field(min_length=8, max_length=1000)


@api.post("/users/{user}/password")
def set_password(user: str, body: NewPassword, call: Call = need(USER)) -> dict[str, Any]:
    """Set a user's web-UI password: one's own, or anyone's (server admins). Not with a
    token made for one project: a password opens every project of its user."""
    _own_or_admin(call, user, "password")
    if call.principal is not None and call.principal.token_project_id is not None:
        raise PermissionDeniedError(
            "A token made for one project cannot set a password (a login reaches every "
            "project of its user).",
            hint="Use a token made without --project.",
        )
    with call:
        call.state.identity.set_password(user, body.password)
    return {"user": user}


def _own_or_admin(call: Call, user: str, what: str = "tokens") -> None:
    p = call.principal
    if p is not None and not p.server_admin and p.name != user:
        raise PermissionDeniedError(f"{p.name!r} may manage only their own {what}.")


def _token_project(call: Call) -> str | None:
    """The project name a project-limited token is for (its tokens stay within it)."""
    p = call.principal
    if p is None or p.token_project_id is None:
        return None
    names = {pr.id: pr.name for pr in call.state.root.metadata.list_projects()}
    return names.get(p.token_project_id)


@api.get("/tokens")
def list_tokens(user: str | None = None, call: Call = need(USER)) -> dict[str, Any]:
    """The caller's tokens (server admins: anyone's, with ?user=); never their secrets.

    With a token made for one project, only the tokens made for that project."""
    who = user or call.actor
    _own_or_admin(call, who)
    found = call.state.identity.list_tokens(who)
    scope = _token_project(call)
    if call.principal is not None and call.principal.token_project_id is not None:
        found = [t for t in found if t.project == scope]
    return {"tokens": jsonable(found)}


@api.post("/tokens", status_code=201)
def create_token(body: NewToken, call: Call = need(USER)) -> dict[str, Any]:
    """Create a token; the answer holds its secret, shown this once."""
    who = body.user or call.actor
    _own_or_admin(call, who)
    if call.principal is not None and call.principal.token_project_id is not None:
        scope = _token_project(call)
        if body.project not in (None, scope):
            raise PermissionDeniedError(
                f"A token made for project {scope!r} can make tokens only for that project."
            )
        body = body.model_copy(update={"project": scope})
    call.state.limiter.spend(f"token:{call.source}")  # creations count as failures do
    if body.project and call.principal is not None:
        found = call.state.find_project(body.project)
        if found is None or call.principal.role_in(found.id) is None:
            raise NotFoundError(f"No project called {body.project!r} that you can see.")
    expires = timedelta(days=body.expires_in_days) if body.expires_in_days is not None else None
    with call:
        info, secret = call.state.identity.create_token(
            who, body.name, project=body.project, expires_in=expires
        )
    return {"token": secret, **jsonable(info)}


@api.delete("/tokens/{token_id}")
def revoke_token(token_id: str, call: Call = need(USER)) -> dict[str, Any]:
    """Revoke a token (one's own; server admins: anyone's), named by its id or a unique start
    of it. The start is matched only among the tokens the caller may manage, so an ambiguous
    one never lists another user's tokens (nor, for a project token, another project's)."""
    p = call.principal
    scoped = p is not None and p.token_project_id is not None
    scope = _token_project(call) if scoped else None
    info = call.state.identity.find_token(
        token_id,
        user=None if p is None or p.server_admin else p.name,
        visible=(lambda t: t.project == scope) if scoped else None,
    )
    _own_or_admin(call, info.user)
    with call:
        return jsonable(call.state.identity.revoke_token(info.id))
