"""Users, API tokens and project roles of a team server, kept in the metadata store.

Tokens are 256 random bits shown once; the store keeps only their SHA-256 (a token is not a
password: it cannot be guessed, so a fast hash is the right one, and lookups stay one index
probe). Passwords, for browser login, are hashed with argon2id (argon2-cffi). Every change is
an audit event.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from conveyor.core import ids
from conveyor.core.clock import utcnow
from conveyor.core.errors import (
    AlreadyExistsError,
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from conveyor.core.names import validate_project_name
from conveyor.store.metadata.schema import projects, role_bindings, tokens, users
from conveyor.store.metadata.store import MetadataStore
from conveyor.store.principal import ROLES, Principal, role_rank
from conveyor.store.records import ObjectRef

__all__ = ["IdentityStore", "TokenInfo", "User", "token_digest"]

TOKEN_PREFIX = "cvt_"  # noqa: S105 - marks Conveyor tokens, not a secret
MIN_ID_PREFIX = 6  # the shortest start of a token id that `tokens revoke` takes
_SHOWN_MATCHES = 10
_NAME_MAX = 100
_TOUCH_EVERY = timedelta(minutes=1)


def token_digest(secret: str) -> str:
    """Return the stored form of a token: the hex SHA-256 of the secret."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class User:
    """A user of a team server and their project roles (project name -> role)."""

    id: str
    name: str
    is_admin: bool
    created_at: datetime
    disabled_at: datetime | None
    roles: dict[str, str]

    @property
    def disabled(self) -> bool:
        return self.disabled_at is not None


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """An API token as listed: never its secret."""

    id: str
    user: str
    name: str
    prefix: str
    project: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    @property
    def active(self) -> bool:
        now = utcnow()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


def _validate_user_name(name: str) -> str:
    ok = (
        isinstance(name, str)
        and 0 < len(name) <= _NAME_MAX
        and all(c.isalnum() or c in "._-@" for c in name)
    )
    if not ok:
        raise InvalidArgumentError(
            f"A user name is 1 to {_NAME_MAX} letters, digits and . _ - @; got {name!r}."
        )
    return name


