"""The content-addressed artifact store: bytes stored once by sha256, verified on every read."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from conveyor.core import ids
from conveyor.core.errors import IntegrityError, InvalidArgumentError, NotFoundError
from conveyor.core.hashing import CHUNK_SIZE, is_sha256, sha256_bytes
from conveyor.store.artifacts.backend import BACKENDS, ObjectBackend, ObjectInfo

__all__ = ["ArtifactStore", "PutResult", "VerifyingReader"]


@dataclass(frozen=True, slots=True)
class PutResult:
    """What :meth:`ArtifactStore.put` stored: the digest, the size, and whether it was new."""

    digest: str
    size: int
    created: bool


def key_of(digest: str) -> str:
    """Return the backend key of ``digest``: ``ab/cdef...``."""
    if not is_sha256(digest):
        raise InvalidArgumentError(
            f"{digest!r} is not an artifact digest: expected 64 lowercase hex characters (sha256)."
        )
    return f"{digest[:2]}/{digest[2:]}"


def digest_of(key: str) -> str | None:
    """Return the digest stored under ``key``, or None if the key is not an object's."""
    digest = key.replace("/", "")
    return digest if key[2:3] == "/" and is_sha256(digest) else None


def check_digest(digest: str, actual: str, size: int) -> None:
    """Raise IntegrityError naming ``digest`` if the bytes read hashed to something else."""
    if actual != digest:
        raise IntegrityError(
            f"Artifact {digest} is corrupted: its bytes hash to {actual} ({size} bytes read).",
            hint="Restore it from a remote or delete the records that point to it.",
        )


class VerifyingReader(io.RawIOBase):
    """A read-only stream that hashes what passes through and checks the digest.

    The check runs at end of file, or at ``close()`` after reading whatever the caller left
    unread, so a reader that stops early (``pickle.load``, a header peek) is verified too.
    """

    def __init__(self, raw: BinaryIO, digest: str) -> None:
        super().__init__()
        self._raw = raw
        self._digest = digest
        self._hash = hashlib.sha256()
        self._seen = 0
        self._checked = False

    def readable(self) -> bool:
        return True

    def readall(self) -> bytes:
        parts = []
        while chunk := self._raw.read(CHUNK_SIZE):
            self._hash.update(chunk)
            self._seen += len(chunk)
            parts.append(chunk)
        self._check()
        return b"".join(parts)

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        chunk = self._raw.read(len(buffer))
        n = len(chunk)
        if n:
            buffer[:n] = chunk
            self._hash.update(chunk)
            self._seen += n
        else:
            self._check()
        return n

    def _check(self) -> None:
        if self._checked:
            return
        self._checked = True
        check_digest(self._digest, self._hash.hexdigest(), self._seen)

    def close(self) -> None:
        if self.closed:
            return
        try:
            if not self._checked:
                while chunk := self._raw.read(CHUNK_SIZE):
                    self._hash.update(chunk)
                    self._seen += len(chunk)
                self._check()
        finally:
            with contextlib.suppress(Exception):
                self._raw.close()
            super().close()


