"""Conveyor: take a model from a notebook to production and keep it healthy there.

>>> import conveyor as cv
>>> ws = cv.init(project="churn")          # doctest: +SKIP
>>> ws.log_artifact(b"...", cv.ObjectRef("run", "r1"), "notes.txt")  # doctest: +SKIP

Heavy modules (SQLAlchemy, fsspec, Alembic) load when first used, not at import.
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING

from conveyor._version import __version__
from conveyor.core.errors import (
    AlreadyExistsError,
    BackendUnavailableError,
    ConflictError,
    ConveyorError,
    IntegrityError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
)

if _TYPE_CHECKING:
    from conveyor._api import init, workspace
    from conveyor.core.config import Settings
    from conveyor.store.artifacts.cas import ArtifactStore
    from conveyor.store.metadata.store import MetadataStore
    from conveyor.store.records import (
        ArtifactLink,
        AuditEvent,
        LineageEdge,
        LineageGraph,
        ObjectRef,
    )
    from conveyor.store.workspace import Workspace

__all__ = [
    "AlreadyExistsError",
    "ArtifactLink",
    "ArtifactStore",
    "AuditEvent",
    "BackendUnavailableError",
    "ConflictError",
    "ConveyorError",
    "IntegrityError",
    "InvalidArgumentError",
    "LineageEdge",
    "LineageGraph",
    "MetadataStore",
    "NotFoundError",
    "ObjectRef",
    "PermissionDeniedError",
    "Settings",
    "Workspace",
    "__version__",
    "init",
    "workspace",
]

# name -> module that defines it; imported on first attribute access (PEP 562).
_LAZY = {
    "init": "conveyor._api",
    "workspace": "conveyor._api",
    "Settings": "conveyor.core.config",
    "ArtifactStore": "conveyor.store.artifacts.cas",
    "MetadataStore": "conveyor.store.metadata.store",
    "ArtifactLink": "conveyor.store.records",
    "AuditEvent": "conveyor.store.records",
    "LineageEdge": "conveyor.store.records",
    "LineageGraph": "conveyor.store.records",
    "ObjectRef": "conveyor.store.records",
    "Workspace": "conveyor.store.workspace",
}


def __getattr__(name: str) -> object:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'conveyor' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
