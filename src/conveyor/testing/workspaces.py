"""Throw-away workspaces for tests."""

from __future__ import annotations

import tempfile

from conveyor.core import ids
from conveyor.store.workspace import Workspace

__all__ = ["memory_workspace"]


def memory_workspace(project: str = "test", *, actor: str = "tester") -> Workspace:
    """Return a workspace with an in-memory metadata store and a memory:// artifact store.

    >>> ws = memory_workspace()
    >>> ws.project.name
    'test'
    """
    return Workspace.from_settings(
        tempfile.gettempdir(),
        project=project,
        store_uri="sqlite://",
        artifact_uri=f"memory://conveyor-test-{ids.new_id().lower()}",
        actor=actor,
    )
