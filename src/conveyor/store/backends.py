"""The registries that turn store URIs into backend objects."""

from __future__ import annotations

from conveyor.core.registry import BackendRegistry
from conveyor.store.artifacts.backend import BACKENDS as ARTIFACT_BACKENDS

__all__ = ["ARTIFACT_BACKENDS", "METADATA_STORES"]

#: Metadata stores by URI scheme.
METADATA_STORES = BackendRegistry(
    "metadata store",
    "conveyor.metadata_stores",
    {
        "sqlite": "conveyor.store.metadata.store:MetadataStore",
        "postgresql": "conveyor.store.metadata.store:MetadataStore",
        "postgres": "conveyor.store.metadata.store:MetadataStore",
    },
)
