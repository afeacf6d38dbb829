"""Turning files on disk into stored objects: walk, stat cache, parallel hash-and-store.

Re-adding a large folder after changing one file should cost about that one file. A local
cache remembers, for each file, the (path, size, mtime, inode) it had when it was hashed and
the digest it had then; a file whose stat still matches is not read again. Files that must
be read are hashed and copied into the artifact store in one pass each, several at a time.

Files larger than :data:`~conveyor.data.records.CHUNKED_ABOVE` are read and stored in fixed
chunks, hashed in parallel (one large file uses every core), and only the chunks not stored
yet are written. The cache keeps a fast fingerprint of each chunk too, so rewriting a few
bytes of a large file reads it again but hashes and stores one chunk, not the file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import sqlite3
import stat as stat_module
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import xxhash

from conveyor.core.errors import (
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
)
from conveyor.core.hashing import sha256_bytes
from conveyor.core.names import MAX_PATH
from conveyor.data.records import (
    CHUNK_BYTES,
    CHUNKED_ABOVE,
    FileEntry,
    chunk_count,
    chunked_digest,
)
from conveyor.store.artifacts.cas import ArtifactStore

__all__ = ["HashCache", "IngestResult", "LocalFile", "ingest", "scan"]

#: A file modified less than this long before it is hashed is not cached: a second write
#: within the file system's timestamp granularity could leave its stat unchanged.
RACY_WINDOW_NS = 1_000_000_000

Progress = Callable[[int, int], None]  # (files done, bytes done) since the last call
Digests = tuple[str, tuple[str, ...]]  # a file's digest and its chunks (empty: not chunked)
Earlier = tuple[tuple[str, ...], tuple[str, ...]]  # a changed file's chunks and fingerprints

log = logging.getLogger(__name__)


class LocalFile(NamedTuple):
    """A file found by :func:`scan`: where it is, what to call it, and its stat.

    A named tuple: a scan makes one per file, thousands per add, at a third of the cost
    of a frozen dataclass.
    """

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
        raise PermissionDeniedError(
            f"Cannot read {root}: {e.strerror}.", hint=UNREADABLE_HINT
        ) from e
    except OSError as e:  # a link that loops, a name too long...
        raise InvalidArgumentError(
            f"Cannot add {root}: {e.strerror}.", hint="Check the path, then add again."
        ) from e
    if stat_module.S_ISREG(st.st_mode):
        one = [LocalFile(str(root.resolve()), root.name, st.st_size, st.st_mtime_ns, st.st_ino)]
        _check_names(root, one)
        return one
    if not stat_module.S_ISDIR(st.st_mode):
        raise InvalidArgumentError(f"Cannot add {root}: it is neither a file nor a folder.")
    found: list[LocalFile] = []
    _walk(str(root.resolve()), "", found)
    found.sort(key=lambda f: f.name)
    _check_names(root, found)
    return found


#: What a manifest cannot hold in a path (see validate_artifact_path), as scandir can give it:
#: a control character (a newline...) or a backslash (read back as a folder separator); and,
#: looked for apart, a path starting like a drive ("a:") or blank. The checks run over all
#: the paths joined by "/" (one pass each: a folder holds thousands); a hit that is harmless
#: (a folder "x/a:b", a blank folder name) is told apart path by path.
_UNSTORABLE = re.compile(r"[\x00-\x1f\x7f\\]")
_LEADING = re.compile(r"/(?:[A-Za-z]:|\s+/)")  # over "/" + the names + "/": literal-led


def _check_names(root: Path, files: list[LocalFile]) -> None:
    """Refuse, before anything is read, a file whose name a version cannot record and give
    back as it is (one pass over all the names; a folder holds thousands)."""
    names = [f.name for f in files]
    joined = "/".join(names)
    try:
        joined.encode("utf-8")
        unreadable = False
    except UnicodeEncodeError:  # bytes that are not UTF-8 (kept as surrogates by os)
        unreadable = True
    longest = max(map(len, names), default=0)
    suspect = _UNSTORABLE.search(joined) or _LEADING.search(f"/{joined}/")
    if not unreadable and longest <= MAX_PATH and not suspect:
        return
    for f in files:
        shown = ascii(f.name)
        if f.name.encode("utf-8", "surrogateescape").decode("utf-8", "replace") != f.name:
            problem = "its name is not valid UTF-8"
        elif "\\" in f.name:
            problem = "its name holds a backslash, which would come back as a folder separator"
        elif _UNSTORABLE.search(f.name):
            problem = "its name holds a control character (a newline, a tab...)"
        elif f.name[1:2] == ":" and f.name[:1].isascii() and f.name[:1].isalpha():
            problem = "its path starts like a Windows drive (a letter and ':')"
        elif not f.name.strip():
            problem = "its name is blank"
        elif len(f.name) > MAX_PATH:
            problem = f"its path is {len(f.name)} characters long (at most {MAX_PATH})"
        else:
            continue
        raise InvalidArgumentError(
            f"Cannot add {root}: the file {shown} cannot be versioned: {problem}.",
            hint="Rename the file (or move it out of the folder), then add again.",
        )


#: What to do about a file or folder that add may not read.
UNREADABLE_HINT = "Make it readable to you (chmod), or move it out of what you add, then add again."


def _walk(folder: str, prefix: str, found: list[LocalFile]) -> None:
    try:
        entries = list(os.scandir(folder))
    except PermissionError as e:
        raise PermissionDeniedError(
            f"Cannot list {folder}: {e.strerror}.", hint=UNREADABLE_HINT
        ) from e
    for entry in entries:
        if entry.name.startswith("."):
            continue
        name = prefix + entry.name
        if entry.is_dir(follow_symlinks=False):
            _walk(entry.path, name + "/", found)
        else:
            try:
                if not entry.is_file():  # a link to nothing is False here, and skipped
                    continue
                st = entry.stat()
            except PermissionError as e:  # a link into a folder we may not enter
                raise PermissionDeniedError(
                    f"Cannot read {entry.path}: {e.strerror}.", hint=UNREADABLE_HINT
                ) from e
            except OSError:  # a link that loops (ELOOP), or an entry gone since the listing:
                continue  # skipped as a link to nothing is
            found.append(LocalFile(entry.path, name, st.st_size, st.st_mtime_ns, st.st_ino))


_SELECT_ROWS = "SELECT path, size, mtime_ns, inode, digest, chunks, quick FROM files"
_SELECT_ROWS_NO_QUICK = "SELECT path, size, mtime_ns, inode, digest, chunks, '' FROM files"


class HashCache:
    """Digests of local files keyed by (path, size, mtime, inode), in a small SQLite file.

    For a file stored in chunks it also keeps a fast fingerprint of each chunk (xxh3-128):
    when such a file changes, a chunk whose fingerprint is unchanged keeps its sha256
    without being hashed again (see :func:`ingest`).

    >>> import tempfile, pathlib
    >>> cache = HashCache(pathlib.Path(tempfile.mkdtemp()) / "hashes.db")
    >>> f = LocalFile("/data/a.csv", "a.csv", 3, 1, 7)
    >>> cache.store([(f, ("a" * 64, ()))])
    >>> cache.lookup([f]) == {"/data/a.csv": ("a" * 64, ())}
    True
    >>> cache.lookup([LocalFile("/data/a.csv", "a.csv", 4, 1, 7)])  # the size changed
    {}
    """

    def __init__(self, path: Path | None, *, timeout: float = 30.0) -> None:
        self.path = path
        self.timeout = timeout
        self._lock = threading.Lock()
        #: The seed of this cache's chunk fingerprints: random per cache file, so that
        #: nobody who cannot read the cache knows which fingerprints it compares.
        self.seed = 0
        self._fingerprints = False  # this cache keeps them (its column and seed exist)

    def _connect(self) -> sqlite3.Connection | None:
        if self.path is None:
            return None
        try:
            return self._open()
        except sqlite3.DatabaseError as e:
            if isinstance(e, sqlite3.OperationalError):  # locked, or cannot be opened: not ours
                raise
            # Damaged (not a database, or malformed): it only spares re-reading files, so
            # it is made again rather than stopping every add.
            log.warning("The hash cache %s is damaged (%s): starting a new one.", self.path, e)
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            return self._open()

    def _open(self) -> sqlite3.Connection:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        try:
            return self._prepare(conn)
        except BaseException:
            conn.close()
            raise

    def _prepare(self, conn: sqlite3.Connection) -> sqlite3.Connection:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        # "files" replaced "hashes" (which had no chunks); an old cache's rows are ignored.
        conn.execute(
            "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER NOT NULL, "
            "mtime_ns INTEGER NOT NULL, inode INTEGER NOT NULL, digest TEXT NOT NULL, "
            "chunks TEXT NOT NULL, quick TEXT NOT NULL DEFAULT '') WITHOUT ROWID"
        )
        columns, seed = self._fingerprint_state(conn)
        if "quick" not in columns or seed is None:
            # A cache made before chunk fingerprints keeps its rows and gains them. When
            # another writer holds the file, this call goes without them (no error).
            with contextlib.suppress(sqlite3.OperationalError):
                if "quick" not in columns:
                    conn.execute("ALTER TABLE files ADD COLUMN quick TEXT NOT NULL DEFAULT ''")
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, "
                    "value INTEGER NOT NULL) WITHOUT ROWID"
                )
                conn.execute(
                    "INSERT OR IGNORE INTO settings VALUES ('seed', ?)", (secrets.randbits(63),)
                )
            columns, seed = self._fingerprint_state(conn)
        self._fingerprints = "quick" in columns and seed is not None
        self.seed = seed or 0
        return conn

    @staticmethod
    def _fingerprint_state(conn: sqlite3.Connection) -> tuple[set[str], int | None]:
        """The columns of ``files``, and the fingerprints' seed (None: not made yet)."""
        columns = {row[1] for row in conn.execute("PRAGMA table_info(files)")}
        try:
            row = conn.execute("SELECT value FROM settings WHERE key = 'seed'").fetchone()
        except sqlite3.OperationalError:  # no settings table yet
            return columns, None
        return columns, (int(row[0]) if row is not None else None)

    def lookup(self, files: list[LocalFile]) -> dict[str, Digests]:
        """Return ``{path: (digest, chunks)}`` for the files whose stat matches the cached one."""
        return self.find(files)[0]

    @contextlib.contextmanager
    def connection(self) -> Iterator[sqlite3.Connection | None]:
        """One connection for a :meth:`find` and the :meth:`store` after it, in one thread
        (each connection costs its set-up and, the last one, a checkpoint on close)."""
        with self._lock:
            conn = self._connect()
        try:
            yield conn
        finally:
            if conn is not None:
                conn.close()

    def find(
        self, files: list[LocalFile], conn: sqlite3.Connection | None = None
    ) -> tuple[dict[str, Digests], dict[str, Earlier]]:
        """Return the hits of :meth:`lookup`, and for the other files once stored in chunks
        ``{path: (chunks, fingerprints)}`` as they were when last hashed."""
        if not files:
            return {}, {}
        if conn is None:
            with self.connection() as own:
                return self.find(files, own) if own is not None else ({}, {})
        known = self._rows(conn, files)
        hits: dict[str, Digests] = {}
        earlier: dict[str, Earlier] = {}
        for f in files:
            row = known.get(f.path)
            if row is None:
                continue
            size, mtime_ns, inode, digest, chunks_text, quick_text = row
            same = size == f.size and mtime_ns == f.mtime_ns and inode == f.inode
            if same and not chunks_text and size <= CHUNKED_ABOVE:  # most files: small, whole
                hits[f.path] = (digest, ())
                continue
            chunks = tuple(chunks_text.split()) if chunks_text else ()
            if same and len(chunks) == chunk_count(f.size):
                hits[f.path] = (digest, chunks)
                continue
            quick = tuple(quick_text.split()) if quick_text else ()
            if chunks and len(quick) == len(chunks) and chunk_count(f.size):
                earlier[f.path] = (chunks, quick)
        return hits, earlier

    def _rows(
        self, conn: sqlite3.Connection, files: list[LocalFile]
    ) -> dict[str, tuple[int, int, int, str, str, str]]:
        """``{path: (size, mtime_ns, inode, digest, chunks, quick)}`` of the cached ``files``
        (and of others in their folder)."""
        columns = _SELECT_ROWS if self._fingerprints else _SELECT_ROWS_NO_QUICK
        if len(files) == 1:
            rows = conn.execute(f"{columns} WHERE path = ?", (files[0].path,))
        else:
            # One range scan over the folder instead of a query per file. The common
            # folder of the least and greatest paths holds every path (all of them cost more).
            paths = [f.path for f in files]
            low = os.path.commonpath([min(paths), max(paths)])
            rows = conn.execute(
                f"{columns} WHERE path >= ? AND path < ?", (low, low + "\U0010ffff")
            )
        return {row[0]: row[1:] for row in rows}

    def store(
        self,
        entries: list[tuple[LocalFile, Digests]],
        quick: dict[str, tuple[str, ...]] | None = None,
        *,
        seed: int = 0,
        conn: sqlite3.Connection | None = None,
    ) -> None:
        """Remember the digests of files just hashed (skipping ones modified too recently),
        with the chunk fingerprints ``quick`` gives by path, made with ``seed``."""
        horizon = time.time_ns() - RACY_WINDOW_NS
        quick = quick or {}
        rows = [
            (
                f.path,
                f.size,
                f.mtime_ns,
                f.inode,
                digest,
                " ".join(chunks),
                " ".join(quick.get(f.path, ())),
            )
            for f, (digest, chunks) in entries
            if f.mtime_ns < horizon
        ]
        if not rows:
            return
        if conn is None:
            with self.connection() as own:
                if own is not None:
                    self.store(entries, quick, seed=seed, conn=own)
            return
        try:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                if self._fingerprints and seed == self.seed:
                    conn.executemany(
                        "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?)", rows
                    )
                else:  # no fingerprints (none kept, or made with no seed or another)
                    conn.executemany(
                        "INSERT OR REPLACE INTO files "
                        "(path, size, mtime_ns, inode, digest, chunks) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        [row[:6] for row in rows],
                    )
        except sqlite3.Error:
            pass  # a cache that cannot be written only costs a re-hash next time


