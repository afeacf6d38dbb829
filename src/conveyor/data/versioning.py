"""The records of datasets and their versions in the metadata store, and version references.

A reference names one version: ``customers@3``, ``customers@latest`` (or just ``customers``),
or ``customers@<digest prefix>`` (at least 6 hex characters of the content digest).
"""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa

from conveyor.core import ids
from conveyor.core.errors import InvalidArgumentError, NotFoundError
from conveyor.data.records import Dataset, DatasetVersion
from conveyor.store.metadata.schema import artifact_links, dataset_versions, datasets
from conveyor.store.metadata.sql import ensure_named, next_version
from conveyor.store.metadata.store import UnitOfWork
from conveyor.store.records import ObjectRef

__all__ = [
    "VERSION_KIND",
    "create_version",
    "find_version",
    "list_datasets",
    "list_versions",
    "parse_ref",
    "refs_by_id",
    "validate_dataset_name",
]

VERSION_KIND = "dataset_version"
DATASET_KIND = "dataset"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")
_HEX = re.compile(r"^[0-9a-f]{6,64}$")
_HEX_ANY_CASE = re.compile(r"^[0-9a-fA-F]{6,64}$")
#: The largest version number the metadata store's column holds (a 32-bit integer).
_MAX_VERSION = 2_147_483_647


def validate_dataset_name(name: str) -> str:
    """Return ``name`` if it can name a dataset, else raise InvalidArgumentError.

    >>> validate_dataset_name("customers/eu")
    'customers/eu'
    """
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name or "//" in name:
        raise InvalidArgumentError(
            f"{name!r} is not a valid dataset name: use 1 to 200 ASCII letters, digits, '.', "
            "'_', '-' or '/', starting with a letter or digit.",
            hint="For example 'customers' or 'churn/train'.",
        )
    return name


def parse_ref(ref: str) -> tuple[str, str]:
    """Split ``name@selector`` into the name and the selector (``latest`` when omitted).

    >>> parse_ref("customers@3"), parse_ref("customers")
    (('customers', '3'), ('customers', 'latest'))
    """
    if not isinstance(ref, str):
        raise InvalidArgumentError(
            f"A dataset version is named like 'customers@3'; got {type(ref).__name__}."
        )
    name, sep, selector = ref.partition("@")
    validate_dataset_name(name)
    selector = selector.strip() if sep else "latest"
    if _HEX_ANY_CASE.match(selector):
        selector = selector.lower()  # digests are written in lower case
    if not selector:
        raise InvalidArgumentError(
            f"{ref!r} names no version after '@': use a number, 'latest' or a digest prefix."
        )
    return name, selector


def _version_columns() -> list[Any]:
    has_schema = (
        sa.select(artifact_links.c.id)
        .where(
            artifact_links.c.owner_kind == VERSION_KIND,
            artifact_links.c.owner_id == dataset_versions.c.id,
            artifact_links.c.name == "schema.yaml",
        )
        .exists()
    )
    return [dataset_versions, datasets.c.name.label("dataset_name"), has_schema.label("has_schema")]


def _to_version(row: Any) -> DatasetVersion:
    return DatasetVersion(
        id=row.id,
        name=row.dataset_name,
        version=row.version,
        digest=row.digest,
        kind=row.kind,
        files=row.files,
        size=row.size,
        rows=row.rows,
        columns=_in_order(row.columns, row.profile),
        profile=_profile_in_order(row.profile),
        table_format=row.table_format,
        has_schema=bool(row.has_schema),
        description=row.description,
        source=row.source,
        created_at=row.created_at,
        created_by=row.created_by,
    )


def _in_order(by_name: dict[str, Any] | None, profile: Any) -> dict[str, Any] | None:
    """``by_name`` with its keys in the table's column order, as the profile records it
    (a JSON object read back from PostgreSQL has its keys in JSONB's own order). Versions
    profiled before the order was recorded keep the order the store gives."""
    order = profile.get("order") if isinstance(profile, dict) else None
    if not by_name or not isinstance(order, list) or set(order) != set(by_name):
        return by_name
    return {name: by_name[name] for name in order}


