"""Who is acting: the principal a team server authenticated for the request in progress.

The server sets it for each request (:func:`acting`); services read it to refuse what the
principal's role does not allow (:func:`require_role`) and the metadata store writes its name,
token and source address into every audit event. With no principal (the embedded default, a
script on your own machine) nothing is refused: whoever can open the files can do anything.

>>> p = Principal(user_id="u1", name="ana", roles={"p1": "editor"})
>>> with acting(p, source="127.0.0.1"):
...     current_principal().can("p1", "viewer"), current_principal().can("p1", "approver")
(True, False)
>>> current_principal() is None
True
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import lru_cache

from conveyor.core.errors import InvalidArgumentError, PermissionDeniedError

__all__ = [
    "ACTING_ENV",
    "ROLES",
    "Principal",
    "acting",
    "acting_env",
    "current_principal",
    "current_source",
    "require_role",
    "role_rank",
]

#: Project roles, each allowing what the ones before it allow.
ROLES: tuple[str, ...] = ("viewer", "editor", "approver", "admin")
_RANK = {role: i for i, role in enumerate(ROLES)}


def role_rank(role: str) -> int:
    """Return ``role``'s place in :data:`ROLES`; raise for an unknown role."""
    try:
        return _RANK[role]
    except KeyError:
        raise InvalidArgumentError(
            f"Unknown role {role!r}; expected one of: {', '.join(ROLES)}."
        ) from None


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated user, with the token they used and their role in each project."""

    user_id: str
    name: str
    roles: Mapping[str, str] = field(default_factory=dict)  # project id -> role
    is_admin: bool = False  # server administrator: every project, users, audit
    token_id: str | None = None
    token_project_id: str | None = None  # a token made for one project sees only that one

    @property
    def server_admin(self) -> bool:
        """A server administrator using a token for every project (not one made for one)."""
        return self.is_admin and self.token_project_id is None

    def role_in(self, project_id: str) -> str | None:
        """Return this principal's role in the project, or None (it sees nothing there)."""
        if self.token_project_id is not None and project_id != self.token_project_id:
            return None
        if self.is_admin:
            return "admin"
        return self.roles.get(project_id)

    def can(self, project_id: str, role: str) -> bool:
        """Whether this principal holds ``role`` (or a stronger one) in the project."""
        held = self.role_in(project_id)
        return held is not None and _RANK[held] >= role_rank(role)


@dataclass(frozen=True, slots=True)
class _Acting:
    principal: Principal
    source: str | None


_acting: ContextVar[_Acting | None] = ContextVar("conveyor_principal", default=None)


@contextmanager
def acting(principal: Principal, *, source: str | None = None) -> Iterator[Principal]:
    """Run the block as ``principal`` (from ``source``, a client address)."""
    token = _acting.set(_Acting(principal, source))
    try:
        yield principal
    finally:
        _acting.reset(token)


#: A process a team server starts for a caller (a pipeline run) acts as that caller in every
#: thread and worker process: the principal travels in this variable. It only ever narrows
#: what the process may do (without it, the process could do anything with the stores).
ACTING_ENV = "CONVEYOR_ACTING_AS"


def acting_env(principal: Principal, *, source: str | None = None) -> str:
    """The value of :data:`ACTING_ENV` that makes a process act as ``principal``."""
    import json

    fields = {
        "user_id": principal.user_id,
        "name": principal.name,
        "roles": dict(principal.roles),
        "is_admin": principal.is_admin,
        "token_id": principal.token_id,
        "token_project_id": principal.token_project_id,
    }
    return json.dumps({"principal": fields, "source": source})


@lru_cache(maxsize=4)
def _parse_env(raw: str) -> _Acting:
    import json

    try:
        data = json.loads(raw)
        return _Acting(Principal(**data["principal"]), data.get("source"))
    except (ValueError, TypeError, KeyError) as e:
        raise InvalidArgumentError(f"{ACTING_ENV} does not hold a principal ({e}).") from None


def _now() -> _Acting | None:
    now = _acting.get()
    if now is None and (raw := os.environ.get(ACTING_ENV)):
        return _parse_env(raw)
    return now


def current_principal() -> Principal | None:
    """Return the principal acting in this context (or this process), or None (embedded)."""
    now = _now()
    return now.principal if now is not None else None


def current_source() -> str | None:
    """Return the client address of the request in progress, or None."""
    now = _now()
    return now.source if now is not None else None


def require_role(project_id: str, role: str, action: str) -> None:
    """Refuse ``action`` unless the acting principal holds ``role`` in the project.

    Nothing is refused when no principal is acting (embedded use).
    """
    principal = current_principal()
    if principal is None or principal.can(project_id, role):
        return
    held = principal.role_in(project_id)
    raise PermissionDeniedError(
        f"{principal.name!r} may not {action}: it needs the {role} role in this project "
        f"and holds {held or 'no role'}.",
        hint="Ask a project admin: conveyor users grant USER ROLE --project PROJECT.",
    )
