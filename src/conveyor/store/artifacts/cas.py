"""The content-addressed artifact store: bytes stored once by sha256, verified on every read."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import queue
import shutil
import stat
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from conveyor.core import ids
from conveyor.core.errors import IntegrityError, InvalidArgumentError, NotFoundError
from conveyor.core.hashing import CHUNK_SIZE, all_sha256, is_sha256, sha256_bytes
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


_PIPELINE_AFTER = 4 * CHUNK_SIZE  # streams longer than this hash on a second thread


def _copy_hashing(src: BinaryIO, out: BinaryIO) -> tuple[str, int]:
    """Copy ``src`` to ``out`` and return the sha256 and size of what was copied.

    Past the first few chunks, hashing moves to a helper thread so that it overlaps the
    reads and writes (hashlib and file I/O both release the GIL): a large file then costs
    about the slower of the two, not their sum.
    """
    h = hashlib.sha256()
    size = 0
    while size < _PIPELINE_AFTER:
        chunk = src.read(CHUNK_SIZE)
        if not chunk:
            return h.hexdigest(), size
        h.update(chunk)
        out.write(chunk)
        size += len(chunk)
    chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
    hasher = threading.Thread(target=_hash_queue, args=(h, chunks), daemon=True)
    hasher.start()
    try:
        while chunk := src.read(4 * CHUNK_SIZE):
            chunks.put(chunk)
            out.write(chunk)
            size += len(chunk)
    finally:
        chunks.put(None)
        hasher.join()
    return h.hexdigest(), size


def _hash_queue(h: hashlib._Hash, chunks: queue.Queue[bytes | None]) -> None:
    while (chunk := chunks.get()) is not None:
        h.update(chunk)


_RACY_NS = 1_000_000_000  # files modified this recently may change without a new mtime


def _read_fd(fd: int, size: int) -> tuple[str, list[bytes]]:
    """Read the open file ``fd`` by offset (its position is left alone); return the sha256
    of what was read and the pieces read, up to one byte past ``size``."""
    h = hashlib.sha256()
    pieces: list[bytes] = []
    done = 0
    # A new bytes object per read: a reused bytearray would be zeroed, all 4 MiB of it,
    # for every small file, which costs more than the read.
    while done <= size and (piece := os.pread(fd, 4 * CHUNK_SIZE, done)):
        h.update(piece)
        pieces.append(piece)
        done += len(piece)
    return h.hexdigest(), pieces


def _open_regular(path: Path) -> io.FileIO:
    """Open ``path`` for reading, refusing anything but a regular file (never blocking on
    a FIFO), with one open and one fstat rather than a stat beforehand."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        if os.path.isfile(path):
            raise  # a file that cannot be read: the caller names it
        raise NotFoundError(f"Cannot store {path}: it is not a file.") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotFoundError(f"Cannot store {path}: it is not a file.")
    return io.FileIO(fd, "rb", closefd=True)


