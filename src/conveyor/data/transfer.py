"""Copying the objects versions need between artifact stores (``data push`` / ``data pull``).

Only objects missing at the destination are copied, several at a time; each lands whole or
not at all (the stores write to a temporary name and rename), so an interrupted transfer
resumes where it stopped when run again.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from conveyor.core.errors import NotFoundError
from conveyor.store.artifacts.cas import ArtifactStore

__all__ = ["TransferResult", "copy_objects"]


@dataclass(frozen=True, slots=True)
class TransferResult:
    """What a push or pull did."""

    source: str
    destination: str
    copied: int
    copied_bytes: int
    present: int


def copy_objects(
    objects: dict[str, int],
    source: ArtifactStore,
    destination: ArtifactStore,
    *,
    workers: int = 8,
    progress: object | None = None,
) -> TransferResult:
    """Copy each of ``objects`` (``{digest: size}``) that ``destination`` lacks, verified."""
    present = destination.exists_many(set(objects))
    todo = sorted((d for d in objects if d not in present), key=lambda d: -objects[d])
    start = getattr(progress, "start", None)
    advance = getattr(progress, "advance", None)
    if start is not None:
        start("Copying", len(todo), sum(objects[d] for d in todo))

    def one(digest: str) -> int:
        try:
            with source.open(digest) as stream:
                put = destination.put_stream(stream, durable=False)
        except NotFoundError:
            raise NotFoundError(
                f"Object {digest} is in neither {destination.uri} nor {source.uri}.",
                hint="Push it from the machine that added the version.",
            ) from None
        if advance is not None:
            advance(1, put.size)
        return put.size

    try:
        if todo:
            count = max(1, min(workers, len(todo), 4 * (os.cpu_count() or 2)))
            with ThreadPoolExecutor(count, thread_name_prefix="conveyor-transfer") as pool:
                sizes = list(pool.map(one, todo))
        else:
            sizes = []
    finally:
        stop = getattr(progress, "stop", None)
        if stop is not None:
            stop()
    return TransferResult(source.uri, destination.uri, len(todo), sum(sizes), len(present))
