"""The functions at the top of the ``conveyor`` namespace."""

from __future__ import annotations

import os

from conveyor.store.workspace import Workspace, _current, current_workspace, use_workspace

__all__ = ["init", "workspace"]


def init(
    root: str | os.PathLike[str] | None = None,
    *,
    project: str | None = None,
    store_uri: str | None = None,
    artifact_uri: str | None = None,
    remote_uri: str | None = None,
    log_uri: str | None = None,
    actor: str | None = None,
    online_uri: str | None = None,
    query_memory_limit: str | None = None,
    approvers: str | None = None,
    webhooks: str | None = None,
    trust_pickled_models: str | None = None,
) -> Workspace:
    """Choose the project and stores to use from here on; arguments override conveyor.toml
    and CONVEYOR_* (every key of docs/configuration.md, as the same text).

    The workspace becomes the one in use in this context and the process default (threads
    started later use it too). Nothing is created until first use: the metadata store is
    created and migrated when something is first written or read.

    >>> import conveyor as cv, tempfile
    >>> ws = cv.init(tempfile.mkdtemp(), project="churn")
    >>> ws.settings.project
    'churn'
    """
    ws = Workspace.from_settings(
        root,
        project=project,
        store_uri=store_uri,
        artifact_uri=artifact_uri,
        remote_uri=remote_uri,
        log_uri=log_uri,
        actor=actor,
        online_uri=online_uri,
        query_memory_limit=query_memory_limit,
        approvers=approvers,
        webhooks=webhooks,
        trust_pickled_models=trust_pickled_models,
    )
    previous = _current.get()
    if previous is not None:
        previous.close()
    return use_workspace(ws, default=True)


def workspace() -> Workspace:
    """Return the workspace in use (resolved from conveyor.toml and CONVEYOR_* if none was set)."""
    return current_workspace()
