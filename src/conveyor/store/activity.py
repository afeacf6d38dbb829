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

__all__ = ["activity", "current_activity", "enter_activity", "leave_activity"]

_stack: ContextVar[tuple[ObjectRef, ...]] = ContextVar("conveyor_activity", default=())


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