class IdentityStore:
    """Users, tokens and roles in ``metadata`` (the team server's and the admin CLI's view)."""

    def __init__(self, metadata: MetadataStore) -> None:
        self.metadata = metadata

    # -- users -----------------------------------------------------------------------------

    def add_user(self, name: str, *, admin: bool = False, password: str | None = None) -> User:
        """Create a user; raise AlreadyExistsError if the name is taken."""
        _validate_user_name(name)
        user_id = ids.new_id()
        with self.metadata.transaction() as uow:
            taken = uow.conn.execute(sa.select(users.c.id).where(users.c.name == name)).first()
            if taken:
                raise AlreadyExistsError(f"There is already a user called {name!r}.")
            uow.conn.execute(
                users.insert().values(
                    id=user_id,
                    name=name,
                    is_admin=admin,
                    password_hash=_hash_password(password) if password else None,
                    created_at=uow.now,
                )
            )
            uow.audit(
                "user.create", ObjectRef("user", user_id), after={"name": name, "admin": admin}
            )
        return self.user(name)

    def user(self, name: str) -> User:
        """Return the user ``name`` with their roles."""
        with self.metadata.read() as conn:
            row = conn.execute(sa.select(users).where(users.c.name == name)).first()
            if row is None:
                raise NotFoundError(
                    f"No user called {name!r}.", hint="List them with: conveyor users list"
                )
            return self._to_user(conn, row)

    def list_users(self) -> list[User]:
        """Return every user, sorted by name."""
        with self.metadata.read() as conn:
            rows = conn.execute(sa.select(users).order_by(users.c.name)).all()
            return [self._to_user(conn, r) for r in rows]

    def count_users(self) -> int:
        with self.metadata.read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(users)).scalar_one())

    def _to_user(self, conn: sa.Connection, row: sa.Row) -> User:
        bound = conn.execute(
            sa.select(projects.c.name, role_bindings.c.role)
            .join(projects, projects.c.id == role_bindings.c.project_id)
            .where(role_bindings.c.user_id == row.id)
        ).all()
        return User(
            id=row.id,
            name=row.name,
            is_admin=bool(row.is_admin),
            created_at=row.created_at,
            disabled_at=row.disabled_at,
            roles={r.name: r.role for r in bound},
        )

    def set_disabled(self, name: str, disabled: bool = True) -> User:
        """Disable a user (their tokens stop working at once) or enable them again.

        The last enabled server administrator is not disabled: nobody could enable them
        again through the server.
        """
        user = self.user(name)
        with self.metadata.transaction() as uow:
            if disabled and user.is_admin:
                # The enabled admins' rows are locked (PostgreSQL): of two admins disabling
                # each other at once, the second sees the first's change, not a stale count.
                enabled = uow.conn.execute(
                    sa.select(users.c.id)
                    .where(users.c.is_admin, users.c.disabled_at.is_(None))
                    .order_by(users.c.id)
                    .with_for_update()
                ).scalars()
                if not [i for i in enabled if i != user.id]:
                    raise ConflictError(
                        f"{name!r} is the last enabled server administrator: disabling them "
                        "would leave nobody to manage users and tokens.",
                        hint="Add another administrator first (conveyor users add NAME --admin).",
                    )
            uow.conn.execute(
                users.update()
                .where(users.c.id == user.id)
                .values(disabled_at=uow.now if disabled else None)
            )
            uow.audit(
                "user.disable" if disabled else "user.enable",
                ObjectRef("user", user.id),
                before={"disabled": user.disabled},
                after={"disabled": disabled},
            )
        return self.user(name)

    def set_password(self, name: str, password: str) -> None:
        """Set the password a user logs in to the web UI with (hashed with argon2id)."""
        if len(password) < 8:
            raise InvalidArgumentError("A password needs at least 8 characters.")
        user = self.user(name)
        with self.metadata.transaction() as uow:
            uow.conn.execute(
                users.update()
                .where(users.c.id == user.id)
                .values(password_hash=_hash_password(password))
            )
            uow.audit("user.password", ObjectRef("user", user.id))

    def check_password(self, name: str, password: str) -> User:
        """Return the user if ``password`` is theirs and they are enabled; else raise."""
        with self.metadata.read() as conn:
            row = conn.execute(sa.select(users).where(users.c.name == name)).first()
        stored = row.password_hash if row is not None else None
        if not _verify_password(stored, password) or row is None or row.disabled_at is not None:
            raise UnauthenticatedError("Wrong user name or password.")
        return self.user(name)

    # -- roles -----------------------------------------------------------------------------

    def grant(self, name: str, project: str, role: str) -> User:
        """Give ``name`` the ``role`` in ``project`` (replacing any role they held there)."""
        role_rank(role)
        user = self.user(name)
        project_id = self._project_id(project)
        with self.metadata.transaction(project_id=project_id) as uow:
            before = uow.conn.execute(
                sa.select(role_bindings.c.role).where(
                    role_bindings.c.user_id == user.id, role_bindings.c.project_id == project_id
                )
            ).scalar_one_or_none()
            uow.conn.execute(
                role_bindings.delete().where(
                    role_bindings.c.user_id == user.id, role_bindings.c.project_id == project_id
                )
            )
            uow.conn.execute(
                role_bindings.insert().values(
                    id=ids.new_id(),
                    user_id=user.id,
                    project_id=project_id,
                    role=role,
                    created_at=uow.now,
                )
            )
            uow.audit(
                "role.grant",
                ObjectRef("user", user.id),
                before={"project": project, "role": before},
                after={"project": project, "role": role},
            )
        return self.user(name)

    def revoke_role(self, name: str, project: str) -> User:
        """Take away ``name``'s role in ``project``."""
        user = self.user(name)
        project_id = self._project_id(project)
        with self.metadata.transaction(project_id=project_id) as uow:
            gone = uow.conn.execute(
                role_bindings.delete().where(
                    role_bindings.c.user_id == user.id, role_bindings.c.project_id == project_id
                )
            ).rowcount
            if gone:
                uow.audit(
                    "role.revoke",
                    ObjectRef("user", user.id),
                    before={"project": project, "role": user.roles.get(project)},
                )
        return self.user(name)

    def _project_id(self, project: str) -> str:
        validate_project_name(project)
        return self.metadata.ensure_project(project).id

    # -- tokens ----------------------------------------------------------------------------

    def create_token(
        self,
        user: str,
        name: str = "default",
        *,
        project: str | None = None,
        expires_in: timedelta | None = None,
    ) -> tuple[TokenInfo, str]:
        """Create an API token for ``user``; return it and its secret (shown only now).

        ``project`` limits the token to one project; ``expires_in`` makes it expire.
        """
        if not name or len(name) > _NAME_MAX:
            raise InvalidArgumentError(f"A token name is 1 to {_NAME_MAX} characters.")
        if expires_in is not None and expires_in <= timedelta(0):
            raise InvalidArgumentError("A token's lifetime must be positive.")
        owner = self.user(user)
        project_id = self.metadata.get_project(project).id if project else None
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token_id = ids.new_id()
        with self.metadata.transaction(project_id=project_id) as uow:
            uow.conn.execute(
                tokens.insert().values(
                    id=token_id,
                    user_id=owner.id,
                    name=name,
                    digest=token_digest(secret),
                    prefix=secret[: len(TOKEN_PREFIX) + 6],
                    project_id=project_id,
                    created_at=uow.now,
                    expires_at=uow.now + expires_in if expires_in else None,
                )
            )
            uow.audit(
                "token.create",
                ObjectRef("token", token_id),
                after={"user": user, "name": name, "project": project},
            )
        return self.token(token_id), secret

    def token(self, token_id: str) -> TokenInfo:
        """Return the token ``token_id`` (never its secret)."""
        found = self.list_tokens(token_id=token_id)
        if not found:
            raise NotFoundError(f"No token {token_id!r}.", hint="List them: conveyor tokens list")
        return found[0]

    def find_token(
        self,
        id_or_prefix: str,
        *,
        user: str | None = None,
        visible: Callable[[TokenInfo], bool] | None = None,
    ) -> TokenInfo:
        """Return the token whose id is ``id_or_prefix`` or the one token whose id starts with
        it (at least :data:`MIN_ID_PREFIX` characters, as git takes short commit ids).

        ``user`` and ``visible`` narrow the tokens looked at to the ones the caller may see,
        so that an error never names another's token. Raises NotFoundError when no
        token matches and InvalidArgumentError when the prefix is short or ambiguous.
        """
        wanted = id_or_prefix.strip().upper()  # ids are upper-case Crockford base32
        if len(wanted) < MIN_ID_PREFIX:
            raise InvalidArgumentError(
                f"A token id or the start of one needs at least {MIN_ID_PREFIX} characters; "
                f"got {id_or_prefix!r}.",
                hint="Copy the id from: conveyor tokens list",
            )
        found = [
            t for t in self.list_tokens(user, id_prefix=wanted) if visible is None or visible(t)
        ]
        exact = [t for t in found if t.id == wanted]
        if exact:
            return exact[0]
        if not found:
            raise NotFoundError(
                f"No token id starts with {id_or_prefix!r}.",
                hint="List them: conveyor tokens list",
            )
        # A revoked token needs nothing more done to it: a start shared with revoked ones
        # names the one still working (ids made close in time share their first characters).
        active = [t for t in found if t.revoked_at is None]
        if len(found) > 1 and active:
            found = active
        if len(found) > 1:
            shown = ", ".join(f"{t.id} ({t.user}, {t.name!r})" for t in found[:_SHOWN_MATCHES])
            more = f" and {len(found) - _SHOWN_MATCHES} more" if len(found) > _SHOWN_MATCHES else ""
            raise InvalidArgumentError(
                f"{id_or_prefix!r} is the start of {len(found)} token ids: {shown}{more}.",
                hint="Give more of the id (ids made close in time share their first characters).",
            )
        return found[0]

    def list_tokens(
        self,
        user: str | None = None,
        *,
        token_id: str | None = None,
        id_prefix: str | None = None,
    ) -> list[TokenInfo]:
        """Return tokens (of ``user`` if given; whose id starts with ``id_prefix`` if given),
        newest first."""
        query = (
            sa.select(tokens, users.c.name.label("user_name"), projects.c.name.label("project"))
            .join(users, users.c.id == tokens.c.user_id)
            .outerjoin(projects, projects.c.id == tokens.c.project_id)
            .order_by(tokens.c.id.desc())
        )
        if user is not None:
            query = query.where(users.c.name == user)
        if token_id is not None:
            query = query.where(tokens.c.id == token_id)
        if id_prefix is not None:
            query = query.where(tokens.c.id.startswith(id_prefix, autoescape=True))
        with self.metadata.read() as conn:
            rows = conn.execute(query).all()
        return [
            TokenInfo(
                id=r.id,
                user=r.user_name,
                name=r.name,
                prefix=r.prefix,
                project=r.project,
                created_at=r.created_at,
                expires_at=r.expires_at,
                revoked_at=r.revoked_at,
                last_used_at=r.last_used_at,
            )
            for r in rows
        ]

    def revoke_token(self, token_id: str) -> TokenInfo:
        """Revoke a token: it stops working at once."""
        before = self.token(token_id)
        with self.metadata.transaction() as uow:
            uow.conn.execute(
                tokens.update()
                .where(tokens.c.id == token_id, tokens.c.revoked_at.is_(None))
                .values(revoked_at=uow.now)
            )
            uow.audit("token.revoke", ObjectRef("token", token_id), after={"user": before.user})
        return self.token(token_id)

    def authenticate(self, secret: str) -> Principal:
        """Return the principal a token secret stands for; raise UnauthenticatedError if the
        token is unknown, revoked or expired, or its user is disabled."""
        if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
            raise UnauthenticatedError(
                "The API token is not a Conveyor token.",
                hint="Create one with: conveyor tokens create USER",
            )
        digest = token_digest(secret)
        now = utcnow()
        with self.metadata.read() as conn:
            row = conn.execute(
                sa.select(
                    tokens.c.id,
                    tokens.c.project_id,
                    tokens.c.expires_at,
                    tokens.c.revoked_at,
                    tokens.c.last_used_at,
                    users.c.id.label("user_id"),
                    users.c.name,
                    users.c.is_admin,
                    users.c.disabled_at,
                )
                .join(users, users.c.id == tokens.c.user_id)
                .where(tokens.c.digest == digest)
            ).first()
            if row is None or row.revoked_at is not None or row.disabled_at is not None:
                raise UnauthenticatedError(
                    "The API token is unknown or revoked, or its user is disabled.",
                    hint="Create a new one with: conveyor tokens create USER",
                )
            if row.expires_at is not None and row.expires_at <= now:
                raise UnauthenticatedError(
                    f"The API token expired at {row.expires_at:%Y-%m-%d %H:%M} UTC.",
                    hint="Create a new one with: conveyor tokens create USER",
                )
            roles = dict(
                conn.execute(
                    sa.select(role_bindings.c.project_id, role_bindings.c.role).where(
                        role_bindings.c.user_id == row.user_id
                    )
                ).all()
            )
        if row.last_used_at is None or now - row.last_used_at > _TOUCH_EVERY:
            with self.metadata.transaction() as uow:  # at most once a minute: no write per call
                uow.conn.execute(
                    tokens.update().where(tokens.c.id == row.id).values(last_used_at=now)
                )
        return Principal(
            user_id=row.user_id,
            name=row.name,
            roles=roles,
            is_admin=bool(row.is_admin),
            token_id=row.id,
            token_project_id=row.project_id,
        )

    def principal_for(self, user_id: str, project_id: str) -> Principal:
        """The user ``user_id`` as they may act in one project now, with no token: what a
        schedule they made runs as. Raise PermissionDeniedError for a disabled or removed
        user."""
        with self.metadata.read() as conn:
            row = conn.execute(sa.select(users).where(users.c.id == user_id)).first()
            if row is None or row.disabled_at is not None:
                state = "removed" if row is None else f"disabled ({row.name})"
                raise PermissionDeniedError(f"The user {user_id} is {state}.")
            role = conn.execute(
                sa.select(role_bindings.c.role).where(
                    role_bindings.c.user_id == user_id, role_bindings.c.project_id == project_id
                )
            ).scalar()
        held = "admin" if row.is_admin else role
        return Principal(
            user_id=row.id,
            name=row.name,
            roles={project_id: str(held)} if held else {},
            token_project_id=project_id,
        )

    def lapsed(self, principal: Principal, project_id: str) -> str | None:
        """Why ``principal`` may no longer act in the project as it did (its token revoked
        or expired, its user disabled or removed, its role now lower than the one it holds,
        or below editor), or None."""
        if principal.token_id is not None:
            with self.metadata.read() as conn:
                row = conn.execute(
                    sa.select(tokens.c.revoked_at, tokens.c.expires_at).where(
                        tokens.c.id == principal.token_id
                    )
                ).first()
            if row is None or row.revoked_at is not None:
                return f"the token it was started with ({principal.token_id}) was revoked"
            if row.expires_at is not None and row.expires_at <= utcnow():
                return f"the token it was started with ({principal.token_id}) expired"
        try:
            now = self.principal_for(principal.user_id, project_id)
        except PermissionDeniedError as e:
            return e.message.rstrip(".")
        if not now.can(project_id, "editor"):
            return f"{principal.name!r} no longer holds the editor role in this project"
        held, current = principal.role_in(project_id), now.role_in(project_id)
        if held is not None and current is not None and role_rank(current) < role_rank(held):
            return f"{principal.name!r} is no longer {held} in this project but {current}"
        return None

    def bootstrap(self, name: str = "admin") -> str | None:
        """On a store with no users, create the admin ``name`` and return a token secret for
        them (print it once); on a store with users, do nothing and return None."""
        if self.count_users():
            return None
        try:
            self.add_user(name, admin=True)
        except AlreadyExistsError:  # another server process bootstrapped at the same time
            return None
        _, secret = self.create_token(name, "bootstrap")
        return secret


def roles_help() -> str:
    return ", ".join(ROLES)


def _hash_password(password: str) -> str:
    from argon2 import PasswordHasher

    return PasswordHasher().hash(password)


def _verify_password(stored: str | None, password: str) -> bool:
    from argon2 import PasswordHasher
    from argon2.exceptions import InvalidHashError, VerificationError

    hasher = PasswordHasher()
    if stored is None:
        # Spend the same time as a real check, so timing does not tell which names exist.
        hasher.hash(password)
        return False
    try:
        return hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False