def _changed(before: os.stat_result, after: os.stat_result) -> bool:
    return (before.st_size, before.st_mtime_ns, before.st_ctime_ns) != (
        after.st_size,
        after.st_mtime_ns,
        after.st_ctime_ns,
    )


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

    def put_file(self, path: str | os.PathLike[str], *, durable: bool = True) -> PutResult:
        """Store the file at ``path``; return its digest and size.

        ``durable=False`` skips the fsync of each object, for bulk imports that would
        otherwise wait on the disk once per file; a torn object is still caught by the
        digest check on every read.
        """
        path = Path(path)
        with _open_regular(path) as f:
            if not durable and getattr(self.backend, "is_local", False):
                fast = self._put_small_local(f.fileno())
                if fast is not None:
                    return fast
            # One pass: copy through the hashing stream, so what lands under a key always
            # matches it even if the file changes meanwhile; content already stored costs
            # the write only.
            f.seek(0)
            return self.put_stream(f, durable=durable)

    def _put_small_local(self, src: int) -> PutResult | None:
        """Store a small open file ``src`` by reading it once: hash the bytes, and write those
        very bytes only if the store does not hold them yet (local stores only).

        Copying the file separately from hashing it (in the kernel) would cost no less, and
        a write the file's stat does not show (through a shared mmap) could then make the
        copy differ from its digest. A file that is larger, modified within the file
        system's timestamp granularity, or changed while read gives None: the caller takes
        the one-pass streaming path. Reads by offset, leaving ``src``'s position alone.
        """
        before = os.fstat(src)
        if before.st_size >= _PIPELINE_AFTER * 4 or before.st_mtime_ns > time.time_ns() - _RACY_NS:
            return None
        digest, pieces = _read_fd(src, before.st_size)
        size = sum(map(len, pieces))
        if size != before.st_size or _changed(before, os.fstat(src)):
            return None
        key = key_of(digest)
        if self._reuse(key):
            return PutResult(digest, size, created=False)
        temp = self.backend.staging_dir() / f"{ids.new_id()}.part"
        try:
            with temp.open("wb") as out:  # a buffered write writes the whole piece or raises
                for piece in pieces:
                    out.write(piece)
            self.backend.put_file(key, temp, move=True)
        finally:
            temp.unlink(missing_ok=True)  # moved into place, or a failed write's leftovers
        return PutResult(digest, size, created=True)

    def put_stream(self, stream: BinaryIO, *, durable: bool = True) -> PutResult:
        """Store everything left in ``stream``, hashing it on the way to a temporary file."""
        temp = self.backend.staging_dir() / f"{ids.new_id()}.part"
        try:
            with temp.open("wb") as out:
                digest, size = _copy_hashing(stream, out)
                out.flush()
                if durable:
                    os.fsync(out.fileno())
            key = key_of(digest)
            if self._reuse(key):
                return PutResult(digest, size, created=False)
            self.backend.put_file(key, temp, move=True)
            return PutResult(digest, size, created=True)
        finally:
            temp.unlink(missing_ok=True)

    def repair(self, digest: str, stream: BinaryIO) -> PutResult:
        """Store everything left in ``stream`` as the object ``digest``, replacing the copy
        held (found corrupted) in one step; refused unless the bytes hash to ``digest``."""
        temp = self.backend.staging_dir() / f"{ids.new_id()}.part"
        try:
            with temp.open("wb") as out:
                actual, size = _copy_hashing(stream, out)
                out.flush()
                os.fsync(out.fileno())
            check_digest(digest, actual, size)
            self.backend.put_file(key_of(digest), temp, move=True)
            return PutResult(digest, size, created=True)
        finally:
            temp.unlink(missing_ok=True)

    def put_hashed(
        self, data: bytes | memoryview, digest: str, *, durable: bool = True
    ) -> PutResult:
        """Store ``data``, whose sha256 the caller has just computed as ``digest``.

        This saves hashing the bytes a second time when the caller needed the digest first
        (to skip content already stored). Only for digests computed in this process over
        exactly ``data``, never for one received from elsewhere: every read verifies the
        digest, but a wrong one would file the bytes under another content's address.
        """
        key = key_of(digest)
        if self._reuse(key):
            return PutResult(digest, len(data), created=False)
        if not durable and getattr(self.backend, "is_local", False):
            temp = self.backend.staging_dir() / f"{ids.new_id()}.part"
            try:
                with temp.open("wb") as out:
                    out.write(data)
                self.backend.put_file(key, temp, move=True)
            finally:
                temp.unlink(missing_ok=True)
        else:
            self.backend.put_bytes(key, bytes(data))
        return PutResult(digest, len(data), created=True)

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

    def exists_many(self, digests: list[str] | set[str]) -> set[str]:
        """Return which of ``digests`` are stored (checked concurrently on remote stores)."""
        wanted = sorted(set(digests))
        if not all_sha256(wanted):
            for d in wanted:
                key_of(d)  # raises, naming the first that is not a digest
        keys = [f"{d[:2]}/{d[2:]}" for d in wanted]
        exists_keys = getattr(self.backend, "exists_keys", None)
        if exists_keys is not None:  # a local folder: a stat each, cheaper than any thread
            found = exists_keys(keys)
        elif getattr(self.backend, "is_local", False) or len(keys) < 8:
            found = [self.backend.exists(k) for k in keys]
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(16, thread_name_prefix="conveyor-exists") as pool:
                found = list(pool.map(self.backend.exists, keys))
        return {d for d, ok in zip(wanted, found, strict=True) if ok}

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

    def download(self, digest: str | Sequence[str], dest: str | os.PathLike[str]) -> Path:
        """Copy the content to ``dest`` (written to a temporary file and renamed), verified.

        Given several digests, ``dest`` gets their contents one after another (a file stored
        in chunks).
        """
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        temp = dest.with_name(f".{dest.name}.{ids.new_id()}.part")
        try:
            with temp.open("wb") as out:
                for one in [digest] if isinstance(digest, str) else digest:
                    with self.open(one) as src:
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
