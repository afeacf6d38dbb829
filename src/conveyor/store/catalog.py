"""Artifact records: which owner gave which name to which stored content.

The rule every domain package follows: stored bytes stay alive only while an
``artifact_links`` row points at their digest. A table that keeps a digest of its own (a
dataset manifest, a model version) must also link it here, or ``gc`` will collect it.

Linking and garbage collection meet on the ``artifacts`` row of a digest: both upsert it
first, which locks it until their transaction ends (SQLite serializes all writers anyway).
So gc either deletes content before a link claims it (the linker then finds it missing and
stores it again) or sees the link and keeps it. The one exception is :func:`hold_many`: a
digest its holder already links is not claimed again, since that committed link keeps it.
"""

from __future__ import annotations

import functools
import mimetypes
import os
from datetime import datetime

import sqlalchemy as sa

from conveyor.core import ids
from conveyor.core.errors import ConflictError, NotFoundError
from conveyor.core.names import validate_artifact_path
from conveyor.store.artifacts.cas import ArtifactStore, PutResult
from conveyor.store.metadata.schema import artifact_links, artifacts
from conveyor.store.metadata.sql import Prepared, dialect_insert
from conveyor.store.metadata.store import UnitOfWork
from conveyor.store.records import ArtifactLink, ObjectRef

__all__ = [
    "ContentMissingError",
    "check_stored",
    "claim_content",
    "find_artifact",
    "guess_media_type",
    "hold_many",
    "link_artifact",
    "link_many",
    "list_artifacts",
    "referenced_digests",
]


class ContentMissingError(NotFoundError):
    """The content a record is about to point at is not in the artifact store (anymore)."""


def claim_content(
    conn: sa.Connection,
    store: ArtifactStore | None,
    digest: str,
    size: int,
    media_type: str,
    now: datetime,
) -> None:
    """Upsert the ``artifacts`` row of ``digest`` (locking it) and check the bytes are stored."""
    insert = dialect_insert(conn.dialect.name)
    stmt = insert(artifacts).values(digest=digest, size=size, media_type=media_type, created_at=now)
    conn.execute(
        stmt.on_conflict_do_update(index_elements=["digest"], set_={"size": stmt.excluded.size})
    )
    if store is not None and not store.exists(digest):
        raise ContentMissingError(
            f"Artifact {digest} is not in the artifact store {store.uri}; it may have been "
            "garbage-collected while it was being recorded.",
            hint="Store the content again and retry.",
        )


def guess_media_type(name: str) -> str:
    """Return the media type suggested by ``name``'s extension (octet-stream if unknown)."""
    return _media_type_of(os.path.splitext(name)[1].lower())


# The types of common data files, known without loading the system's tables (which costs a
# process several milliseconds the first time); the same answers mimetypes gives.
_COMMON_TYPES = {
    ".parquet": "application/vnd.apache.parquet",
    ".csv": "text/csv",
    ".txt": "text/plain",
    ".json": "application/json",
    ".html": "text/html",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".bin": "application/octet-stream",
}


@functools.lru_cache(maxsize=256)
def _media_type_of(extension: str) -> str:
    known = _COMMON_TYPES.get(extension)
    if known is not None:
        return known
    return mimetypes.guess_type("x" + extension)[0] or "application/octet-stream"


def link_artifact(
    uow: UnitOfWork,
    store: ArtifactStore | None,
    put: PutResult,
    owner: ObjectRef,
    name: str,
    *,
    media_type: str | None = None,
    replace: bool = False,
) -> ArtifactLink:
    """Record that ``owner`` calls the stored content ``name``, with an audit event.

    Giving an existing name other content is a Conflict unless ``replace`` is set.
    """
    name = validate_artifact_path(name)
    media_type = media_type or guess_media_type(name)
    claim_content(uow.conn, store, put.digest, put.size, media_type, uow.now)
    where = (
        (artifact_links.c.owner_kind == owner.kind)
        & (artifact_links.c.owner_id == owner.id)
        & (artifact_links.c.name == name)
    )
    existing = uow.conn.execute(sa.select(artifact_links.c.digest).where(where)).scalar()
    before = None
    if existing is not None:
        if existing == put.digest:
            return find_artifact(uow.conn, owner, name)
        if not replace:
            raise ConflictError(
                f"{owner} already has an artifact named {name!r} with other content "
                f"(stored {existing[:12]}, new {put.digest[:12]}).",
                hint="Store the new content under another name (what a name was given stays "
                "its content), or pass replace=True to point the name at the new content.",
            )
        before = {"digest": existing}
        uow.conn.execute(
            artifact_links.update().where(where).values(digest=put.digest, created_at=uow.now)
        )
    else:
        uow.conn.execute(
            artifact_links.insert().values(
                id=ids.new_id(),
                digest=put.digest,
                owner_kind=owner.kind,
                owner_id=owner.id,
                name=name,
                created_at=uow.now,
            )
        )
    uow.audit(
        "artifact.link",
        owner,
        before=before,
        after={"name": name, "digest": put.digest, "size": put.size},
    )
    return find_artifact(uow.conn, owner, name)


