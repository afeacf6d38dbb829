"""Throw-away workspaces for tests."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import weakref

from conveyor.core import ids
from conveyor.core.config import Settings
from conveyor.store.workspace import Workspace, _current

__all__ = ["memory_workspace"]


def memory_workspace(
    project: str = "test", *, actor: str = "tester", current: bool = False
) -> Workspace:
    """Return a workspace with an in-memory metadata store and a memory:// artifact store.

    Each call is isolated: its own stores, a private temporary root (removed with the
    workspace) for what lives in files (the online store), and no setting taken from
    ``CONVEYOR_*`` variables or a ``conveyor.toml``. With ``current=True`` it is also the
    workspace that ``cv.*`` calls use in this context (thread or task), as after ``cv.init``,
    until it is closed (``with memory_workspace(current=True):``), which restores the one
    used before.

    >>> ws = memory_workspace()
    >>> ws.project.name
    'test'
    """
    root = tempfile.mkdtemp(prefix="conveyor-test-")
    name = f"conveyor-test-{ids.new_id().lower()}"
    settings = dict.fromkeys(Settings.settable_keys(), "")  # "" beats the environment
    settings.update(
        project=project,
        store_uri="sqlite://",
        artifact_uri=f"memory://{name}",
        log_uri=f"memory://{name}-logs",
        trust_pickled_models="false",
        actor=actor,
    )
    ws = Workspace.from_settings(root, **settings)
    weakref.finalize(ws, shutil.rmtree, root, ignore_errors=True)
    if current:
        token = _current.set(ws)

        class _Current:  # a service: closing the workspace closes it
            def close(self) -> None:
                with contextlib.suppress(ValueError):  # closed in another context
                    _current.reset(token)

        ws.service("testing.current", lambda _: _Current())
    return ws