class ArtifactStore:
    """Stores bytes by their sha256 on any backend; the same content is stored once.

    >>> store = ArtifactStore("memory://doctest-artifacts")
    >>> put = store.put(b"hello")
    >>> store.get(put.digest)
    b'hello'
    """

    def __init__(self, uri: str, backend: ObjectBackend | None = None) -> None:
        self.uri = uri
        self._backend = backend

    def __repr__(self) -> str:
        return f"ArtifactStore({self.uri!r})"

    @property
    def backend(self) -> ObjectBackend:
        """The byte backend, chosen by the URI's scheme on first use."""
        if self._backend is None:
            self._backend = BACKENDS.resolve(self.uri)(self.uri)
        return self._backend

    # -- writing ---------------------------------------------------------------------------

    def put(
        self, data: bytes | bytearray | memoryview | str | os.PathLike[str] | BinaryIO
    ) -> PutResult:
        """Store bytes, a file (by path) or a binary stream; return its digest and size."""
        if isinstance(data, bytes | bytearray | memoryview):
            return self.put_bytes(bytes(data))
        if isinstance(data, str | os.PathLike):
            return self.put_file(data)
        if hasattr(data, "read"):
            return self.put_stream(data)
        raise InvalidArgumentError(
            f"ArtifactStore.put takes bytes, a file path or a binary stream; "
            f"got {type(data).__name__}."
        )

    def put_bytes(self, data: bytes) -> PutResult:
        """Store ``data``; return its digest and size."""
        digest = sha256_bytes(data)
        key = key_of(digest)
        if self._reuse(key):
            return PutResult(digest, len(data), created=False)
        self.backend.put_bytes(key, data)
        return PutResult(digest, len(data), created=True)

    def put_file(self, path: str | os.PathLike[str]) -> PutResult:
        """Store the file at ``path``; return its digest and size."""
        path = Path(path)
        if not path.is_file():
            raise NotFoundError(f"Cannot store {path}: it is not a file.")
        # One pass: copy through the hashing stream, so what lands under a key always matches
        # it even if the file changes meanwhile; content already stored costs the write only.
        with path.open("rb") as f:
            return self.put_stream(f)

    def put_stream(self, stream: BinaryIO) -> PutResult:
        """Store everything left in ``stream``, hashing it on the way to a temporary file."""
        temp = self.backend.staging_dir() / f"{ids.new_id()}.part"
        h = hashlib.sha256()
        size = 0
        try:
            with temp.open("wb") as out:
                while chunk := stream.read(CHUNK_SIZE):
                    h.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            digest = h.hexdigest()
            key = key_of(digest)
            if self._reuse(key):
                return PutResult(digest, size, created=False)
            self.backend.put_file(key, temp, move=True)
            return PutResult(digest, size, created=True)
        finally:
            temp.unlink(missing_ok=True)

    def _reuse(self, key: str) -> bool:
        """Return whether ``key`` is stored; if so, mark it as just used so gc's grace applies."""
        if not self.backend.exists(key):
            return False
        self.backend.touch(key)
        return True

    # -- reading ---------------------------------------------------------------------------

    def exists(self, digest: str) -> bool:
        """Return whether the content with ``digest`` is stored."""
        return self.backend.exists(key_of(digest))

    def size(self, digest: str) -> int:
        """Return the size in bytes of the content with ``digest``."""
        return self.backend.size(key_of(digest))

    def open(self, digest: str) -> BinaryIO:
        """Open the content for streaming; reading to the end raises IntegrityError on mismatch."""
        key = key_of(digest)
        try:
            raw = self.backend.open(key)
        except NotFoundError:
            raise NotFoundError(
                f"Artifact {digest} is not in the artifact store {self.uri}."
            ) from None
        return io.BufferedReader(VerifyingReader(raw, digest), buffer_size=CHUNK_SIZE)

    def get(self, digest: str) -> bytes:
        """Return the content with ``digest``, verified."""
        with self._open_raw(digest) as raw:
            data = raw.read()
        check_digest(digest, hashlib.sha256(data).hexdigest(), len(data))
        return data

    def _open_raw(self, digest: str) -> BinaryIO:
        try:
            return self.backend.open(key_of(digest))
        except NotFoundError:
            raise NotFoundError(
                f"Artifact {digest} is not in the artifact store {self.uri}."
            ) from None

    def download(self, digest: str, dest: str | os.PathLike[str]) -> Path:
        """Copy the content to ``dest`` (written to a temporary file and renamed), verified."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        temp = dest.with_name(f".{dest.name}.{ids.new_id()}.part")
        try:
            with self.open(digest) as src, temp.open("wb") as out:
                shutil.copyfileobj(src, out, CHUNK_SIZE)
            os.replace(temp, dest)
        finally:
            temp.unlink(missing_ok=True)
        return dest

    def verify(self, digest: str) -> None:
        """Read the content through and raise IntegrityError if it does not match its digest."""
        h = hashlib.sha256()
        size = 0
        with self._open_raw(digest) as raw:
            while chunk := raw.read(CHUNK_SIZE):
                h.update(chunk)
                size += len(chunk)
        check_digest(digest, h.hexdigest(), size)

    # -- maintenance -----------------------------------------------------------------------

    def delete(self, digest: str) -> None:
        """Delete the content with ``digest`` (only garbage collection should)."""
        self.backend.delete(key_of(digest))

    def objects(self) -> Iterator[tuple[str, ObjectInfo]]:
        """Yield ``(digest, info)`` for every stored object."""
        for info in self.backend.walk():
            digest = digest_of(info.key)
            if digest is not None:
                yield digest, info

    def cleanup_staging(self, older_than: datetime) -> int:
        """Delete temporary files that killed writers left behind; return how many."""
        return self.backend.cleanup_staging(older_than)
