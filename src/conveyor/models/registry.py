"""The registry's records in the metadata store, and model references.

A reference names one version: ``churn/3`` (a number), ``churn@champion`` (an alias),
``churn@latest`` or just ``churn`` (the newest version).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from conveyor.core import ids
from conveyor.core.errors import InvalidArgumentError, NotFoundError
from conveyor.models.records import AliasMove, ModelVersion, PromotionRequest, RegisteredModel
from conveyor.models.signature import Signature
from conveyor.store.metadata.schema import (
    model_alias_history,
    model_aliases,
    model_versions,
    models,
    promotion_requests,
)
from conveyor.store.metadata.sql import ensure_named, next_version
from conveyor.store.metadata.store import UnitOfWork
from conveyor.store.records import ObjectRef

__all__ = [
    "MODEL_KIND",
    "REQUEST_KIND",
    "VERSION_KIND",
    "alias_history",
    "create_version",
    "find_model",
    "find_version",
    "list_models",
    "list_versions",
    "move_alias",
    "parse_ref",
    "validate_alias",
    "validate_model_name",
]

MODEL_KIND = "model"
VERSION_KIND = "model_version"
REQUEST_KIND = "promotion_request"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,99}$")


def validate_model_name(name: str) -> str:
    """Return ``name`` if it can name a model, else raise InvalidArgumentError.

    >>> validate_model_name("churn-rf")
    'churn-rf'
    """
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise InvalidArgumentError(
            f"{name!r} is not a valid model name: use 1 to 200 ASCII letters, digits, '.', '_' "
            "or '-', starting with a letter or digit.",
            hint="For example 'churn' or 'churn-rf'.",
        )
    return name


def validate_alias(alias: str) -> str:
    """Return ``alias`` if it can name an alias (lower case, not a number, not 'latest')."""
    if not isinstance(alias, str) or not _ALIAS.match(alias) or alias == "latest":
        raise InvalidArgumentError(
            f"{alias!r} is not a valid alias: use 1 to 100 lower-case letters, digits, '_' or "
            "'-', starting with a letter; 'latest' is reserved.",
            hint="For example 'champion', 'challenger' or 'production'.",
        )
    return alias


def parse_ref(ref: str) -> tuple[str, str, str | int | None]:
    """Split a reference into the name, how it selects (version/alias/latest) and what.

    >>> parse_ref("churn/3"), parse_ref("churn@champion"), parse_ref("churn")
    (('churn', 'version', 3), ('churn', 'alias', 'champion'), ('churn', 'latest', None))
    """
    if not isinstance(ref, str):
        raise InvalidArgumentError(
            f"A model version is named like 'churn/3' or 'churn@champion'; "
            f"got {type(ref).__name__}."
        )
    if "@" in ref:
        name, _, alias = ref.partition("@")
        validate_model_name(name)
        if alias == "latest":
            return name, "latest", None
        if not alias:
            raise InvalidArgumentError(f"{ref!r} names no alias after '@'.")
        return name, "alias", validate_alias(alias)
    if "/" in ref:
        name, _, number = ref.partition("/")
        validate_model_name(name)
        if not number.isdigit() or not 1 <= int(number) <= 2_147_483_647:
            raise InvalidArgumentError(
                f"{ref!r}: after '/' put a version number (1, 2, ...); got {number!r}.",
                hint="Use name@alias for an alias, e.g. 'churn@champion'.",
            )
        return name, "version", int(number)
    return validate_model_name(ref), "latest", None


def _model_row(conn: sa.Connection, project_id: str, name: str) -> Any:
    return conn.execute(
        sa.select(models).where(models.c.project_id == project_id, models.c.name == name)
    ).first()


def find_model(conn: sa.Connection, project_id: str, name: str) -> Any:
    """Return the row of model ``name``; the error lists the project's models."""
    row = _model_row(conn, project_id, validate_model_name(name))
    if row is None:
        known = [m.name for m in list_models(conn, project_id)]
        close = _close(name, known)
        raise NotFoundError(
            f"There is no model named {name!r}"
            + (f"; did you mean {', '.join(close)}?" if close else ".")
            + (
                f" Models: {', '.join(known[:10])}"
                + (f" and {len(known) - 10} more." if len(known) > 10 else ".")
                if known
                else " This project has none."
            ),
            hint="Register one with cv.models.log(model, name=...).",
        )
    return row


def _close(name: str, known: list[str]) -> list[str]:
    import difflib

    return difflib.get_close_matches(name, known, n=3, cutoff=0.6)