def link_many(
    uow: UnitOfWork,
    store: ArtifactStore | None,
    owner: ObjectRef,
    entries: list[tuple[str, str, int, str]],
    *,
    check: set[str] | None = None,
) -> int:
    """Link many ``(name, digest, size, media_type)`` entries to a new ``owner`` at once.

    For owners created in the same transaction (a dataset version and its files): one upsert
    claims every digest, one insert links them, one audit event records the count. ``check``
    names the digests whose bytes must be confirmed present (those this writer did not just
    store); a missing one raises :class:`ContentMissingError`. Returns how many were linked.
    """
    if not entries:
        return 0
    conn = uow.conn
    # A version can link tens of thousands of files: the rows go through the driver in one
    # call each, with the shared timestamp converted once (see Prepared).
    now = Prepared.bind_value(conn, artifacts.c.created_at, uow.now)
    claims: dict[str, dict[str, object]] = {}
    for _, digest, size, media_type in entries:
        claims.setdefault(
            digest, {"digest": digest, "size": size, "media_type": media_type, "created_at": now}
        )
    # Sorted, so two writers lock the rows in the same order (no deadlock on PostgreSQL).
    _claim_statement(conn.dialect.name).executemany(conn, [claims[d] for d in sorted(claims)])
    if store is not None and check:
        check_stored(store, check)
    link_ids = ids.new_ids(len(entries))
    _INSERT_LINKS.executemany(
        conn,
        [
            {
                "id": link_id,
                "digest": digest,
                "owner_kind": owner.kind,
                "owner_id": owner.id,
                "name": validate_artifact_path(name),
                "created_at": now,
            }
            for link_id, (name, digest, _, _) in zip(link_ids, entries, strict=True)
        ],
    )
    uow.audit("artifact.link_many", owner, after={"count": len(entries)})
    return len(entries)


#: The link names under which a holder keeps objects: ``objects/<digest>``.
HELD = "objects/"


def hold_many(
    uow: UnitOfWork,
    store: ArtifactStore | None,
    holder: ObjectRef,
    objects: dict[str, tuple[int, str]],
    *,
    check: set[str] | None = None,
) -> int:
    """Make ``holder`` keep ``objects`` (``{digest: (size, name)}``, the name giving the
    media type of a digest new to the store's records) from collection.

    For an owner that keeps the content of all its versions (a dataset): one link named
    ``objects/<digest>`` per digest, added only for the digests it does not hold yet. A
    version that shares most of its files with earlier ones then costs a row per new
    digest, not one per file. A digest already held needs no claim: the holder's link to
    it was committed before this statement, and gc keeps whatever a link points at. That
    rests on holder links never being deleted or pointed elsewhere while the holder
    exists (nothing does either today; a feature that deletes datasets must take the
    holder's row lock, as adding a version does). The digests in
    ``check`` (content this writer did not just store) must be confirmed present, as in
    :func:`link_many`; for those already held this only catches objects lost by other
    means, which the caller can then store again. Returns how many were newly held.
    """
    conn = uow.conn
    fresh = set(objects) - _held(conn, holder, list(objects))
    if not fresh:
        if store is not None and check:
            check_stored(store, check)
        return 0
    new = sorted(fresh)  # sorted: two writers lock the rows in the same order
    now = Prepared.bind_value(conn, artifacts.c.created_at, uow.now)
    _claim_statement(conn.dialect.name).executemany(
        conn,
        [
            {
                "digest": d,
                "size": objects[d][0],
                "media_type": guess_media_type(objects[d][1]),
                "created_at": now,
            }
            for d in new
        ],
    )
    if store is not None and check:
        check_stored(store, check)
    rows = [
        {
            "id": link_id,
            "digest": digest,
            "owner_kind": holder.kind,
            "owner_id": holder.id,
            "name": HELD + digest,
            "created_at": now,
        }
        for link_id, digest in zip(ids.new_ids(len(new)), new, strict=True)
    ]
    # Two writers adding versions of one dataset at once may both find a digest new.
    _hold_statement(conn.dialect.name).executemany(conn, rows)
    uow.audit("artifact.hold_many", holder, after={"count": len(new)})
    return len(new)


def _held(conn: sa.Connection, holder: ObjectRef, wanted: list[str]) -> set[str]:
    """Which of ``wanted`` ``holder`` links already.

    Reading all the holder's links (one range of its unique index, straight from the
    driver) costs a fraction of looking ``wanted`` up by digest, a probe of another index
    each. A holder keeps every digest of its history, though, so that read stops after a
    few times as many links as are asked about; a holder with more has ``wanted`` looked
    up by digest instead.
    """
    if not wanted:
        return set()
    cap = 4 * len(wanted) + 1000
    every = _HOLDINGS.column(
        conn, {"kind": holder.kind, "owner": holder.id, "cap": cap + 1, "skip": 0}
    )
    if len(every) <= cap:
        return set(every).intersection(wanted)
    mine = (artifact_links.c.owner_kind == holder.kind) & (artifact_links.c.owner_id == holder.id)
    held: set[str] = set()
    for start in range(0, len(wanted), _BATCH):
        batch = wanted[start : start + _BATCH]
        held.update(
            conn.execute(
                sa.select(artifact_links.c.digest).where(mine, artifact_links.c.digest.in_(batch))
            ).scalars()
        )
    return held


