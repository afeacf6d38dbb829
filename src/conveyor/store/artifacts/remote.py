"""Objects on any fsspec filesystem: S3 (s3fs), memory, GCS, Azure.

Object stores publish an object only when its upload completes, so a single ``put`` is
atomic there; a killed writer leaves at most an unfinished multipart upload, never an object.
"""

from __future__ import annotations

import os
import tempfile
import threading
import weakref
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from conveyor.core.errors import (
    BackendUnavailableError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
)
from conveyor.core.processes import alive
from conveyor.core.uris import redact_uri
from conveyor.store.artifacts.backend import ObjectInfo

__all__ = ["FsspecBackend"]


def _storage_options(protocol: str) -> dict[str, Any]:
    options: dict[str, Any] = {"skip_instance_cache": True}
    if protocol == "s3":
        options["use_listings_cache"] = False
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            options["client_kwargs"] = {"endpoint_url": endpoint}
    return options


#: Schemes whose first path part is a bucket (or container) that must exist.
_BUCKETS = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs"})


def _refuse_options_in(uri: str) -> None:
    """Refuse ``s3://bucket/prefix?endpoint_url=...``: fsspec would take the query as part of
    the object keys, so objects would land under a prefix nobody meant."""
    from urllib.parse import parse_qsl, urlsplit

    parts = urlsplit(uri)
    if not parts.query and not parts.fragment:
        return
    keys = sorted({k for k, _ in parse_qsl(parts.query, keep_blank_values=True)}) or ["?/#"]
    plain = redact_uri(parts._replace(query="", fragment="").geturl())
    s3 = parts.scheme.lower() in ("s3", "s3a")
    raise InvalidArgumentError(
        f"The artifact store URI {plain!r} is followed by options ({', '.join(keys)}); "
        "Conveyor takes none in the URI and would read them as part of the object keys.",
        hint=(
            "Write the URI without '?...' and set AWS_ENDPOINT_URL for an S3-compatible "
            "server (credentials as boto reads them)."
            if s3
            else "Write the URI without '?...' or '#...'."
        ),
    )


