"""Turning files on disk into stored objects: walk, stat cache, parallel hash-and-store.

Re-adding a large folder after changing one file should cost about that one file. A local
cache remembers, for each file, the (path, size, mtime, inode) it had when it was hashed and
the digest it had then; a file whose stat still matches is not read again. Files that must
be read are hashed and copied into the artifact store in one pass each, several at a time.
"""

from __future__ import annotations

import os
import sqlite3
import stat as stat_module
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from conveyor.core.errors import InvalidArgumentError, NotFoundError, PermissionDeniedError
from conveyor.data.records import FileEntry
from conveyor.store.artifacts.cas import ArtifactStore

__all__ = ["HashCache", "IngestResult", "LocalFile", "ingest", "scan"]

#: A file modified less than this long before it is hashed is not cached: a second write
#: within the file system's timestamp granularity could leave its stat unchanged.
RACY_WINDOW_NS = 1_000_000_000

Progress = Callable[[int, int], None]  # (files done, bytes done) since the last call


@dataclass(frozen=True, slots=True)
class LocalFile:
    """A file found by :func:`scan`: where it is, what to call it, and its stat."""

    path: str  # absolute
    name: str  # relative, with forward slashes
    size: int
    mtime_ns: int
    inode: int


def scan(root: Path) -> list[LocalFile]:
    """Return the regular files under ``root`` (or ``root`` itself), sorted by name.

    Hidden entries (``.git``, ``.DS_Store``...) are skipped in folders; symbolic links to
    files are followed, links to folders are not (they could loop).
    """
    try:
        st = root.stat()
    except FileNotFoundError:
        raise NotFoundError(
            f"Cannot add {root}: there is no such file or folder.",
            hint="Check the path; relative paths are taken from the current directory.",
        ) from None
    except PermissionError as e:
        raise PermissionDeniedError(f"Cannot read {root}: {e.strerror}.") from e
    if stat_module.S_ISREG(st.st_mode):
        return [LocalFile(str(root.resolve()), root.name, st.st_size, st.st_mtime_ns, st.st_ino)]
    if not stat_module.S_ISDIR(st.st_mode):
        raise InvalidArgumentError(f"Cannot add {root}: it is neither a file nor a folder.")
    found: list[LocalFile] = []
    _walk(str(root.resolve()), "", found)
    found.sort(key=lambda f: f.name)
    return found


def _walk(folder: str, prefix: str, found: list[LocalFile]) -> None:
    try:
        entries = list(os.scandir(folder))
    except PermissionError as e:
        raise PermissionDeniedError(f"Cannot list {folder}: {e.strerror}.") from e
    for entry in entries:
        if entry.name.startswith("."):
            continue
        name = prefix + entry.name
        if entry.is_dir(follow_symlinks=False):
            _walk(entry.path, name + "/", found)
        elif entry.is_file():
            st = entry.stat()
            found.append(LocalFile(entry.path, name, st.st_size, st.st_mtime_ns, st.st_ino))


