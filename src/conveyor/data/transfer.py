"""Copying the objects versions need between artifact stores (``data push`` / ``data pull``).

Only objects missing at the destination are copied, several at a time; each lands whole or
not at all (the stores write to a temporary name and rename), so an interrupted transfer
resumes where it stopped when run again. Asked to verify, it also reads every object the
destination holds and replaces each damaged one with the source's copy.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from conveyor.core.errors import IntegrityError, NotFoundError
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
    repaired: int = 0  # held but damaged, replaced (only when verifying)
    #: Versions left out of a push or pull of everything: neither store holds all their files.
    missing: tuple[str, ...] = ()


def copy_objects(
    objects: dict[str, int],
    source: ArtifactStore,
    destination: ArtifactStore,
    *,
    workers: int = 8,
    progress: object | None = None,
    verify: bool = False,
    damaged_hint: str | None = None,
) -> TransferResult:
    """Copy each of ``objects`` (``{digest: size}``) that ``destination`` lacks, verified.

    With ``verify``, the objects ``destination`` holds are read through too, and each whose
    bytes no longer match its digest is replaced with ``source``'s copy. Objects whose copy
    in ``source`` is damaged are left out, and once the others are copied, IntegrityError
    names them and ``source``, with ``damaged_hint`` as what to do.
    """
    present = destination.exists_many(set(objects))
    todo = sorted((d for d in objects if d not in present), key=lambda d: -objects[d])
    count = max(1, min(workers, len(objects) or 1, 4 * (os.cpu_count() or 2)))
    start = getattr(progress, "start", None)
    advance = getattr(progress, "advance", None)

    def one(job: tuple[str, bool]) -> int:
        digest, repair = job
        # Only the source's NotFoundError means the object is missing: the destination's
        # (a bucket that does not exist) says what is wrong by itself.
        try:
            stream = source.open(digest)
        except NotFoundError:
            raise NotFoundError(
                f"Object {digest} is in neither {destination.uri} nor {source.uri}."
                if not repair
                else f"Object {digest} is damaged in {destination.uri} and not in {source.uri}.",
                hint="Push it from the machine that added the version.",
            ) from None
        try:
            with stream:
                if repair:
                    put = destination.repair(digest, stream)
                else:
                    put = destination.put_stream(stream, durable=False)
        except IntegrityError as e:  # the source's copy failed its digest check
            # Copy the others still, so that one bad object holds back nothing else.
            unreadable.append((digest, e))
            return 0
        if advance is not None:
            advance(1, put.size)
        return put.size

    damaged: list[str] = []
    unreadable: list[tuple[str, IntegrityError]] = []
    try:
        if verify and present:
            held = sorted(present)
            if start is not None:  # reading every object held can take longer than the copy
                start("Verifying", len(held), sum(objects[d] for d in held))
            check = _intact(destination, advance, objects)
            with ThreadPoolExecutor(count, thread_name_prefix="conveyor-verify") as pool:
                intact = pool.map(check, held)
                damaged = [d for d, ok in zip(held, intact, strict=True) if not ok]
        jobs = [(d, False) for d in todo] + [(d, True) for d in damaged]
        if start is not None:
            start("Copying", len(jobs), sum(objects[d] for d, _ in jobs))
        if jobs:
            with ThreadPoolExecutor(count, thread_name_prefix="conveyor-transfer") as pool:
                sizes = list(pool.map(one, jobs))
        else:
            sizes = []
    finally:
        stop = getattr(progress, "stop", None)
        if stop is not None:
            stop()
    if unreadable:
        first, error = min(unreadable)
        others = f" and {len(unreadable) - 1} more" if len(unreadable) > 1 else ""
        copied = len(jobs) - len(unreadable)
        rest = f"; the other {copied:,} objects were" if copied else ""
        raise IntegrityError(
            f"{source.uri} holds a damaged copy of object {first}{others} (the bytes no longer "
            f"match the digest), so {'they were' if others else 'it was'} not copied to "
            f"{destination.uri}{rest}.",
            hint=damaged_hint or error.hint,
        ) from error
    return TransferResult(
        source.uri,
        destination.uri,
        len(todo),
        sum(sizes[: len(todo)]),
        len(present) - len(damaged),
        repaired=len(damaged),
    )


def _intact(
    store: ArtifactStore, advance: Callable[[int, int], None] | None, sizes: dict[str, int]
) -> Callable[[str], bool]:
    """A check of one object of ``store``: False when its bytes no longer match its digest.
    Each check done is reported to ``advance`` with the object's size from ``sizes``."""

    def check(digest: str) -> bool:
        try:
            store.verify(digest)
        except IntegrityError:
            return False
        finally:
            if advance is not None:
                advance(1, sizes[digest])
        return True

    return check