@dataclass(slots=True)
class IngestResult:
    """What :func:`ingest` did: the entries, and how much it read and stored."""

    entries: list[FileEntry]
    hashed_files: int = 0
    hashed_bytes: int = 0
    cached_files: int = 0
    stored_new: int = 0
    fresh: set[str] | None = None  # object digests this call stored (no presence check needed)
    kept_chunks: int = 0  # chunks of changed files read but found unchanged (not re-hashed)


def ingest(
    files: list[LocalFile],
    store: ArtifactStore,
    cache: HashCache,
    *,
    workers: int | None = None,
    progress: Progress | None = None,
    verify_hits: bool = True,
) -> IngestResult:
    """Hash and store ``files`` (skipping cache hits whose objects exist); return entries.

    A cache hit whose objects are missing from ``store`` (collected, or another store) is
    hashed and stored again, so the result always names content that is stored. With
    ``verify_hits=False`` the store is not asked: the caller confirms the objects of cache
    hits itself (those not in ``fresh``), as recording a version does under its claim on
    them, and calls again with the check when one is missing.

    A changed file stored in chunks is read whole, but a chunk whose fast fingerprint
    (xxh3-128) is the one it had when last hashed keeps its sha256 and is not hashed or
    stored again: a few bytes changed in a large file cost reading it and hashing one
    chunk. The fingerprint only decides what to hash again; what a version records is
    still the sha256 of every chunk. xxh3 is not collision-resistant, so like the stat
    cache (which skips a file whose stat did not change without reading it) this trusts
    whoever writes the files; the fingerprints' seed is random per cache (docs/data.md).
    """
    with cache.connection() as conn:
        hits, earlier = cache.find(files, conn) if conn is not None else ({}, {})
        known: dict[str, Digests]
        if verify_hits:
            wanted = {d for digest, chunks in hits.values() for d in (chunks or (digest,))}
            wanted |= {d for chunks, _ in earlier.values() for d in chunks}
            present = store.exists_many(wanted) if wanted else set()
            known = {
                path: hit
                for path, hit in hits.items()
                if all(d in present for d in (hit[1] or (hit[0],)))
            }
            # a chunk whose object is gone is hashed and stored again
            earlier = {
                path: (chunks, tuple(q if d in present else "" for d, q in pairs))
                for path, (chunks, quick) in earlier.items()
                for pairs in [zip(chunks, quick, strict=True)]
            }
        else:
            known = dict(hits)
        todo = [f for f in files if f.path not in known]
        result = IngestResult(entries=[], cached_files=len(files) - len(todo), fresh=set())
        if progress is not None and result.cached_files:
            progress(result.cached_files, sum(f.size for f in files if f.path in known))
        sizes: dict[str, int] = {}
        if todo:
            seed = cache.seed  # the one the fingerprints of ``earlier`` were made with
            hashed, quick = _hash_and_store(todo, store, workers, progress, result, earlier, seed)
            for f, (digest, chunks, size) in hashed.items():
                known[f.path] = (digest, chunks)
                sizes[f.path] = size
            entries = [(f, (digest, chunks)) for f, (digest, chunks, _) in hashed.items()]
            if conn is not None:
                cache.store(entries, quick, seed=seed, conn=conn)
    # Sizes come from the bytes actually read, which a file changed mid-add can alter.
    result.entries = [FileEntry(f.name, sizes.get(f.path, f.size), *known[f.path]) for f in files]
    return result