class HashCache:
    """Digests of local files keyed by (path, size, mtime, inode), in a small SQLite file.

    >>> import tempfile, pathlib
    >>> cache = HashCache(pathlib.Path(tempfile.mkdtemp()) / "hashes.db")
    >>> f = LocalFile("/data/a.csv", "a.csv", 3, 1, 7)
    >>> cache.store([(f, "a" * 64)])
    >>> cache.lookup([f]) == {"/data/a.csv": "a" * 64}
    True
    >>> cache.lookup([LocalFile("/data/a.csv", "a.csv", 4, 1, 7)])  # the size changed
    {}
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection | None:
        if self.path is None:
            return None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS hashes (path TEXT PRIMARY KEY, size INTEGER NOT NULL, "
            "mtime_ns INTEGER NOT NULL, inode INTEGER NOT NULL, digest TEXT NOT NULL) "
            "WITHOUT ROWID"
        )
        return conn

    def lookup(self, files: list[LocalFile]) -> dict[str, str]:
        """Return ``{path: digest}`` for the files whose stat matches the cached one."""
        if not files:
            return {}
        with self._lock:
            conn = self._connect()
            if conn is None:
                return {}
            try:
                known = dict(self._rows(conn, files))
            finally:
                conn.close()
        hits = {}
        for f in files:
            row = known.get(f.path)
            if row is not None and row[0] == f.size and row[1] == f.mtime_ns and row[2] == f.inode:
                hits[f.path] = row[3]
        return hits

    @staticmethod
    def _rows(
        conn: sqlite3.Connection, files: list[LocalFile]
    ) -> Iterator[tuple[str, tuple[int, int, int, str]]]:
        if len(files) == 1:
            query = "SELECT path, size, mtime_ns, inode, digest FROM hashes WHERE path = ?"
            rows = conn.execute(query, (files[0].path,))
        else:
            # One range scan over the folder instead of a query per file.
            low = os.path.commonpath([f.path for f in files])
            query = (
                "SELECT path, size, mtime_ns, inode, digest FROM hashes "
                "WHERE path >= ? AND path < ?"
            )
            rows = conn.execute(query, (low, low + "\U0010ffff"))
        for path, size, mtime_ns, inode, digest in rows:
            yield path, (size, mtime_ns, inode, digest)

    def store(self, entries: list[tuple[LocalFile, str]]) -> None:
        """Remember the digests of files just hashed (skipping ones modified too recently)."""
        horizon = time.time_ns() - RACY_WINDOW_NS
        rows = [
            (f.path, f.size, f.mtime_ns, f.inode, digest)
            for f, digest in entries
            if f.mtime_ns < horizon
        ]
        if not rows:
            return
        with self._lock:
            conn = self._connect()
            if conn is None:
                return
            try:
                with conn:
                    conn.execute("BEGIN IMMEDIATE")
                    conn.executemany("INSERT OR REPLACE INTO hashes VALUES (?, ?, ?, ?, ?)", rows)
            except sqlite3.Error:
                pass  # a cache that cannot be written only costs a re-hash next time
            finally:
                conn.close()


@dataclass(slots=True)
class IngestResult:
    """What :func:`ingest` did: the entries, and how much it read and stored."""

    entries: list[FileEntry]
    hashed_files: int = 0
    hashed_bytes: int = 0
    cached_files: int = 0
    stored_new: int = 0
    fresh: set[str] | None = None  # digests this call stored (no presence check needed)


def ingest(
    files: list[LocalFile],
    store: ArtifactStore,
    cache: HashCache,
    *,
    workers: int | None = None,
    progress: Progress | None = None,
) -> IngestResult:
    """Hash and store ``files`` (skipping cache hits whose objects exist); return entries.

    A cache hit whose object is missing from ``store`` (collected, or another store) is
    hashed and stored again, so the result always names content that is stored.
    """
    hits = cache.lookup(files)
    present = store.exists_many(set(hits.values())) if hits else set()
    todo: list[LocalFile] = []
    digests: dict[str, str] = {}
    for f in files:
        digest = hits.get(f.path)
        if digest is not None and digest in present:
            digests[f.path] = digest
        else:
            todo.append(f)
    result = IngestResult(entries=[], cached_files=len(files) - len(todo), fresh=set())
    if progress is not None and result.cached_files:
        progress(result.cached_files, sum(f.size for f in files if f.path in digests))
    fresh: set[str] = set()
    hashed: list[tuple[LocalFile, str]] = []

    def one(f: LocalFile) -> tuple[LocalFile, str, bool, int]:
        try:
            put = store.put_file(f.path, durable=False)
        except PermissionError as e:
            raise PermissionDeniedError(f"Cannot read {f.path}: {e.strerror}.") from e
        except FileNotFoundError:
            raise NotFoundError(
                f"{f.path} disappeared while it was being added.",
                hint="Add again once nothing else is changing the folder.",
            ) from None
        if progress is not None:
            progress(1, put.size)
        return f, put.digest, put.created, put.size

    if todo:
        count = workers or min(8, max(2, os.cpu_count() or 2))
        # Large files first, so one big file does not start last and run alone.
        order = sorted(todo, key=lambda f: -f.size)
        if count == 1 or len(order) == 1:
            done = [one(f) for f in order]
        else:
            with ThreadPoolExecutor(count, thread_name_prefix="conveyor-hash") as pool:
                done = list(pool.map(one, order))
        for f, digest, created, size in done:
            digests[f.path] = digest
            hashed.append((f, digest))
            result.hashed_bytes += size
            if created:
                fresh.add(digest)
        result.hashed_files = len(done)
        result.stored_new = len(fresh)
        cache.store(hashed)
    result.fresh = fresh
    result.entries = [FileEntry(f.name, f.size, digests[f.path]) for f in files]
    # Sizes come from the bytes actually read, which a file changed mid-add can alter.
    sizes = {f.path: size for f, _, _, size in (done if todo else [])}
    if sizes:
        result.entries = [
            FileEntry(f.name, sizes.get(f.path, f.size), digests[f.path]) for f in files
        ]
    return result
