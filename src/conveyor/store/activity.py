"""The activity in progress (a run, a pipeline step) that reads and writes record lineage to.

Domain packages stay independent of each other: tracking announces its active run here, and
data (or features, or models) reads it to draw ``used_by`` and ``produced`` edges, without
either importing the other. The stack lives in a :class:`contextvars.ContextVar`, so threads
and asyncio tasks each see their own.

>>> from conveyor.store.records import ObjectRef
>>> with activity(ObjectRef("run", "r1")):
...     current_activity()
ObjectRef(kind='run', id='r1')
>>> current_activity() is None
True
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from conveyor.store.records import ObjectRef

__all__ = [
    "activity",
    "current_activity",
    "enter_activity",
    "leave_activity",
    "note_read",
    "recording_reads",
]

_stack: ContextVar[tuple[ObjectRef, ...]] = ContextVar("conveyor_activity", default=())
_reads: ContextVar[list[dict[str, str]] | None] = ContextVar("conveyor_reads", default=None)


def current_activity() -> ObjectRef | None:
    """Return the innermost activity in progress in this context, or None."""
    stack = _stack.get()
    return stack[-1] if stack else None


def enter_activity(ref: ObjectRef) -> None:
    """Make ``ref`` the innermost activity of this context (until :func:`leave_activity`)."""
    _stack.set((*_stack.get(), ref))


def leave_activity(ref: ObjectRef) -> None:
    """Remove ``ref`` from this context's activities, wherever it is in the stack."""
    stack = _stack.get()
    if ref in stack:
        _stack.set(tuple(r for r in stack if r != ref))


@contextmanager
def activity(ref: ObjectRef) -> Iterator[ObjectRef]:
    """Run the block with ``ref`` as the activity in progress."""
    enter_activity(ref)
    try:
        yield ref
    finally:
        leave_activity(ref)


def note_read(kind: str, ref: str, resolved_id: str) -> None:
    """Tell whoever records reads here that ``ref`` was read and resolved to ``resolved_id``.

    A pipeline step records the dataset refs it loads (``customers@latest``), so its cached
    result is reused only while each ref still resolves to the same version.
    """
    reads = _reads.get()
    if reads is not None:
        entry = {"kind": kind, "ref": ref, "id": resolved_id}
        if entry not in reads:
            reads.append(entry)


@contextmanager
def recording_reads() -> Iterator[list[dict[str, str]]]:
    """Collect the reads noted while the block runs (in this context) into the yielded list."""
    reads: list[dict[str, str]] = []
    token = _reads.set(reads)
    try:
        yield reads
    finally:
        _reads.reset(token)