#: Up to ``cap`` digests a holder links (its links' names are ``objects/<digest>``).
_HOLDINGS = Prepared(
    sa.select(artifact_links.c.digest)
    .where(
        artifact_links.c.owner_kind == sa.bindparam("kind"),
        artifact_links.c.owner_id == sa.bindparam("owner"),
    )
    .limit(sa.bindparam("cap"))
    .offset(sa.bindparam("skip"))  # SQLite's LIMIT comes with an OFFSET: bound, not a default
)


def check_stored(store: ArtifactStore, digests: set[str]) -> None:
    """Raise :class:`ContentMissingError` unless every one of ``digests`` is in ``store``."""
    missing = sorted(digests - store.exists_many(digests))
    if missing:
        raise ContentMissingError(
            f"{len(missing)} object(s) are not in the artifact store {store.uri} "
            f"(first: {missing[0]}); they may have been garbage-collected meanwhile.",
            hint="Store the content again and retry.",
        )


_INSERT_LINKS = Prepared(artifact_links.insert())
_CLAIMS: dict[str, Prepared] = {}


def _claim_statement(dialect: str) -> Prepared:
    """The insert that claims digests on ``dialect``.

    On PostgreSQL a claimed row already there is updated, to take its row lock: gc, which
    deletes unclaimed rows, then waits for this transaction. SQLite runs one writer at a
    time, so existing rows are left alone there (rewriting them cost most of the commit of
    a version that shares thousands of files with the one before).
    """
    found = _CLAIMS.get(dialect)
    if found is None:
        stmt = dialect_insert(dialect)(artifacts)
        if dialect == "sqlite":
            stmt = stmt.on_conflict_do_nothing(index_elements=["digest"])
        else:
            stmt = stmt.on_conflict_do_update(
                index_elements=["digest"], set_={"size": stmt.excluded.size}
            )
        found = _CLAIMS[dialect] = Prepared(stmt)
    return found


#: Digests asked about per query (SQLite allowed 999 parameters before 3.32).
_BATCH = 900
_HOLDS: dict[str, Prepared] = {}


def _hold_statement(dialect: str) -> Prepared:
    """The insert of holder links on ``dialect``, skipping a link another writer just made."""
    found = _HOLDS.get(dialect)
    if found is None:
        stmt = dialect_insert(dialect)(artifact_links).on_conflict_do_nothing(
            index_elements=["owner_kind", "owner_id", "name"]
        )
        found = _HOLDS[dialect] = Prepared(stmt)
    return found


def _select_links() -> sa.Select[tuple[str, str, str, str, int, str, object]]:
    return sa.select(
        artifact_links.c.owner_kind,
        artifact_links.c.owner_id,
        artifact_links.c.name,
        artifact_links.c.digest,
        artifacts.c.size,
        artifacts.c.media_type,
        artifact_links.c.created_at,
    ).join(artifacts, artifacts.c.digest == artifact_links.c.digest)


def _to_link(row: sa.Row[tuple[str, str, str, str, int, str, object]]) -> ArtifactLink:
    return ArtifactLink(
        owner=ObjectRef(row.owner_kind, row.owner_id),
        name=row.name,
        digest=row.digest,
        size=row.size,
        media_type=row.media_type,
        created_at=row.created_at,
    )


def list_artifacts(conn: sa.Connection, owner: ObjectRef) -> list[ArtifactLink]:
    """Return the artifacts ``owner`` has, sorted by name."""
    rows = conn.execute(
        _select_links()
        .where(artifact_links.c.owner_kind == owner.kind, artifact_links.c.owner_id == owner.id)
        .order_by(artifact_links.c.name)
    ).all()
    return [_to_link(r) for r in rows]


def find_artifact(conn: sa.Connection, owner: ObjectRef, name: str) -> ArtifactLink:
    """Return ``owner``'s artifact called ``name``; raise NotFoundError if it has none."""
    name = validate_artifact_path(name)
    row = conn.execute(
        _select_links().where(
            artifact_links.c.owner_kind == owner.kind,
            artifact_links.c.owner_id == owner.id,
            artifact_links.c.name == name,
        )
    ).first()
    if row is None:
        raise NotFoundError(f"{owner} has no artifact named {name!r}.")
    return _to_link(row)


def referenced_digests(conn: sa.Connection) -> set[str]:
    """Return every digest some record links to."""
    return set(conn.execute(sa.select(artifact_links.c.digest).distinct()).scalars())
