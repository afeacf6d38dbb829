"""The team server: every service over HTTP, with users, tokens, roles, projects and audit.

``conveyor server`` runs :func:`create_app` under uvicorn. Routes are thin: each resolves the
caller (an API token), the project and the role the route needs (:mod:`.rules`), then calls
the same service the SDK and CLI call, acting as the caller so that the service's own checks
and the audit trail see who it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.server.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from conveyor.server.app import create_app

        return create_app
    raise AttributeError(name)
