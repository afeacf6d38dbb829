"""The narrow interface every byte backend implements: move bytes, nothing more.

Hashing, deduplication and verification live once, above it, in
:class:`conveyor.store.artifacts.cas.ArtifactStore`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Protocol

from conveyor.core.registry import BackendRegistry

__all__ = ["BACKENDS", "ObjectBackend", "ObjectInfo"]


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One stored object: its key under the root, its size and when it was last written."""

    key: str
    size: int
    modified: datetime | None


class ObjectBackend(Protocol):
    """Bytes under keys like ``ab/cdef...``; every write is atomic."""

    uri: str

    def exists(self, key: str) -> bool:
        """Return whether an object is stored under ``key``."""
        ...

    def size(self, key: str) -> int:
        """Return the size of the object under ``key``; raise NotFoundError if absent."""
        ...

    def open(self, key: str) -> BinaryIO:
        """Open the object under ``key`` for reading; raise NotFoundError if absent."""
        ...

    def put_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` atomically."""
        ...

    def put_file(self, key: str, path: Path, *, move: bool = False) -> None:
        """Store the file at ``path`` under ``key`` atomically (``move`` may consume it)."""
        ...

    def delete(self, key: str) -> None:
        """Delete the object under ``key`` (absent is fine)."""
        ...

    def touch(self, key: str) -> None:
        """Mark the object as used now, where the backend can (a no-op on object stores)."""
        ...

    def walk(self) -> Iterator[ObjectInfo]:
        """Yield every stored object (temporary files excluded)."""
        ...

    def staging_dir(self) -> Path:
        """Return a local folder for temporary files that :meth:`put_file` can move cheaply."""
        ...

    def local_path(self, key: str) -> Path | None:
        """Return the object's local file when the backend is a local folder, else None."""
        ...

    def cleanup_staging(self, older_than: datetime) -> int:
        """Delete temporary files left by killed writers before ``older_than``; return count."""
        ...


#: Artifact-store backends by URI scheme. Anything fsspec knows goes through FsspecBackend.
BACKENDS = BackendRegistry(
    "artifact store",
    "conveyor.artifact_backends",
    {
        "file": "conveyor.store.artifacts.local:LocalBackend",
        "memory": "conveyor.store.artifacts.remote:FsspecBackend",
        "s3": "conveyor.store.artifacts.remote:FsspecBackend",
        "gs": "conveyor.store.artifacts.remote:FsspecBackend",
        "gcs": "conveyor.store.artifacts.remote:FsspecBackend",
        "az": "conveyor.store.artifacts.remote:FsspecBackend",
        "abfs": "conveyor.store.artifacts.remote:FsspecBackend",
    },
)