def _hash_and_store(
    todo: list[LocalFile],
    store: ArtifactStore,
    workers: int | None,
    progress: Progress | None,
    result: IngestResult,
    earlier: dict[str, Earlier],
    seed: int,
) -> tuple[dict[LocalFile, tuple[str, tuple[str, ...], int]], dict[str, tuple[str, ...]]]:
    """Hash and store ``todo``: small files whole, large ones chunk by chunk, all in one pool.

    Returns ``{file: (digest, chunks, size read)}`` and the chunk fingerprints by path.
    """
    fresh = result.fresh if result.fresh is not None else set()

    def whole(f: LocalFile) -> tuple[str, bool, int, str, bool]:
        with _reading(f):
            put = store.put_file(f.path, durable=False)
        if progress is not None:
            progress(1, put.size)
        return put.digest, put.created, put.size, "", False

    def chunk(f: LocalFile, index: int) -> tuple[str, bool, int, str, bool]:
        offset = index * CHUNK_BYTES
        length = min(CHUNK_BYTES, f.size - offset)
        with _reading(f), open(f.path, "rb", buffering=0) as handle:
            data = os.pread(handle.fileno(), length, offset)
        if len(data) != length:
            raise _changed_error(f)
        quick = xxhash.xxh3_128_hexdigest(data, seed)
        chunks, fingerprints = earlier.get(f.path, ((), ()))
        kept = index < len(chunks) and fingerprints[index] == quick
        if kept:
            digest, created = chunks[index], False
        else:
            put = store.put_hashed(data, sha256_bytes(data), durable=False)
            digest, created = put.digest, put.created
        if progress is not None:
            progress(1 if index == chunk_count(f.size) - 1 else 0, length)
        return digest, created, length, quick, kept

    # Chunks of large files first, then files from the largest, so that no big piece of
    # work starts last and runs alone.
    tasks: list[tuple[LocalFile, int]] = [(f, i) for f in todo for i in range(chunk_count(f.size))]
    tasks += [(f, -1) for f in sorted(todo, key=lambda f: -f.size) if not chunk_count(f.size)]

    def run(task: tuple[LocalFile, int]) -> tuple[str, bool, int, str, bool]:
        f, index = task
        return whole(f) if index < 0 else chunk(f, index)

    count = workers or min(8, max(2, os.cpu_count() or 2))
    if count == 1 or len(tasks) == 1:
        done = [run(t) for t in tasks]
    else:
        with ThreadPoolExecutor(count, thread_name_prefix="conveyor-hash") as pool:
            done = list(pool.map(run, tasks))
    out: dict[LocalFile, tuple[str, tuple[str, ...], int]] = {}
    chunks_of: dict[LocalFile, list[str]] = {}
    quick_of: dict[str, list[str]] = {}
    for (f, index), (digest, created, size, quick, kept) in zip(tasks, done, strict=True):
        if created:
            fresh.add(digest)
        result.hashed_bytes += size
        if index < 0:
            out[f] = (digest, (), size)
        else:
            chunks_of.setdefault(f, []).append(digest)
            quick_of.setdefault(f.path, []).append(quick)
            result.kept_chunks += kept
    for f, chunks in chunks_of.items():
        _check_unchanged(f)
        out[f] = (chunked_digest(chunks), tuple(chunks), f.size)
    result.hashed_files = len(out)
    result.stored_new = len(fresh)
    return out, {path: tuple(q) for path, q in quick_of.items()}


class _reading:
    """Turns the errors of reading a file being added into ones that name it."""

    def __init__(self, f: LocalFile) -> None:
        self.f = f

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, error: BaseException | None, tb: object) -> None:
        if isinstance(error, PermissionError):
            raise PermissionDeniedError(
                f"Cannot read {self.f.path}: {error.strerror}.", hint=UNREADABLE_HINT
            ) from error
        if isinstance(error, FileNotFoundError):
            raise NotFoundError(
                f"{self.f.path} disappeared while it was being added.",
                hint="Add again once nothing else is changing the folder.",
            ) from None


def _changed_error(f: LocalFile) -> ConflictError:
    return ConflictError(
        f"{f.path} changed while it was being added, so no consistent copy of it was read.",
        hint="Add again once nothing else is writing to it.",
    )


def _check_unchanged(f: LocalFile) -> None:
    """Raise if a file read in chunks was written to meanwhile (its chunks could mix)."""
    try:
        st = os.stat(f.path)
    except FileNotFoundError:
        raise _changed_error(f) from None
    if (st.st_size, st.st_mtime_ns, st.st_ino) != (f.size, f.mtime_ns, f.inode):
        raise _changed_error(f)