def _profile_in_order(profile: dict[str, Any] | None) -> dict[str, Any] | None:
    if not isinstance(profile, dict) or not isinstance(profile.get("columns"), dict):
        return profile
    return {**profile, "columns": _in_order(profile["columns"], profile)}


def _dataset_row(conn: sa.Connection, project_id: str, name: str) -> Any:
    return conn.execute(
        sa.select(datasets).where(datasets.c.project_id == project_id, datasets.c.name == name)
    ).first()


def find_version(conn: sa.Connection, project_id: str, ref: str) -> DatasetVersion:
    """Return the version ``ref`` names; the error lists the latest versions when it is absent."""
    name, selector = parse_ref(ref)
    ds = _dataset_row(conn, project_id, name)
    if ds is None:
        known = [d.name for d in list_datasets(conn, project_id)]
        shown = ", ".join(known[:10]) + (f" and {len(known) - 10} more" if len(known) > 10 else "")
        raise NotFoundError(
            f"There is no dataset named {name!r}"
            + (f"; datasets: {shown}." if known else " (this project has none yet)."),
            hint="Add one with `conveyor data add NAME PATH` (cv.data.add from Python); list "
            "them with `conveyor data list`.",
        )
    query = (
        sa.select(*_version_columns())
        .join(datasets, datasets.c.id == dataset_versions.c.dataset_id)
        .where(dataset_versions.c.dataset_id == ds.id)
    )
    by_digest = query.where(
        dataset_versions.c.digest.startswith(selector, autoescape=True)
    ).order_by(dataset_versions.c.version.desc())
    if selector == "latest":
        rows = conn.execute(query.order_by(dataset_versions.c.version.desc()).limit(1)).all()
    elif selector.isascii() and selector.isdigit():  # not '²', which int() refuses
        number = int(selector)
        # A number past the column's range is no version: PostgreSQL and SQLite would
        # refuse the query itself.
        in_range = 1 <= number <= _MAX_VERSION
        rows = conn.execute(
            query.where(dataset_versions.c.version == (number if in_range else 0))
        ).all()
        if not rows and _HEX.match(selector):  # digits only: a digest can start so too
            rows = conn.execute(by_digest).all()
    elif _HEX.match(selector):
        rows = conn.execute(by_digest).all()
    else:
        raise InvalidArgumentError(
            f"{ref!r}: after '@' put a version number, 'latest' or at least 6 hex characters "
            f"of a digest; got {selector!r}."
        )
    if not rows:
        latest = [f"{name}@{v.version}" for v in list_versions(conn, project_id, name)[:5]]
        raise NotFoundError(
            f"Dataset {name!r} has no version {selector!r}; latest versions: "
            f"{', '.join(latest) or 'none'}.",
        )
    distinct = {r.digest for r in rows}
    if len(distinct) > 1:
        raise InvalidArgumentError(
            f"The digest prefix {selector!r} matches {len(distinct)} versions of {name!r}; "
            "give more characters."
        )
    return _to_version(rows[0])


def version_by_id(conn: sa.Connection, project_id: str, version_id: str) -> DatasetVersion | None:
    """Return the version with id ``version_id`` if the project has it, else None."""
    row = conn.execute(
        sa.select(*_version_columns())
        .join(datasets, datasets.c.id == dataset_versions.c.dataset_id)
        .where(dataset_versions.c.id == version_id, datasets.c.project_id == project_id)
    ).first()
    return None if row is None else _to_version(row)