def _aliases_of(conn: sa.Connection, version_ids: list[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    if not version_ids:
        return found
    rows = conn.execute(
        sa.select(model_aliases.c.version_id, model_aliases.c.alias)
        .where(model_aliases.c.version_id.in_(version_ids))
        .order_by(model_aliases.c.alias)
    )
    for version_id, alias in rows:
        found.setdefault(version_id, []).append(alias)
    return found


def _to_versions(conn: sa.Connection, name: str, rows: list[Any]) -> list[ModelVersion]:
    aliases = _aliases_of(conn, [r.id for r in rows])
    return [
        ModelVersion(
            id=r.id,
            name=name,
            version=r.version,
            digest=r.digest,
            flavor=r.flavor,
            signature=Signature.from_dict(r.signature) if r.signature else None,
            requirements=dict(r.requirements or {}),
            info=dict(r.info or {}),
            run_id=r.run_id,
            status=r.status,
            description=r.description,
            created_at=r.created_at,
            created_by=r.created_by,
            aliases=tuple(aliases.get(r.id, ())),
        )
        for r in rows
    ]


def version_by_id(conn: sa.Connection, version_id: str) -> ModelVersion:
    """Return the version with this id."""
    row = conn.execute(
        sa.select(model_versions, models.c.name.label("model_name"))
        .join(models, models.c.id == model_versions.c.model_id)
        .where(model_versions.c.id == version_id)
    ).first()
    if row is None:
        raise NotFoundError(f"There is no model version with id {version_id!r}.")
    return _to_versions(conn, row.model_name, [row])[0]


def find_version(
    conn: sa.Connection, project_id: str, ref: str, *, at: datetime | None = None
) -> ModelVersion:
    """Return the version ``ref`` names; with ``at``, an alias resolves as it stood then, and
    a bare name to the newest version registered by then."""
    name, how, what = parse_ref(ref)
    model = find_model(conn, project_id, name)
    query = sa.select(model_versions).where(model_versions.c.model_id == model.id)
    if how == "version":
        query = query.where(model_versions.c.version == what)
    elif how == "latest":
        if at is not None:
            query = query.where(model_versions.c.created_at <= at)
        query = query.order_by(model_versions.c.version.desc()).limit(1)
    elif at is None:
        query = query.join(model_aliases, model_aliases.c.version_id == model_versions.c.id).where(
            model_aliases.c.model_id == model.id, model_aliases.c.alias == what
        )
    else:
        moved = conn.execute(
            sa.select(model_alias_history.c.version_id)
            .where(
                model_alias_history.c.model_id == model.id,
                model_alias_history.c.alias == what,
                model_alias_history.c.at <= at,
            )
            .order_by(model_alias_history.c.at.desc(), model_alias_history.c.id.desc())
            .limit(1)
        ).first()
        if moved is None or moved.version_id is None:
            raise NotFoundError(f"The alias {name}@{what} pointed at no version at {at}.")
        query = query.where(model_versions.c.id == moved.version_id)
    row = conn.execute(query).first()
    if row is None and how == "latest" and at is not None:
        raise NotFoundError(f"Model {name!r} had no version yet at {at}.")
    if row is None:
        if how == "alias":
            held = _aliases_held(conn, model.id)
            raise NotFoundError(
                f"Model {name!r} has no alias {what!r}; aliases: "
                f"{', '.join(f'{a} -> {v}' for a, v in held.items()) or 'none'}.",
                hint=f"Set one with cv.models.set_alias({name!r}, {what!r}, version=N).",
            )
        latest = model.latest_version
        raise NotFoundError(
            f"Model {name!r} has no version {what}; "
            + (f"its versions are 1 to {latest}." if latest else "it has no versions yet."),
        )
    return _to_versions(conn, name, [row])[0]


def _aliases_held(conn: sa.Connection, model_id: str) -> dict[str, int]:
    rows = conn.execute(
        sa.select(model_aliases.c.alias, model_versions.c.version)
        .join(model_versions, model_versions.c.id == model_aliases.c.version_id)
        .where(model_aliases.c.model_id == model_id)
        .order_by(model_aliases.c.alias)
    )
    return {alias: version for alias, version in rows}


def list_versions(conn: sa.Connection, project_id: str, name: str) -> list[ModelVersion]:
    """Return the versions of model ``name``, newest first."""
    model = find_model(conn, project_id, name)
    rows = conn.execute(
        sa.select(model_versions)
        .where(model_versions.c.model_id == model.id)
        .order_by(model_versions.c.version.desc())
    ).all()
    return _to_versions(conn, name, list(rows))


def list_models(conn: sa.Connection, project_id: str) -> list[RegisteredModel]:
    """Return the project's models, sorted by name, with their aliases."""
    rows = conn.execute(
        sa.select(models).where(models.c.project_id == project_id).order_by(models.c.name)
    ).all()
    return [to_model(conn, r) for r in rows]


def to_model(conn: sa.Connection, row: Any) -> RegisteredModel:
    return RegisteredModel(
        id=row.id,
        name=row.name,
        description=row.description,
        latest_version=row.latest_version,
        created_at=row.created_at,
        aliases=_aliases_held(conn, row.id),
        protected_aliases=tuple(row.protected_aliases or ()),
    )


def create_version(
    uow: UnitOfWork, project_id: str, name: str, values: dict[str, Any], *, description: str
) -> ModelVersion:
    """Insert the next version of model ``name`` (creating the model on first use)."""
    conn = uow.conn
    model = ensure_named(uow, models, name, description, MODEL_KIND)
    number = next_version(conn, models, model.id)
    version_id = ids.new_id()
    conn.execute(
        model_versions.insert().values(
            id=version_id,
            model_id=model.id,
            version=number,
            created_at=uow.now,
            created_by=uow.actor,
            description=description,
            status="ready",
            **values,
        )
    )
    version = version_by_id(conn, version_id)
    uow.audit(
        "model_version.create",
        ObjectRef(VERSION_KIND, version_id),
        after={"ref": version.ref, "digest": version.digest, "flavor": version.flavor},
    )
    return version


def move_alias(
    uow: UnitOfWork,
    model_id: str,
    alias: str,
    version_id: str | None,
    *,
    request_id: str | None = None,
) -> str | None:
    """Point ``alias`` at ``version_id`` (None removes it); return the previous version id.

    The move and its history row commit together, so the history has every move.
    """
    conn = uow.conn
    previous = conn.execute(
        sa.select(model_aliases.c.version_id).where(
            model_aliases.c.model_id == model_id, model_aliases.c.alias == alias
        )
    ).scalar_one_or_none()
    if previous == version_id:
        return previous
    if previous is not None:
        conn.execute(
            model_aliases.delete().where(
                model_aliases.c.model_id == model_id, model_aliases.c.alias == alias
            )
        )
    if version_id is not None:
        conn.execute(
            model_aliases.insert().values(
                model_id=model_id,
                alias=alias,
                version_id=version_id,
                set_at=uow.now,
                set_by=uow.actor,
            )
        )
    conn.execute(
        model_alias_history.insert().values(
            id=ids.new_id(),
            model_id=model_id,
            alias=alias,
            version_id=version_id,
            previous_version_id=previous,
            at=uow.now,
            actor=uow.actor,
            request_id=request_id,
        )
    )
    uow.audit(
        "model.alias_move" if version_id else "model.alias_delete",
        ObjectRef(MODEL_KIND, model_id),
        before={"alias": alias, "version_id": previous},
        after={"alias": alias, "version_id": version_id, "request_id": request_id},
    )
    return previous


def alias_history(
    conn: sa.Connection, project_id: str, name: str, alias: str | None = None
) -> list[AliasMove]:
    """Return every move of ``alias`` (or of every alias) of model ``name``, oldest first."""
    model = find_model(conn, project_id, name)
    numbers = dict(
        conn.execute(
            sa.select(model_versions.c.id, model_versions.c.version).where(
                model_versions.c.model_id == model.id
            )
        ).all()
    )
    query = (
        sa.select(model_alias_history)
        .where(model_alias_history.c.model_id == model.id)
        .order_by(model_alias_history.c.at, model_alias_history.c.id)
    )
    if alias is not None:
        query = query.where(model_alias_history.c.alias == validate_alias(alias))
    return [
        AliasMove(
            model=name,
            alias=r.alias,
            version=numbers.get(r.version_id),
            previous=numbers.get(r.previous_version_id),
            at=r.at,
            actor=r.actor,
            request_id=r.request_id,
        )
        for r in conn.execute(query)
    ]


def to_request(conn: sa.Connection, row: Any) -> PromotionRequest:
    version = version_by_id(conn, row.version_id)
    return PromotionRequest(
        id=row.id,
        model=version.name,
        version=version.version,
        alias=row.alias,
        status=row.status,
        checks=list(row.checks or []),
        requested_by=row.requested_by,
        requested_at=row.requested_at,
        comment=row.comment,
        decided_by=row.decided_by,
        decided_at=row.decided_at,
        decision_comment=row.decision_comment,
        deferred=bool(row.deferred),
    )


def find_request(conn: sa.Connection, project_id: str, request_id: str) -> Any:
    row = conn.execute(
        sa.select(promotion_requests)
        .join(models, models.c.id == promotion_requests.c.model_id)
        .where(promotion_requests.c.id == request_id, models.c.project_id == project_id)
    ).first()
    if row is None:
        raise NotFoundError(
            f"There is no promotion request {request_id!r} in this project.",
            hint="List them with `conveyor models requests NAME`.",
        )
    return row