class FsspecBackend:
    """A prefix on an fsspec filesystem, e.g. ``s3://bucket/conveyor`` or ``memory://tests``."""

    def __init__(self, uri: str, **storage_options: Any) -> None:
        _refuse_options_in(uri)
        self.uri = uri.rstrip("/")
        self.storage_options = storage_options
        self._fs: Any = None
        self._root = ""
        self._fs_lock = threading.Lock()
        _track(self)

    def __repr__(self) -> str:
        return f"FsspecBackend({self.uri!r})"

    def __getstate__(self) -> dict[str, Any]:
        # A lock does not pickle: a store handed to another process (a spawned worker, Ray)
        # gets a lock of its own there.
        state = self.__dict__.copy()
        del state["_fs_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._fs_lock = threading.Lock()
        _track(self)

    @property
    def fs(self) -> Any:
        """The fsspec filesystem, created on first use (once, however many threads ask)."""
        if self._fs is not None:
            return self._fs
        # Many threads ask at once (a transfer's existence checks): each would otherwise make
        # its own filesystem and S3 client, a fraction of a second of CPU apiece, one after
        # another on fsspec's event loop.
        with self._fs_lock:
            if self._fs is not None:
                return self._fs
            import fsspec
            from fsspec.core import split_protocol

            protocol, _ = split_protocol(self.uri)
            protocol = protocol or "file"
            options = {**_storage_options(protocol), **self.storage_options}
            try:
                fs, root = fsspec.core.url_to_fs(self.uri, **options)
            except ImportError as e:
                raise BackendUnavailableError(
                    f"The artifact store {self.uri!r} needs a package that is not installed "
                    f"({e.name or e}).",
                    hint=_INSTALL.get(protocol, f"Install the fsspec package for {protocol}://."),
                ) from e
            self._root = root.rstrip("/")
            self._fs = fs
        return self._fs

    def _path(self, key: str) -> str:
        _ = self.fs  # sets self._root on first use
        return f"{self._root}/{key}"

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FileNotFoundError:
            raise
        except PermissionError as e:
            raise PermissionDeniedError(
                f"The artifact store {self.uri!r} refused to {what}: {e}.",
                hint="Check the credentials and the bucket policy.",
            ) from e
        except (OSError, ConnectionError) as e:
            raise BackendUnavailableError(
                f"The artifact store {self.uri!r} failed to {what}: {e}.",
                hint="Check the endpoint, the bucket and the credentials.",
            ) from e
        except Exception as e:
            # The AWS SDK's own errors (no credentials, a bad endpoint) are not OSErrors.
            if type(e).__module__.split(".")[0] not in ("botocore", "aiobotocore"):
                raise
            if "Credentials" in type(e).__name__:
                raise PermissionDeniedError(
                    f"The artifact store {self.uri!r} has no credentials to {what} with: {e}.",
                    hint="Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE.",
                ) from e
            raise BackendUnavailableError(
                f"The artifact store {self.uri!r} failed to {what}: {e}.",
                hint="Check the endpoint, the bucket and the credentials.",
            ) from e

    def exists(self, key: str) -> bool:
        return bool(self._call("check an object", self.fs.exists, self._path(key)))

    def absence(self) -> str | None:
        """Why this store cannot hold anything, if so: its bucket does not exist."""
        from fsspec.core import split_protocol

        if (split_protocol(self.uri)[0] or "").lower() not in _BUCKETS:
            return None
        bucket = self._path("").split("/", 1)[0]
        if self._call("check the bucket", self.fs.exists, bucket):
            return None
        return f"names the bucket {bucket!r}, which does not exist"

    def size(self, key: str) -> int:
        try:
            return int(self._call("read an object's size", self.fs.size, self._path(key)))
        except FileNotFoundError:
            raise NotFoundError(f"No object {key!r} in {self.uri}.") from None

    def open(self, key: str) -> BinaryIO:
        try:
            return self._call("open an object", self.fs.open, self._path(key), "rb")
        except FileNotFoundError:
            raise NotFoundError(f"No object {key!r} in {self.uri}.") from None

    def put_bytes(self, key: str, data: bytes) -> None:
        try:
            self._call("write an object", self.fs.pipe_file, self._path(key), data)
        except FileNotFoundError as e:
            raise self._no_bucket(e) from None

    def put_file(self, key: str, path: Path, *, move: bool = False) -> None:
        try:
            self._call("upload an object", self.fs.put_file, str(path), self._path(key))
        except FileNotFoundError as e:
            if not Path(path).exists():
                raise
            raise self._no_bucket(e) from None
        if move:
            Path(path).unlink(missing_ok=True)

    def _no_bucket(self, error: FileNotFoundError) -> NotFoundError:
        """A write refused because where it goes does not exist (S3: the bucket)."""
        return NotFoundError(
            f"Cannot write to the artifact store {self.uri!r}: {error.strerror or error}.",
            hint="Create the bucket first (e.g. `aws s3 mb s3://BUCKET`), or check the URI.",
        )

    def delete(self, key: str) -> None:
        try:
            self._call("delete an object", self.fs.rm_file, self._path(key))
        except FileNotFoundError:
            return

    def touch(self, key: str) -> None:
        # Object stores cannot refresh a modification time in place; gc's re-check under the
        # artifacts row lock (see gc.py) keeps content that is being linked.
        return None

    def walk(self) -> Iterator[ObjectInfo]:
        root = self._path("")[:-1]
        try:
            found = self._call("list objects", self.fs.find, root, detail=True)
        except FileNotFoundError:
            return
        prefix = root.rstrip("/") + "/"
        for path, info in sorted(found.items()):
            if info.get("type") == "directory":
                continue
            key = path[len(prefix) :] if path.startswith(prefix) else path
            if key.startswith(".") or "/" not in key:
                continue
            yield ObjectInfo(key=key, size=int(info.get("size") or 0), modified=_modified(info))

    def staging_dir(self) -> Path:
        return _private_staging()

    def local_path(self, key: str) -> Path | None:
        return None

    def cleanup_staging(self, older_than: datetime) -> int:
        return 0


def _modified(info: dict[str, Any]) -> datetime | None:
    for name in ("LastModified", "mtime", "created", "last_modified"):
        value = info.get(name)
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        if isinstance(value, int | float):
            return datetime.fromtimestamp(value, UTC)
    return None


# fsspec's async filesystems (s3fs) refuse to work in a forked child ("not fork-safe"): a
# forked process (a pipeline's worker, a multiprocessing pool) makes its own on first use.
_backends: weakref.WeakSet[FsspecBackend] = weakref.WeakSet()
_fork_hook: list[bool] = []


def _track(backend: FsspecBackend) -> None:
    _backends.add(backend)
    if not _fork_hook:
        os.register_at_fork(after_in_child=_after_fork_in_child)
        _fork_hook.append(True)


def _after_fork_in_child() -> None:
    for backend in list(_backends):
        backend._fs = None
        backend._fs_lock = threading.Lock()  # one a parent's thread held stays held here


#: What to install for the fsspec protocols people use most.
_INSTALL = {
    "s3": "pip install 'conveyor-mlops[s3]'",
    "gs": "pip install gcsfs",
    "gcs": "pip install gcsfs",
    "az": "pip install adlfs",
    "abfs": "pip install adlfs",
    "abfss": "pip install adlfs",
}

_staging: list[tuple[int, Path]] = []
_STAGING_PREFIX = "conveyor-staging-"
#: How long the staging folder of a process that is gone stays untouched before another
#: process removes it (a margin for a process of another PID namespace sharing the folder).
_ABANDONED_AFTER = 3600.0


def _private_staging() -> Path:
    """A folder only this user can enter, for this process's partial downloads and uploads.

    Not the shared temporary folder itself: there, another user could guess a file's name
    and plant a link where Conveyor is about to write. Removed when the process that made
    it exits (a forked child makes its own); the folders of processes killed before they
    could (a cancelled CI job's push, up to the objects in flight) by the next one.
    """
    pid = os.getpid()
    # A folder removed under a live process (by a process of another PID namespace sharing
    # the temporary folder, or a cleaner of old files) is made again, not written into.
    if not _staging or _staging[-1][0] != pid or not _staging[-1][1].is_dir():
        import atexit
        import shutil

        # mode 0700; named by the process, so that the next one can tell it is gone
        folder = Path(tempfile.mkdtemp(prefix=f"{_STAGING_PREFIX}{pid}-"))
        _staging.append((pid, folder))
        _remove_abandoned(folder)

        def remove() -> None:
            if os.getpid() == pid:  # not a forked child's: it inherits these hooks
                shutil.rmtree(folder, ignore_errors=True)

        atexit.register(remove)
        # A multiprocessing child (a pipeline worker) leaves with os._exit, past atexit, but
        # runs multiprocessing's finalizers first.
        from multiprocessing import util

        util.Finalize(None, remove, exitpriority=0)
    return _staging[-1][1]


def _remove_abandoned(own: Path) -> None:
    """Remove this user's staging folders beside ``own`` whose process is gone and that
    were untouched for :data:`_ABANDONED_AFTER` seconds."""
    import shutil
    import stat
    import time

    getuid = getattr(os, "getuid", None)
    if getuid is None:  # no owners to check (Windows): leave them
        return
    uid, now = getuid(), time.time()
    try:
        entries = list(os.scandir(own.parent))
    except OSError:
        return
    for entry in entries:
        owner = entry.name.removeprefix(_STAGING_PREFIX).partition("-")[0]
        if entry.name == own.name or not entry.name.startswith(_STAGING_PREFIX):
            continue
        if not owner.isdigit() or alive(int(owner)):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != uid:
                continue
            touched = max([info.st_mtime, *(e.stat().st_mtime for e in os.scandir(entry.path))])
        except OSError:
            continue
        if now - touched >= _ABANDONED_AFTER:
            shutil.rmtree(entry.path, ignore_errors=True)