def refs_by_id(conn: sa.Connection, project_id: str, version_ids: list[str]) -> dict[str, str]:
    """Return ``name@N`` of each of ``version_ids`` the project has, by id (the ids it does
    not have are left out)."""
    if not version_ids:
        return {}
    rows = conn.execute(
        sa.select(dataset_versions.c.id, datasets.c.name, dataset_versions.c.version)
        .join(datasets, datasets.c.id == dataset_versions.c.dataset_id)
        .where(dataset_versions.c.id.in_(version_ids), datasets.c.project_id == project_id)
    )
    return {version_id: f"{name}@{number}" for version_id, name, number in rows}


def _numbered(conn: sa.Connection, dataset_id: str, number: int) -> DatasetVersion:
    row = conn.execute(
        sa.select(*_version_columns())
        .join(datasets, datasets.c.id == dataset_versions.c.dataset_id)
        .where(dataset_versions.c.dataset_id == dataset_id, dataset_versions.c.version == number)
    ).one()
    return _to_version(row)


def list_versions(conn: sa.Connection, project_id: str, name: str) -> list[DatasetVersion]:
    """Return the versions of dataset ``name``, newest first."""
    rows = conn.execute(
        sa.select(*_version_columns())
        .join(datasets, datasets.c.id == dataset_versions.c.dataset_id)
        .where(datasets.c.project_id == project_id, datasets.c.name == name)
        .order_by(dataset_versions.c.version.desc())
    ).all()
    return [_to_version(r) for r in rows]


def list_datasets(conn: sa.Connection, project_id: str) -> list[Dataset]:
    """Return the project's datasets, sorted by name."""
    rows = conn.execute(
        sa.select(datasets).where(datasets.c.project_id == project_id).order_by(datasets.c.name)
    ).all()
    return [Dataset(r.id, r.name, r.description, r.latest_version, r.created_at) for r in rows]


def create_version(
    uow: UnitOfWork,
    project_id: str,
    name: str,
    values: dict[str, Any],
    *,
    description: str,
) -> tuple[DatasetVersion, bool, str]:
    """Insert the next version of ``name`` (creating the dataset on first use).

    Returns the version, whether it is new, and the dataset's id. When the latest version
    already has this content (the same digest), nothing is inserted and that version comes
    back with ``False``: adding unchanged data is a no-op.
    """
    conn = uow.conn
    ds = ensure_named(uow, datasets, name, description, "dataset")
    number = next_version(conn, datasets, ds.id)
    if number > 1:
        latest = conn.execute(
            sa.select(dataset_versions.c.digest, dataset_versions.c.kind).where(
                dataset_versions.c.dataset_id == ds.id, dataset_versions.c.version == number - 1
            )
        ).one()
        if latest.digest == values["digest"] and latest.kind == values["kind"]:
            conn.execute(
                datasets.update().where(datasets.c.id == ds.id).values(latest_version=number - 1)
            )
            return _numbered(conn, ds.id, number - 1), False, ds.id
    version_id = ids.new_id()
    row = {
        "id": version_id,
        "dataset_id": ds.id,
        "version": number,
        "created_at": uow.now,
        "created_by": uow.actor,
        "description": description,
        **values,
    }
    conn.execute(dataset_versions.insert().values(**row))
    if description and not ds.description:
        conn.execute(
            datasets.update().where(datasets.c.id == ds.id).values(description=description)
        )
    if row.get("columns") is None and row.get("profile") is None:
        # A version of files: built from its row, as a read returns it (no schema yet),
        # without the query. A table's JSON columns come back as the database keeps them
        # (PostgreSQL's JSONB orders keys and rewrites numbers), so those are read back.
        as_read: dict[str, Any] = {c.name: None for c in dataset_versions.columns}
        as_read.update(row, dataset_name=ds.name, has_schema=False)
        version = _to_version(SimpleNamespace(**as_read))
    else:
        version = _numbered(conn, ds.id, number)
    uow.audit(
        "dataset_version.create",
        ObjectRef(VERSION_KIND, version_id),
        after={
            "ref": version.ref,
            "digest": version.digest,
            "files": version.files,
            "size": version.size,
            "rows": version.rows,
        },
    )
    return version, True, ds.id
