"""Plain records of the data package: files, manifests, dataset versions, diffs."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from conveyor.core.errors import InvalidArgumentError
from conveyor.core.hashing import is_sha256, sha256_bytes
from conveyor.core.names import validate_artifact_path

__all__ = [
    "ColumnShift",
    "Dataset",
    "DatasetDiff",
    "DatasetVersion",
    "FileEntry",
    "Manifest",
]

MANIFEST_FORMAT = "conveyor.manifest/1"


@dataclass(frozen=True, slots=True, order=True)
class FileEntry:
    """One file of a dataset version: its relative path, size and sha256."""

    path: str
    size: int
    digest: str


@dataclass(frozen=True, slots=True)
class Manifest:
    """The files of a version, sorted by path. Its digest identifies the version's content.

    >>> m = Manifest.of([FileEntry("b.csv", 3, "b" * 64), FileEntry("a.csv", 1, "a" * 64)])
    >>> [f.path for f in m.files], m.size
    (['a.csv', 'b.csv'], 4)
    >>> Manifest.decode(m.encode()) == m
    True
    """

    files: tuple[FileEntry, ...]

    @classmethod
    def of(cls, files: list[FileEntry] | tuple[FileEntry, ...]) -> Manifest:
        """Build a manifest from entries in any order; duplicate paths are an error."""
        ordered = tuple(sorted(files))
        for a, b in itertools.pairwise(ordered):
            if a.path == b.path:
                raise InvalidArgumentError(f"The path {a.path!r} appears twice in a manifest.")
        return cls(ordered)

    @property
    def size(self) -> int:
        """The total size of the files in bytes."""
        return sum(f.size for f in self.files)

    def encode(self) -> bytes:
        """Return the canonical bytes: the same files always give the same bytes."""
        body = {
            "format": MANIFEST_FORMAT,
            "files": [[f.path, f.size, f.digest] for f in self.files],
        }
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()

    @property
    def digest(self) -> str:
        """The sha256 of :meth:`encode`."""
        return sha256_bytes(self.encode())

    @classmethod
    def decode(cls, data: bytes) -> Manifest:
        """Parse bytes written by :meth:`encode`, checking every entry."""
        try:
            body = json.loads(data)
            if body.get("format") != MANIFEST_FORMAT:
                raise ValueError(f"unknown format {body.get('format')!r}")
            files = []
            for path, size, digest in body["files"]:
                if not isinstance(size, int) or size < 0 or not is_sha256(digest):
                    raise ValueError(f"bad entry for {path!r}")
                files.append(FileEntry(validate_artifact_path(path), size, digest))
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise InvalidArgumentError(f"This is not a Conveyor manifest: {e}.") from e
        return cls.of(files)


@dataclass(frozen=True, slots=True)
class Dataset:
    """A named dataset: a sequence of versions numbered 1, 2, 3..."""

    id: str
    name: str
    description: str
    latest_version: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class DatasetVersion:
    """One immutable version of a dataset.

    ``kind`` is ``"table"`` when the content is one table (added from a DataFrame or Arrow
    table, or files of one table format), else ``"files"``. Tables carry their row count,
    column types and a profile (per-column statistics computed once, at add time).
    """

    id: str
    name: str
    version: int
    digest: str
    kind: str
    files: int
    size: int
    rows: int | None
    columns: dict[str, str] | None
    profile: dict[str, Any] | None
    table_format: str | None
    has_schema: bool
    description: str
    source: str
    created_at: datetime
    created_by: str

    @property
    def ref(self) -> str:
        """``name@version``, the way to name this version everywhere."""
        return f"{self.name}@{self.version}"

    @property
    def schema(self) -> dict[str, str] | None:
        """The column types of a table version (``{column: type}``), else None."""
        return self.columns

    def __repr__(self) -> str:
        rows = f", rows={self.rows}" if self.rows is not None else ""
        return (
            f"DatasetVersion({self.ref!r}, digest={self.digest[:12]!r}, files={self.files}, "
            f"size={self.size}{rows})"
        )


@dataclass(frozen=True, slots=True)
class ColumnShift:
    """How one statistic of one column moved between two table versions."""

    column: str
    statistic: str
    before: float | None
    after: float | None

    @property
    def change(self) -> float | None:
        """``after - before`` when both are known."""
        if self.before is None or self.after is None:
            return None
        return self.after - self.before


@dataclass(slots=True)
class DatasetDiff:
    """What changed between two versions: files, schema, rows and column statistics."""

    a: str
    b: str
    added: list[FileEntry] = field(default_factory=list)
    removed: list[FileEntry] = field(default_factory=list)
    changed: list[tuple[FileEntry, FileEntry]] = field(default_factory=list)
    unchanged: int = 0
    columns_added: dict[str, str] = field(default_factory=dict)
    columns_removed: dict[str, str] = field(default_factory=dict)
    columns_retyped: dict[str, tuple[str, str]] = field(default_factory=dict)
    rows: tuple[int | None, int | None] = (None, None)
    shifts: list[ColumnShift] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        """Whether the two versions hold the same files."""
        return not (self.added or self.removed or self.changed)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable form (for ``--json`` and the REST API)."""
        return {
            "a": self.a,
            "b": self.b,
            "added": [f.path for f in self.added],
            "removed": [f.path for f in self.removed],
            "changed": [old.path for old, _ in self.changed],
            "unchanged": self.unchanged,
            "columns_added": self.columns_added,
            "columns_removed": self.columns_removed,
            "columns_retyped": {k: list(v) for k, v in self.columns_retyped.items()},
            "rows": list(self.rows),
            "shifts": [
                {"column": s.column, "statistic": s.statistic, "before": s.before, "after": s.after}
                for s in self.shifts
            ],
        }
