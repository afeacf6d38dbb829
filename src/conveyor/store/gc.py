"""Garbage collection: delete stored objects that no record references."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import sqlalchemy as sa

from conveyor.core.clock import utcnow
from conveyor.store.artifacts.cas import ArtifactStore
from conveyor.store.catalog import claim_content, referenced_digests
from conveyor.store.metadata.schema import artifact_links, artifacts
from conveyor.store.metadata.store import MetadataStore
from conveyor.store.records import ObjectRef

__all__ = ["DEFAULT_GRACE", "GcReport", "collect_garbage"]

#: Objects younger than this are kept even when unreferenced: a writer may have stored the
#: bytes and not yet committed the record that points to them.
DEFAULT_GRACE = timedelta(hours=1)


@dataclass(slots=True)
class GcReport:
    """What a garbage collection found and (unless it was a dry run) deleted."""

    dry_run: bool
    scanned: int = 0
    deleted: list[str] = field(default_factory=list)
    bytes_freed: int = 0
    kept_recent: int = 0
    missing: list[str] = field(default_factory=list)
    staging_files_removed: int = 0


def collect_garbage(
    metadata: MetadataStore,
    store: ArtifactStore,
    *,
    dry_run: bool = False,
    grace: timedelta = DEFAULT_GRACE,
) -> GcReport:
    """Delete objects that no artifact link references and that are older than ``grace``."""
    _check_owner(metadata, store, claim=not dry_run)
    report = GcReport(dry_run=dry_run)
    cutoff = utcnow() - grace
    with metadata.read() as conn:
        referenced = referenced_digests(conn)
    seen: set[str] = set()
    for digest, info in store.objects():
        report.scanned += 1
        seen.add(digest)
        if digest in referenced:
            continue
        if info.modified is not None and info.modified >= cutoff:
            report.kept_recent += 1
            continue
        report.deleted.append(digest)
        report.bytes_freed += info.size
        if not dry_run:
            # Claim the content's row (a lock until commit) and re-check: a writer may have
            # linked it since the scan. Writers claim the same row before they link.
            with metadata.transaction() as uow:
                claim_content(
                    uow.conn, None, digest, info.size, "application/octet-stream", uow.now
                )
                still_free = (
                    uow.conn.execute(
                        sa.select(artifact_links.c.id).where(artifact_links.c.digest == digest)
                    ).first()
                    is None
                )
                if still_free:
                    uow.conn.execute(artifacts.delete().where(artifacts.c.digest == digest))
                    store.delete(digest)
            if not still_free:
                report.deleted.pop()
                report.bytes_freed -= info.size
    report.missing = sorted(referenced - seen)
    if not dry_run:
        report.staging_files_removed = store.cleanup_staging(cutoff)
        with metadata.transaction() as uow:
            uow.conn.execute(
                artifacts.delete().where(
                    artifacts.c.digest.not_in(sa.select(artifact_links.c.digest)),
                    artifacts.c.created_at < cutoff,
                )
            )
            if report.deleted:
                uow.audit(
                    "artifacts.gc",
                    ObjectRef("artifact_store", store.uri[:200]),
                    after={"objects": len(report.deleted), "bytes": report.bytes_freed},
                )
    return report


#: Where gc records which metadata store collects an artifact store (a key listings skip).
OWNER_KEY = ".gc/owner"


def _check_owner(metadata: MetadataStore, store: ArtifactStore, *, claim: bool) -> None:
    """Refuse to collect an artifact store that another metadata store collects: objects
    that only the other one references would look unreferenced here, and be deleted.

    The first collection records this metadata store in the artifact store by the id of one
    of its projects (ids are never shared between stores); a later one checks that its
    store holds a project of that id.
    """
    import json

    from conveyor.core.errors import ConflictError
    from conveyor.store.metadata.engine import describe_url
    from conveyor.store.metadata.schema import projects

    backend = store.backend
    if backend.exists(OWNER_KEY):
        with backend.open(OWNER_KEY) as f:
            try:
                recorded = json.loads(f.read())
            except ValueError:
                recorded = {}
        owner = (
            recorded.get("project_id", recorded.get("first_project_id"))
            if isinstance(recorded, dict)
            else None
        )
        with metadata.read() as conn:
            mine = (
                owner is not None
                and conn.execute(
                    sa.select(projects.c.id).where(projects.c.id == str(owner))
                ).first()
            )
        if not mine:
            raise ConflictError(
                f"The artifact store {store.uri} is collected by another metadata store "
                f"({recorded.get('metadata_store', 'unknown')}): gc here would delete the "
                "objects only that store references.",
                hint="Give each metadata store an artifact store of its own (artifact_uri), "
                f"or, if that store is gone for good, delete {OWNER_KEY} in the artifact store.",
            )
    elif claim:
        with metadata.read() as conn:
            first = conn.execute(sa.select(sa.func.min(projects.c.id))).scalar()
        mark = {"project_id": first, "metadata_store": describe_url(metadata.uri)}
        backend.put_bytes(OWNER_KEY, json.dumps(mark).encode())
