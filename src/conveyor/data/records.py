"""Plain records of the data package: files, manifests, datasets and their versions."""

from __future__ import annotations

import itertools
import json
import operator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from conveyor.core.errors import InvalidArgumentError
from conveyor.core.hashing import is_sha256, sha256_bytes
from conveyor.core.names import validate_artifact_path

__all__ = [
    "CHUNKED_ABOVE",
    "CHUNK_BYTES",
    "Dataset",
    "DatasetVersion",
    "FileEntry",
    "Manifest",
    "chunk_count",
    "chunked_digest",
]

MANIFEST_FORMAT = "conveyor.manifest/1"
#: The format of manifests that list a file in chunks (those without stay format 1, so the
#: versions added before chunks existed keep their digests).
CHUNKED_FORMAT = "conveyor.manifest/2"
#: Files larger than this are stored as fixed-size chunks, each its own object: changing a
#: few bytes of a large file then stores one new chunk, not a new copy of the file.
CHUNKED_ABOVE = 64 * 1024 * 1024
#: The size of every chunk but a file's last.
CHUNK_BYTES = 8 * 1024 * 1024


_path_of = operator.attrgetter("path")


def chunk_count(size: int) -> int:
    """Return how many chunks a file of ``size`` bytes is stored in (0 when not chunked).

    >>> chunk_count(10), chunk_count(CHUNKED_ABOVE + 1)
    (0, 9)
    """
    return -(-size // CHUNK_BYTES) if size > CHUNKED_ABOVE else 0


def chunked_digest(chunks: tuple[str, ...] | list[str]) -> str:
    """Return the digest that names a chunked file: the sha256 of its chunk list.

    Two files have the same chunked digest exactly when they have the same bytes, since the
    chunk boundaries depend only on the size.
    """
    head = f"conveyor.chunks/1 {CHUNK_BYTES}\n"
    return sha256_bytes((head + "\n".join(chunks)).encode())


class FileEntry(NamedTuple):
    """One file of a dataset version: its relative path, size and digest.

    For a file of at most :data:`CHUNKED_ABOVE` bytes, ``digest`` is the sha256 of its bytes
    and names the object that holds them. A larger file is stored in chunks of
    :data:`CHUNK_BYTES`: ``chunks`` lists the sha256 of each, in order, and ``digest`` is
    :func:`chunked_digest` of that list.

    A named tuple (immutable, ordered by its fields): a version of many files makes one
    per file on every add and read, at a third of the cost of a frozen dataclass.
    """

    path: str
    size: int
    digest: str
    chunks: tuple[str, ...] = ()

    @property
    def objects(self) -> tuple[str, ...]:
        """The digests of the stored objects that hold this file's bytes, in order."""
        return self.chunks or (self.digest,)

    def chunk_size(self, index: int) -> int:
        """The size in bytes of chunk ``index`` (every one but the last is CHUNK_BYTES)."""
        return min(CHUNK_BYTES, self.size - index * CHUNK_BYTES)


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
        # By path alone: the order of the whole entries whenever paths differ, and quicker.
        ordered = tuple(sorted(files, key=_path_of))
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
        chunked = any(f.chunks for f in self.files)
        body = {
            "format": CHUNKED_FORMAT if chunked else MANIFEST_FORMAT,
            "files": [
                [f.path, f.size, f.digest, list(f.chunks)]
                if f.chunks
                else [f.path, f.size, f.digest]
                for f in self.files
            ],
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
            if body.get("format") not in (MANIFEST_FORMAT, CHUNKED_FORMAT):
                raise ValueError(f"unknown format {body.get('format')!r}")
            files = [_decode_entry(*item) for item in body["files"]]
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise InvalidArgumentError(f"This is not a Conveyor manifest: {e}.") from e
        return cls.of(files)


def _decode_entry(path: str, size: int, digest: str, chunks: list[str] | None = None) -> FileEntry:
    if not isinstance(size, int) or size < 0 or not is_sha256(digest):
        raise ValueError(f"bad entry for {path!r}")
    if chunks is None:  # a whole object (of any size: versions from before chunking too)
        return FileEntry(validate_artifact_path(path), size, digest)
    if (
        not isinstance(chunks, list)
        or len(chunks) != chunk_count(size)
        or not all(is_sha256(c) for c in chunks)
        or chunked_digest(chunks) != digest
    ):
        raise ValueError(f"the chunks of {path!r} do not match its size and digest")
    return FileEntry(validate_artifact_path(path), size, digest, tuple(chunks))


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
