"""The data service of a workspace: add, load, materialize, check out, diff and validate.

One :class:`DataService` per workspace (``ws.service("data", DataService)``); the functions in
:mod:`conveyor.data` call the one of the workspace in use.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import gc
import itertools
import logging
import os
import shutil
import stat as stat_module
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from conveyor.core import ids
from conveyor.core.errors import (
    ConflictError,
    ConveyorError,
    IntegrityError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
)
from conveyor.core.hashing import sha256_bytes
from conveyor.core.paths import check_usable_path
from conveyor.core.processes import alive, host_tag
from conveyor.data import tables, versioning
from conveyor.data.ingest import HashCache, ingest, scan
from conveyor.data.records import DatasetVersion, FileEntry, Manifest
from conveyor.store import catalog
from conveyor.store.activity import current_activity, note_read
from conveyor.store.artifacts.cas import ArtifactStore, key_of
from conveyor.store.records import ArtifactLink, ObjectRef
from conveyor.store.workspace import Workspace, current_workspace

if TYPE_CHECKING:
    import pandas as pd
    import pandera.pandas as pa

    from conveyor.data.compare import DatasetDiff
    from conveyor.data.transfer import TransferResult
    from conveyor.data.validation import ValidationReport

__all__ = ["DataService", "ProgressReporter", "check_path_given", "data_service"]

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
SCHEMA = "schema.yaml"
#: The names a team server gives a version's files and the chunks of its large files, for
#: reading them one by one (it finds their digests in the version's manifest).
FILES = "files/"
CHUNKS = "chunks/"
CHUNK_MEDIA_TYPE = "application/octet-stream"
#: How many file names a server's data service keeps looked up for serving files.
_SERVED_NAMES_KEPT = 200_000


class ProgressReporter(Protocol):
    """Receives progress of long operations (the CLI draws a Rich progress bar)."""

    def start(self, description: str, files: int, size: int) -> None: ...

    def advance(self, files: int, size: int) -> None: ...

    def stop(self) -> None: ...


class _NoProgress:
    def start(self, description: str, files: int, size: int) -> None:
        pass

    def advance(self, files: int, size: int) -> None:
        pass

    def stop(self) -> None:
        pass


class _Served:
    """What a team server serves of one version file by file, found in its manifest by name.

    Its names sort as ``chunks/<digest>`` (the distinct chunks of large files) before
    ``files/<path>`` (each file stored whole, in the manifest's order, which is by path);
    a lookup or a page is a binary search, and no name is built until it is asked for.
    """

    __slots__ = ("_chunk_names", "_chunk_sizes", "_files")

    def __init__(self, manifest: Manifest) -> None:
        self._files = [f for f in manifest.files if not f.chunks]  # sorted by path
        self._chunk_sizes: dict[str, int] = {}
        for f in manifest.files:
            for i, digest in enumerate(f.chunks):
                self._chunk_sizes.setdefault(digest, f.chunk_size(i))
        self._chunk_names = sorted(CHUNKS + digest for digest in self._chunk_sizes)

    def __len__(self) -> int:
        return len(self._files) + len(self._chunk_names)

    def get(self, name: str) -> tuple[str, int, str] | None:
        """``(digest, size, media type)`` of ``name``, or None."""
        if name.startswith(CHUNKS):
            digest = name[len(CHUNKS) :]
            size = self._chunk_sizes.get(digest)
            return (digest, size, CHUNK_MEDIA_TYPE) if size is not None else None
        if not name.startswith(FILES):
            return None
        path = name[len(FILES) :]
        at = bisect.bisect_left(self._files, path, key=_path_of)
        if at == len(self._files) or self._files[at].path != path:
            return None
        f = self._files[at]
        return f.digest, f.size, catalog.guess_media_type(f.path)

    def page(self, after: str | None, limit: int | None) -> list[tuple[str, str, int, str]]:
        """``(name, digest, size, media type)`` of the names after ``after`` (all of them
        when None), in order, at most ``limit`` (all when None)."""
        room = len(self) if limit is None else max(limit, 0)
        out: list[tuple[str, str, int, str]] = []
        start = 0 if after is None else bisect.bisect_right(self._chunk_names, after)
        for name in itertools.islice(self._chunk_names, start, start + room):
            digest = name[len(CHUNKS) :]
            out.append((name, digest, self._chunk_sizes[digest], CHUNK_MEDIA_TYPE))
        room -= len(out)
        start = 0 if after is None else bisect.bisect_right(self._files, after, key=_served_as)
        for f in itertools.islice(self._files, start, start + room):
            out.append((FILES + f.path, f.digest, f.size, catalog.guess_media_type(f.path)))
        return out


assert CHUNKS < FILES  # every chunk's name sorts before every file's (see _Served)


def _path_of(f: FileEntry) -> str:
    return f.path


def _served_as(f: FileEntry) -> str:
    return FILES + f.path


#: The modification time :meth:`DataService.path` gives the files it materializes (the
#: start of 2000, UTC): a file whose time differs was written to since.
MATERIALIZED_MTIME_NS = 946_684_800 * 1_000_000_000


def _as_materialized(folder: Path, manifest: Manifest) -> bool:
    """Whether ``folder`` holds exactly the files of ``manifest``, each with its size and
    the time it was materialized with (a stat each: no file is read). A file that is not
    the version's (written there since) makes it not so; hidden entries are let be, as an
    add skips them."""
    expected = {entry.path: entry.size for entry in manifest.files}
    seen = 0
    pending = [(str(folder), "")]
    while pending:
        where, prefix = pending.pop()
        try:
            entries = list(os.scandir(where))
        except OSError:
            return False
        for entry in entries:
            name = prefix + entry.name
            size = expected.get(name)
            if size is None:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    pending.append((entry.path, name + "/"))
                    continue
                return False  # not one of the version's files
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                return False
            if (
                not stat_module.S_ISREG(st.st_mode)
                or st.st_size != size
                or st.st_mtime_ns != MATERIALIZED_MTIME_NS
            ):
                return False
            seen += 1
    return seen == len(expected)


def _checkout_temp_name(target: Path) -> str:
    """The hidden folder a checkout into ``target`` writes first: named by this host and
    process, so that a later checkout can tell when the one that made it was killed."""
    return f".{target.name}.{host_tag()}-{os.getpid()}-{ids.new_id()}.part"


def _sweep_killed_checkouts(target: Path, *, inside: bool = True) -> None:
    """Remove what checkouts into ``target`` killed on this host left (inside it, unless not
    ``inside``, or beside it): a hidden folder that may hold gigabytes, and that made
    ``target`` look not empty."""
    import re

    made = re.compile(rf"\.{re.escape(target.name)}\.([0-9a-f]{{8}})-(\d+)-[0-9A-Z]{{26}}\.part")
    here = host_tag()
    for folder in (target, target.parent) if inside else (target.parent,):
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            found = made.fullmatch(entry.name)
            if found is None or found[1] != here or alive(int(found[2])):
                continue
            if entry.is_dir(follow_symlinks=False):
                log.info("conveyor: removing %s, left by a checkout that was killed", entry.path)
                shutil.rmtree(entry.path, ignore_errors=True)


def _replace_visible(target: Path, fresh: Path, replaced: list[str]) -> None:
    """Put the entries of ``fresh`` in ``target`` in place of its entries ``replaced`` (the
    ones not hidden). The old ones are moved aside first and removed once all is in place;
    if a move fails, or Ctrl-C stops them, what was moved is put back before the error goes
    on."""
    old = target / f".{target.name}.{ids.new_id()}.old"  # inside: the same file system
    old.mkdir()
    incoming = os.listdir(fresh)
    try:
        for name in replaced:
            os.rename(target / name, old / name)
        for name in incoming:
            os.rename(fresh / name, target / name)
    except BaseException as e:  # KeyboardInterrupt too: no half-replaced folder
        # What was moved is read from the folders, not counted as it went: a Ctrl-C can
        # land between a rename and its count.
        for name in incoming:
            if not os.path.lexists(fresh / name):
                with contextlib.suppress(OSError):
                    os.rename(target / name, fresh / name)
        lost = []
        for name in os.listdir(old):
            try:
                os.rename(old / name, target / name)
            except OSError:
                lost.append(name)
        if lost:
            stopped = (
                "was interrupted"
                if isinstance(e, KeyboardInterrupt)
                else f"failed ({getattr(e, 'strerror', None) or e!r})"
            )
            raise ConflictError(
                f"Checking out into {target} {stopped}, and {len(lost)} of its entries could "
                f"not be put back: they are in {old}.",
                hint="Move them back by hand.",
            ) from e
        old.rmdir()
        raise
    # All is in place: what ``old`` holds is garbage now. Renamed as a checkout's temporary
    # folder first, so that one stopped while removing it (Ctrl-C, a kill) is swept by the
    # next checkout. (Not before: until then it holds the entries a rollback puts back.)
    gone = target / _checkout_temp_name(target)
    try:
        os.rename(old, gone)
    except OSError:
        gone = old
    shutil.rmtree(gone, ignore_errors=True)


def _read_table(
    fmt: str, sources: list[Any], names: list[str] | None = None
) -> tuple[Any, str | None]:
    """The files ``sources`` read as one table of format ``fmt``, or None and why not."""
    try:
        return tables.read_table(fmt, sources, names), None
    except InvalidArgumentError as e:
        return None, e.message


def _changed_since_scan(f: Any) -> bool:
    """Whether the file ``f`` (a scanned LocalFile) is not as the scan saw it: written to,
    replaced or removed since."""
    try:
        st = os.stat(f.path)
    except OSError:
        return True
    return (st.st_size, st.st_mtime_ns, st.st_ino) != (f.size, f.mtime_ns, f.inode)


def check_path_given(name: str, data: Any) -> None:
    """Refuse an empty path to add: Path("") is the current folder, so an unset variable
    (``conveyor data add raw "$DATA"``) would version all of it."""
    if isinstance(data, str) and not data.strip():
        raise InvalidArgumentError(
            f"Cannot add {data!r} to {name}: the path is empty.",
            hint="Name the file or folder to add (. for the current folder).",
        )


def _store_again(version: DatasetVersion) -> str:
    """How a file of ``version`` that a store lost (or held damaged) is stored again."""
    again = (
        f"add the same table again (cv.data.add({version.name!r}, df))"
        if version.source == "<table>"
        else f"add the original files again (conveyor data add {version.name} PATH)"
    )
    return (
        f"Fetch it from a remote that has it: conveyor data pull {version.ref} (from Python: "
        f"cv.data.pull({version.ref!r})), or {again}"
    )


def _local_stores(settings: Any) -> list[Path]:
    """The folders and files on this machine that ``settings`` keep data in (the metadata
    and online SQLite files, the artifact, log and remote folders), resolved."""
    from conveyor.store.metadata.engine import sqlite_path

    found = []
    for key in ("store_uri", "artifact_uri", "remote_uri", "online_uri", "log_uri"):
        value = str(getattr(settings, key, "") or "")
        if value.startswith("sqlite:"):
            path = sqlite_path(value)
        elif value.startswith("file://"):
            path = Path(value.removeprefix("file://"))
        elif value and "://" not in value:
            path = Path(value)
        else:
            path = None
        if path is not None:
            found.append((path if path.is_absolute() else settings.root / path).resolve())
    return found


def data_service(ws: Workspace | None = None) -> DataService:
    """Return the data service of ``ws`` (default: the workspace in use)."""
    ws = ws or current_workspace()
    if ws.remote is not None:
        from conveyor.data.remote import RemoteDataService

        return ws.service("data", RemoteDataService)
    return ws.service("data", DataService)


class DataService:
    """Dataset versions of one workspace."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.cache = HashCache(ws.settings.state_dir / "cache" / "hashes.db")
        # What a server serves of versions file by file, by manifest digest (see
        # file_artifact): manifests never change, so neither does this.
        self._served_by_digest: OrderedDict[str, _Served] = OrderedDict()
        self._served_lock = threading.Lock()

    @property
    def store(self) -> ArtifactStore:
        return self.ws.artifacts

    def _project_id(self) -> str:
        return self.ws.project.id

    # -- adding ----------------------------------------------------------------------------

    def add(
        self,
        name: str,
        data: Any,
        *,
        description: str = "",
        progress: ProgressReporter | None = None,
    ) -> DatasetVersion:
        """Add a version of dataset ``name`` from a file, a folder, or a DataFrame/Arrow table."""
        versioning.validate_dataset_name(name)
        progress = progress or _NoProgress()
        check_path_given(name, data)
        if isinstance(data, str | os.PathLike):
            return self._add_path(name, Path(data), description, progress)
        table = tables.table_to_add(data, name)
        return self._add_table(name, table, description)

    def add_files(
        self, name: str, root: Path, *, description: str = "", source: str
    ) -> DatasetVersion:
        """Add the files under ``root`` as a version, recording ``source`` as where they came
        from (a team server adds uploads this way, naming the uploader, not its temp folder)."""
        versioning.validate_dataset_name(name)
        return self._add_path(name, root, description, _NoProgress(), source=source)

    def _add_path(
        self,
        name: str,
        root: Path,
        description: str,
        progress: ProgressReporter,
        *,
        source: str | None = None,
    ) -> DatasetVersion:
        # Not for a server's adds (source set, a worker thread): the collector is the whole
        # process's, and other requests run meanwhile.
        alone = source is None and threading.current_thread() is threading.main_thread()
        with _no_gc_pauses() if alone else contextlib.nullcontext():
            return self._add_scanned(name, root, description, progress, source)

    def _add_scanned(
        self,
        name: str,
        root: Path,
        description: str,
        progress: ProgressReporter,
        source: str | None,
    ) -> DatasetVersion:
        files = scan(root)
        self._project_id()  # the store and project answer before any file is read
        if not files:
            raise InvalidArgumentError(
                f"Cannot add {root}: the folder holds no files (hidden files are skipped)."
            )
        progress.start(f"Adding {name}", len(files), sum(f.size for f in files))
        try:
            # The store is asked about the objects of unchanged files once, by _record
            # (a stat each here, a request each on S3), not also here; when one is missing
            # (collected, or lost), the files go through again with the check, which
            # stores what is missing.
            result = ingest(
                files,
                self.store,
                self.cache,
                progress=lambda n, b: progress.advance(n, b),
                verify_hits=False,
            )
        finally:
            progress.stop()
        origin = source if source is not None else str(root.resolve())
        values: dict[str, Any] = {"kind": "files", "source": origin[:2000]}
        fmt = tables.table_format_of([f.name for f in files])
        if fmt is not None:
            table, problem = _read_table(fmt, [f.path for f in files])
            if any(map(_changed_since_scan, files)):
                # Written to while it was added: the rows, columns and profile must be those
                # of the bytes this version stores, not of what the file holds now.
                import pyarrow as pa

                stored = [pa.BufferReader(assemble(e, self.store.get)) for e in result.entries]
                table, problem = _read_table(fmt, stored, [f.path for f in files])
            if table is not None:
                values.update(self._table_values(table, fmt))
            else:  # malformed, or files of different columns
                log.warning("%s is versioned as files, not as one table: %s", name, problem)
        try:
            return self._record(
                name, Manifest.of(result.entries), values, description, checked=_not_fresh(result)
            )
        except catalog.ContentMissingError:
            result = ingest(files, self.store, self.cache)
            return self._record(
                name, Manifest.of(result.entries), values, description, checked=_not_fresh(result)
            )

    def _add_table(self, name: str, table: Any, description: str) -> DatasetVersion:
        put = self.store.put_bytes(tables.write_parquet(table))
        manifest = Manifest.of([FileEntry("data.parquet", put.size, put.digest)])
        values = {"source": "<table>", **self._table_values(table, "parquet")}
        checked = set() if put.created else {put.digest}
        return self._record(name, manifest, values, description, checked=checked)

    @staticmethod
    def _table_values(table: Any, fmt: str) -> dict[str, Any]:
        return {
            "kind": "table",
            "table_format": fmt,
            "rows": table.num_rows,
            "columns": {
                n: str(t) for n, t in zip(table.column_names, table.schema.types, strict=True)
            },
            "profile": tables.profile_table(table),
        }

    def _record(
        self,
        name: str,
        manifest: Manifest,
        values: dict[str, Any],
        description: str,
        *,
        checked: set[str],
    ) -> DatasetVersion:
        """Record a version of ``manifest``. ``checked`` are the objects of its files this
        add did not store itself, which must be confirmed in the store."""
        encoded = manifest.encode()
        put = self.store.put_bytes(encoded)
        manifest_checked = set() if put.created else {put.digest}
        values = {**values, "digest": put.digest, "files": len(manifest.files)}
        values["size"] = manifest.size
        run = current_activity()
        with self.ws.metadata.transaction(project_id=self._project_id()) as uow:
            version, created, dataset_id = versioning.create_version(
                uow, self._project_id(), name, values, description=description
            )
            ref = ObjectRef(versioning.VERSION_KIND, version.id)
            if created:
                # The version links its manifest; the dataset holds the files of all its
                # versions, so a version that changes one file of a thousand adds one row.
                manifest_link = (MANIFEST, put.digest, put.size, "application/json")
                catalog.link_many(uow, self.store, ref, [manifest_link], check=manifest_checked)
                catalog.hold_many(
                    uow,
                    self.store,
                    ObjectRef(versioning.DATASET_KIND, dataset_id),
                    _objects(manifest),
                    check=checked,
                )
            else:  # the same content as a version: its objects must still be there
                catalog.check_stored(self.store, manifest_checked | checked)
            if run is not None and created:  # a version has one producer: what created it
                uow.link(run, ref, "produced")
        return version

    # -- reading ---------------------------------------------------------------------------

    def get(self, ref: str) -> DatasetVersion:
        """Return the version ``ref`` names (``name@3``, ``name@latest``, ``name@<digest>``)."""
        with self.ws.metadata.read() as conn:
            return versioning.find_version(conn, self._project_id(), ref)

    def refs(self, version_ids: Iterable[str]) -> dict[str, str]:
        """Return the reference (``customers@3``) of each version id, by id; ids of no
        version of this project are left out. For showing lineage, which holds ids."""
        with self.ws.metadata.read() as conn:
            return versioning.refs_by_id(conn, self._project_id(), sorted(set(version_ids)))

    def versions(self, name: str) -> list[DatasetVersion]:
        """Return the versions of dataset ``name``, newest first."""
        versioning.validate_dataset_name(name)
        with self.ws.metadata.read() as conn:
            found = versioning.list_versions(conn, self._project_id(), name)
        if not found:
            self.get(name)  # raises the "no dataset named" error with the known names
        return found

    def datasets(self) -> list[Any]:
        """Return the datasets of the project, sorted by name."""
        with self.ws.metadata.read() as conn:
            return versioning.list_datasets(conn, self._project_id())

    def manifest(self, version: DatasetVersion) -> Manifest:
        """Return the files of ``version`` (read from the artifact store, verified)."""
        try:
            return Manifest.decode(self.store.get(version.digest))
        except NotFoundError:
            raise NotFoundError(
                f"The file list of {version.ref} ({version.digest[:12]}) is not in the artifact "
                f"store {self._where}.",
                hint=f"{_store_again(version)}.",
            ) from None
        except IntegrityError as e:
            raise IntegrityError(
                f"The file list of {version.ref} ({version.digest[:12]}) is corrupted in the "
                f"artifact store {self._where}: {e.message}",
                hint=f"Replace it from a remote that has it: conveyor data pull {version.ref} "
                "--verify (from Python: cv.data.pull(verify=True)).",
            ) from None

    def _used(self, version: DatasetVersion, ref: str) -> None:
        note_read("dataset", ref, version.id)
        run = current_activity()
        if run is None:
            return
        with self.ws.metadata.transaction(project_id=self._project_id()) as uow:
            uow.link(ObjectRef(versioning.VERSION_KIND, version.id), run, "used_by")

    def file_artifact(self, version_id: str, name: str) -> ArtifactLink | None:
        """Return the object a team server serves as ``name`` of version ``version_id``:
        ``files/<path>`` is a whole file, ``chunks/<digest>`` a chunk of a large one; both
        are found in the version's manifest. None when the version has no such object."""
        version = self._version_by_id(version_id)
        if version is None:
            return None
        found = self._served(version).get(name)
        if found is None:
            return None
        owner = ObjectRef(versioning.VERSION_KIND, version.id)
        return ArtifactLink(owner, name, *found, created_at=version.created_at)

    def file_artifacts(
        self, version_id: str, *, after: str | None = None, limit: int | None = None
    ) -> list[ArtifactLink]:
        """The objects a team server serves of version ``version_id`` file by file (see
        :meth:`file_artifact`), sorted by name: those named after ``after``, at most
        ``limit`` of them. Empty when there is no such version."""
        version = self._version_by_id(version_id)
        if version is None:
            return []
        owner = ObjectRef(versioning.VERSION_KIND, version.id)
        return [
            ArtifactLink(owner, name, digest, size, media_type, created_at=version.created_at)
            for name, digest, size, media_type in self._served(version).page(after, limit)
        ]

    def _version_by_id(self, version_id: str) -> DatasetVersion | None:
        with self.ws.metadata.read() as conn:
            return versioning.version_by_id(conn, self._project_id(), version_id)

    def _served(self, version: DatasetVersion) -> _Served:
        """What a server serves of ``version`` file by file; kept for the versions asked
        about last, up to a number of names (a page of a large version's listing, or one of
        its files, then costs a lookup, not reading its manifest again)."""
        with self._served_lock:
            found = self._served_by_digest.get(version.digest)
            if found is not None:
                self._served_by_digest.move_to_end(version.digest)
                return found
        found = _Served(self.manifest(version))
        with self._served_lock:
            self._served_by_digest[version.digest] = found
            kept = sum(len(n) for n in self._served_by_digest.values())
            # The last one asked about stays, however large: its listing goes page by page.
            while kept > _SERVED_NAMES_KEPT and len(self._served_by_digest) > 1:
                kept -= len(self._served_by_digest.popitem(last=False)[1])
        return found

    def load(self, ref: str) -> pd.DataFrame:
        """Return a table version as a pandas DataFrame (recorded as used by the active run)."""
        return self.load_arrow(ref).to_pandas()

    def load_arrow(self, ref: str) -> Any:
        """Return a table version as a pyarrow Table."""
        version = self.get(ref)
        manifest = self.manifest(version)
        fmt = version.table_format or tables.table_format_of([f.path for f in manifest.files])
        if fmt is None:
            kinds = sorted({Path(f.path).suffix or "(none)" for f in manifest.files})[:5]
            raise InvalidArgumentError(
                f"{version.ref} is not a table: its files have the types {', '.join(kinds)}; "
                f"load reads {tables.supported_formats()}.",
                hint=f"Get the files instead: conveyor data checkout {version.ref} DEST, or "
                f"cv.data.path({version.ref!r}) from Python.",
            )
        import pyarrow as pa

        # Parquet readers seek, so each file is read whole and verified first.
        buffers = [pa.BufferReader(self._read_file(version, f)) for f in manifest.files]
        names = [f"{f.path} of {version.ref}" for f in manifest.files]
        table = tables.read_table(fmt, buffers, names)
        if fmt == "parquet":
            table = tables.restore_categories(table)
        self._used(version, ref)
        return table

    def _read_file(self, version: DatasetVersion, entry: FileEntry) -> bytes | bytearray:
        try:
            return assemble(entry, self.store.get)
        except IntegrityError as e:
            raise self._damaged(version, entry, e) from e
        except NotFoundError:
            raise NotFoundError(
                f"The file {entry.path} of {version.ref} is not in the artifact store "
                f"{self._where}.",
                hint=f"{_store_again(version)}.",
            ) from None

    def path(self, ref: str, *, progress: ProgressReporter | None = None) -> Path:
        """Return a local folder holding the version's files, materialized on first use.

        The folder is shared by every version with the same content. Its files are
        read-only, and each use checks that none was changed since (its size and the
        modification time it was given, :data:`MATERIALIZED_MTIME_NS`) and that no other
        file was written there: a folder whose files were edited, lost or added to is
        materialized again. Use :meth:`checkout` for a copy
        to change.
        """
        version = self.get(ref)
        manifest = self.manifest(version)
        final = self.ws.settings.state_dir / "cache" / "datasets" / version.digest
        if not (final.is_dir() and _as_materialized(final, manifest)):
            final.parent.mkdir(parents=True, exist_ok=True)
            from filelock import FileLock

            # One process at a time checks and mends it: none removes a folder another
            # has just mended and handed out.
            with FileLock(f"{final}.lock"):
                self._mend(version, manifest, final, progress)
        self._used(version, ref)
        return final

    def _mend(
        self,
        version: DatasetVersion,
        manifest: Manifest,
        final: Path,
        progress: ProgressReporter | None,
    ) -> None:
        """Materialize ``version`` as ``final``, replacing a copy whose files were changed
        (under the folder's lock, taken by the caller)."""
        if final.is_dir() and not _as_materialized(final, manifest):
            aside = final.with_name(f".{version.digest}.{ids.new_id()}.changed")
            os.rename(final, aside)
            shutil.rmtree(aside, ignore_errors=True)
        if not final.is_dir():
            _sweep_killed_checkouts(final, inside=False)
            temp = final.with_name(_checkout_temp_name(final))
            try:
                self._materialize(version, temp, progress or _NoProgress(), manifest)
                for entry in manifest.files:
                    file = temp.joinpath(*entry.path.split("/"))
                    os.chmod(file, 0o444)
                    os.utime(file, ns=(MATERIALIZED_MTIME_NS, MATERIALIZED_MTIME_NS))
                os.rename(temp, final)
            finally:
                shutil.rmtree(temp, ignore_errors=True)

    def checkout(
        self,
        ref: str,
        dest: str | os.PathLike[str],
        *,
        force: bool = False,
        progress: ProgressReporter | None = None,
    ) -> Path:
        """Write the version's files into ``dest``, byte-identical to what was added.

        A non-empty ``dest`` is refused unless ``force``; with ``force`` its content is
        replaced by the version's: every entry at its top is removed except hidden ones
        (``.git``...), which an add skips too. Whatever ``force`` says, a ``dest`` inside
        this project's stores is refused, and so is replacing content that holds the
        project itself (its folder, with conveyor.toml and .conveyor) or any of its local
        stores (metadata, artifacts, logs, online features, the remote).
        """
        version = self.get(ref)
        check_usable_path(dest, "the folder to check out into")
        # Normalized first (``..`` resolved): the temporary folder below is a hidden entry
        # of DEST when it exists, else a sibling of it.
        target = Path(os.path.abspath(dest))
        if target.exists() and not target.is_dir():
            raise ConflictError(f"Cannot check out into {target}: it is a file, not a folder.")
        _sweep_killed_checkouts(target)
        try:
            present = sorted(os.listdir(target)) if target.is_dir() else []
        except PermissionError as e:
            raise PermissionDeniedError(
                f"Cannot check out into {target}: {e.strerror}.",
                hint="Check out into a folder you may write to (an empty one, or a new one).",
            ) from e
        if present and not force:
            raise ConflictError(
                f"Cannot check out {version.ref} into {target}: the folder is not empty.",
                hint="Choose an empty folder, or pass --force to replace its content "
                "(force=True from Python).",
            )
        replaced = [name for name in present if not name.startswith(".")]
        self._check_spares_stores(target, replaced)
        manifest = self.manifest(version)
        tops = {f.path.split("/", 1)[0] for f in manifest.files}
        kept = sorted(tops & (set(present) - set(replaced)))
        if kept:
            raise ConflictError(
                f"Cannot check out {version.ref} into {target}: the version has {kept[0]!r}, "
                "which the folder holds as a hidden entry that --force keeps.",
                hint="Move that entry away first, or check out into another folder.",
            )
        blocked = next((p for p in target.parents if p.exists()), None)
        if blocked is not None and not blocked.is_dir():
            raise ConflictError(
                f"Cannot check out into {target}: {blocked} is a file, not a folder.",
                hint="Choose a folder that is not under a file.",
            )
        # The files are written to a temporary folder, then moved in place: inside DEST when
        # it exists (a mounted volume is a file system of its own, which no rename leaves;
        # its parent may not be writable), else beside it, where DEST is made.
        existing = target.is_dir()  # (a link to a folder stays that link)
        temp = (target if existing else target.parent) / _checkout_temp_name(target)
        try:
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                self._materialize(version, temp, progress or _NoProgress(), manifest)
                if existing:
                    _replace_visible(target, temp, replaced)
                else:
                    os.rename(temp, target)
            finally:
                shutil.rmtree(temp, ignore_errors=True)
        except OSError as e:
            if isinstance(e, ConveyorError):
                raise
            name = str(e.filename or "")
            if name.startswith(str(temp)):  # the temporary folder: the one that holds it
                name = str(temp.parent)
            where = f" ({name})" if name else ""
            kind = PermissionDeniedError if isinstance(e, PermissionError) else ConflictError
            raise kind(
                f"Cannot check out {version.ref} into {target}: {e.strerror or e}{where}.",
                hint="Check out into a folder you may write to (an empty one, or a new one)."
                if isinstance(e, PermissionError)
                else None,
            ) from e
        return target

    def _check_spares_stores(self, target: Path, replaced: list[str]) -> None:
        """Refuse a checkout into ``target`` inside this project's stores, or one whose
        replaced entries (``replaced``) hold the project or any of its stores."""
        settings = self.ws.settings
        root = settings.root.resolve()
        stores = [settings.state_dir.resolve(), *_local_stores(settings)]
        if self.ws.remote is None:
            local = getattr(self.store.backend, "root", None)
            if getattr(self.store.backend, "is_local", False) and local is not None:
                stores.append(Path(local).resolve())
        here = target.resolve()
        for store in stores:
            if here == store or here.is_relative_to(store):
                raise ConflictError(
                    f"Cannot check out into {target}: it is inside this project's stores "
                    f"({store}).",
                    hint="Choose a folder outside them.",
                )
        if not replaced:
            return
        if root == here:
            raise ConflictError(
                f"Cannot check out into {target} with --force: it is this project's folder, "
                "and replacing its content would remove the project's own files "
                "(conveyor.toml, and stores configured in it).",
                hint="Check out into another folder and copy what you need from there.",
            )
        for name in replaced:
            entry = here / name
            for held in (root, *stores):
                if held == entry or held.is_relative_to(entry):
                    what = "this project" if held == root else f"this project's stores ({held})"
                    raise ConflictError(
                        f"Cannot check out into {target} with --force: replacing its content "
                        f"would remove {entry}, which holds {what}.",
                        hint="Choose another folder, or move it out of there first.",
                    )

    def _materialize(
        self,
        version: DatasetVersion,
        folder: Path,
        progress: ProgressReporter,
        manifest: Manifest | None = None,
    ) -> None:
        manifest = manifest if manifest is not None else self.manifest(version)
        folder.mkdir(parents=True)
        progress.start(f"Writing {version.ref}", len(manifest.files), manifest.size)

        def one(entry: FileEntry) -> None:
            dest = folder.joinpath(*entry.path.split("/"))
            try:
                self._write_file(version, entry, dest)
            except IntegrityError as e:
                raise self._damaged(version, entry, e) from e
            except NotFoundError:
                raise NotFoundError(
                    f"The file {entry.path} of {version.ref} is not in the artifact store "
                    f"{self._where}.",
                    hint=f"{_store_again(version)}.",
                ) from None
            progress.advance(1, entry.size)

        try:
            _parallel(one, list(manifest.files))
        finally:
            progress.stop()

    def _damaged(
        self, version: DatasetVersion, entry: FileEntry, error: IntegrityError
    ) -> IntegrityError:
        """The error for a file of ``version`` whose stored bytes are corrupted, after
        dropping its damaged objects from a local store: a corrupted copy is of no use, and
        once it is gone the next add of the original file, or a pull, stores it again."""
        dropped = self._drop_damaged(entry)
        if dropped:
            fix = f"The damaged copy was removed. {_store_again(version)}"
        else:
            fix = (
                f"Replace it from a remote that has it: conveyor data pull {version.ref} "
                "--verify (from Python: cv.data.pull(verify=True))"
            )
        return IntegrityError(
            f"The stored copy of {entry.path} in {version.ref} is corrupted: {error.message}",
            hint=f"{fix}.",
        )

    def _drop_damaged(self, entry: FileEntry) -> list[str]:
        """Delete from a local store the objects of ``entry`` whose bytes no longer hash to
        their digest (each checked again here); return their digests."""
        if not getattr(self.store.backend, "is_local", False):
            return []  # a shared remote bucket is repaired by pull/push --verify
        dropped = []
        for digest in entry.objects:
            path = self.store.backend.local_path(key_of(digest))
            try:
                before = os.stat(path) if path is not None else None
                self.store.verify(digest)
            except IntegrityError:
                # Only the copy just found damaged: one a repair (pull --verify) put in
                # its place meanwhile is another file, and stays.
                with contextlib.suppress(OSError):
                    after = os.stat(path) if path is not None else None
                    if before is not None and after is not None and _same_file(before, after):
                        os.unlink(path)  # type: ignore[arg-type]
                        dropped.append(digest)
            except (NotFoundError, FileNotFoundError):
                continue
        return dropped

    @property
    def _where(self) -> str:
        """Where the objects are, for errors."""
        return self.store.uri

    def _write_file(self, version: DatasetVersion, entry: FileEntry, dest: Path) -> None:
        """Write the bytes of ``entry`` to ``dest``, verified (the caller names the file in
        errors)."""
        self.store.download(entry.objects, dest)

    # -- comparing and validating ----------------------------------------------------------

    def diff(self, a: str, b: str) -> DatasetDiff:
        """Compare two versions: files, columns, row counts and column statistics."""
        from conveyor.data.compare import diff_versions

        va, vb = self.get(a), self.get(b)
        return diff_versions(va, vb, self.manifest(va), self.manifest(vb))

    def schema(self, ref: str) -> pa.DataFrameSchema | None:
        """Return the schema saved with ``ref``, or None."""
        from conveyor.data.validation import schema_from_yaml

        version = self.get(ref)
        if not version.has_schema:
            return None
        try:
            owner = ObjectRef(versioning.VERSION_KIND, version.id)
            with self.ws.open_artifact(owner, SCHEMA) as f:
                text = f.read().decode()
        except NotFoundError:
            raise NotFoundError(
                f"The schema saved with {version.ref} is not in the artifact store {self._where}.",
                hint=f"Fetch it from the remote that has it: conveyor data pull {version.ref}",
            ) from None
        return schema_from_yaml(text, source=f"the schema of {version.ref}")

    def infer_schema(
        self, ref: str, *, save: bool = True, overwrite: bool = False
    ) -> pa.DataFrameSchema:
        """Infer a pandera schema from table version ``ref`` and save it with the version.

        A schema saved with the version that differs from the inferred one (set or edited
        since) is not replaced unless ``overwrite``: inferring again would lose the edits.
        """
        from conveyor.data.validation import infer_schema, schema_to_yaml

        version = self.get(ref)
        schema = infer_schema(self.load(version.ref), name=version.ref)
        if save:
            text = schema_to_yaml(schema)
            saved = self._saved_schema_digest(version)
            if saved not in (None, sha256_bytes(text.encode())) and not overwrite:
                raise ConflictError(
                    f"{version.ref} already has a schema that differs from the one inferred "
                    "now (it was set or edited): inferring would replace it.",
                    hint="Pass overwrite=True (--force) to replace it, or save=False to only "
                    "look at the inferred schema.",
                )
            self.set_schema(version.ref, text)
        return schema

    def _saved_schema_digest(self, version: DatasetVersion) -> str | None:
        if not version.has_schema:
            return None
        owner = ObjectRef(versioning.VERSION_KIND, version.id)
        return next((a.digest for a in self.ws.list_artifacts(owner) if a.name == SCHEMA), None)

    def set_schema(self, ref: str, schema: pa.DataFrameSchema | str) -> None:
        """Save ``schema`` (a pandera schema or its YAML) with version ``ref``."""
        from conveyor.data.validation import schema_from_yaml, schema_to_yaml

        version = self.get(ref)
        text = schema if isinstance(schema, str) else schema_to_yaml(schema)
        schema_from_yaml(text, source="the schema to save")  # refuse what cannot be read back
        self.ws.log_artifact(
            text.encode(),
            ObjectRef(versioning.VERSION_KIND, version.id),
            SCHEMA,
            media_type="application/yaml",
            replace=True,
        )

    def validate(
        self, data: Any, schema: pa.DataFrameSchema | str | os.PathLike[str] | None = None
    ) -> ValidationReport:
        """Check ``data`` (a DataFrame, Arrow table, version ref or file) against ``schema``.

        ``schema`` may be a pandera schema, its YAML text (as :meth:`set_schema` takes it), a
        YAML file's path, or None to use the schema saved with the version (or with the
        dataset's latest earlier version that has one). The report's
        ``schema_source`` says which: the version it was saved with, or the file.
        """
        from conveyor.data.validation import schema_from_yaml, validate_frame

        label = None
        version = None
        source = None
        # A name is a version's unless it names a table file here: a folder named like its
        # dataset (`conveyor data add raw raw/`, then `validate raw`) is no table to check.
        if isinstance(data, str | os.PathLike) and tables.format_of(os.fspath(data)):
            check_usable_path(data, "the table file to validate")
        exists = isinstance(data, str) and os.path.exists(data)  # (False: too long a name)
        if isinstance(data, str) and not (exists and tables.format_of(data) is not None):
            try:
                version = self.get(data)
            except (NotFoundError, InvalidArgumentError):
                if exists:
                    raise InvalidArgumentError(
                        f"Cannot validate {data}: it is not a table file, nor a dataset "
                        f"version; supported file types: {tables.supported_formats()}.",
                        hint="Name a table file, or a version like NAME@3.",
                    ) from None
                if "@" in data or tables.format_of(data) is None:
                    raise
                raise NotFoundError(  # the name of a table file, most likely mistyped
                    f"Cannot validate {data}: there is no such file, nor a dataset of that name.",
                    hint="Check the path; a dataset version is named like NAME@3.",
                ) from None
            label = version.ref
            frame = self.load(version.ref)
        elif isinstance(data, str | os.PathLike):
            path = Path(data)
            fmt = tables.format_of(path.name)
            if fmt is None:
                raise InvalidArgumentError(
                    f"Cannot validate {path}: it is not a table file; supported file types: "
                    f"{tables.supported_formats()}."
                )
            table = tables.read_table(fmt, [str(path)])
            if fmt == "parquet":  # as a version of the file would load: see load_arrow
                table = tables.restore_categories(table)
            frame = table.to_pandas()
            label = str(path)
        else:
            frame = tables.to_arrow(data).to_pandas()
        if schema is None:
            if version is None:
                raise InvalidArgumentError(
                    "validate needs a schema for data that is not a dataset version.",
                    hint="Pass a schema: --schema FILE on the command line, schema= (a "
                    "pandera schema or a YAML file) from Python.",
                )
            schema, source = self._nearest_schema(version)
        elif isinstance(schema, str) and "\n" in schema:  # YAML text, as set_schema takes
            schema = schema_from_yaml(schema, source="the schema text")
        elif isinstance(schema, str | os.PathLike):
            from conveyor.data.validation import read_schema_file

            path = Path(schema)
            schema = schema_from_yaml(read_schema_file(path), source=f"the schema file {path}")
            source = str(path)
        return validate_frame(frame, schema, data=label, schema_source=source)

    def _schema_holder(self, version: DatasetVersion) -> DatasetVersion | None:
        """The version whose schema checks ``version``: itself if it has one, else the
        latest earlier version that has one; None when none has."""
        if version.has_schema:
            return version
        for candidate in self.versions(version.name):
            if candidate.version <= version.version and candidate.has_schema:
                return candidate
        return None

    def _nearest_schema(self, version: DatasetVersion) -> tuple[pa.DataFrameSchema, str]:
        """The schema that checks ``version`` and the ref of the version it is saved with."""
        holder = self._schema_holder(version)
        schema = self.schema(holder.ref) if holder is not None else None
        if holder is not None and schema is not None:
            return schema, holder.ref
        raise NotFoundError(
            f"No schema is saved with {version.ref} or an earlier version of {version.name!r}.",
            hint=f"Infer one from a good version: `conveyor data schema {version.name}@N --infer`.",
        )

    # -- remotes ---------------------------------------------------------------------------

    def remote(self, uri: str | None = None) -> ArtifactStore:
        """Return the remote artifact store ``uri`` (default: the ``remote_uri`` setting).

        A relative folder given here is relative to the working directory, as every path a
        command takes is; the setting's is relative to the project root, as every setting's is.
        """
        from conveyor.core.config import normalize_artifact_uri

        chosen = uri or self.ws.settings.remote_uri
        if not chosen:
            raise InvalidArgumentError(
                "No remote given and no default remote is set.",
                hint="Name one (s3://bucket/prefix, or a folder): --remote on the command line, "
                "remote= from Python; or set remote_uri in conveyor.toml or CONVEYOR_REMOTE_URI.",
            )
        _check_remote_uri(chosen)
        resolved = normalize_artifact_uri(chosen, Path.cwd() if uri else self.ws.settings.root)
        if "://" not in resolved and Path(resolved).exists() and not Path(resolved).is_dir():
            raise InvalidArgumentError(
                f"The remote {chosen!r} is a file, not a folder.",
                hint="Give a folder (created if missing) or a bucket URI like s3://bucket/prefix.",
            )
        here, there = _place(self.store.uri), _place(resolved)
        if here[0] == there[0]:
            inside = (
                os.path.commonpath([here[1], there[1]]) == here[1]
                if here[0] == "file"
                else there[1] == here[1] or there[1].startswith(here[1] + "/")
            )
            if inside:
                raise InvalidArgumentError(
                    f"The remote {chosen!r} is this project's own artifact store (or inside "
                    "it): a copy there is no copy.",
                    hint="Give a folder elsewhere, or a bucket URI like s3://bucket/prefix.",
                )
        return ArtifactStore(resolved)

    def _selected(self, refs: list[str] | str | None) -> list[DatasetVersion]:
        if isinstance(refs, str):  # one reference, not its characters
            refs = [refs]
        if refs is None:  # only None: a list that came out empty selects nothing
            return [v for d in self.datasets() for v in self.versions(d.name)]
        chosen: list[DatasetVersion] = []
        for ref in refs:
            chosen += self.versions(ref) if "@" not in ref else [self.get(ref)]
        return chosen

    def push(
        self,
        refs: list[str] | str | None = None,
        remote: str | None = None,
        *,
        verify: bool = False,
        progress: ProgressReporter | None = None,
    ) -> TransferResult:
        """Copy the objects of ``refs`` (default: every version) that ``remote`` lacks; with
        ``verify``, also read those the remote holds and replace each damaged one.

        Versions named in ``refs`` whose files neither store holds are an error naming them;
        a push of everything pushes the versions it can and lists the others in ``missing``
        (in a project whose metadata others share, the versions they added and have not
        pushed yet).
        """
        target = self.remote(remote)
        needed, missing = self._plan(refs, target, push=True)
        if missing and refs:
            raise NotFoundError(
                f"This project's store lacks files of {_some(missing)}, and the remote "
                f"{target.uri} does not hold them either.",
                hint="Push them from the machine that added them, or add the files again.",
            )
        from conveyor.data.transfer import copy_objects

        result = copy_objects(
            needed,
            self.store,
            target,
            progress=progress,
            verify=verify,
            damaged_hint="Replace this store's copy from a remote that has it: conveyor data "
            "pull --verify (from Python: cv.data.pull(verify=True)), or add the original "
            "files again.",
        )
        return dataclasses.replace(result, missing=missing) if missing else result

    def pull(
        self,
        refs: list[str] | str | None = None,
        remote: str | None = None,
        *,
        verify: bool = False,
        progress: ProgressReporter | None = None,
    ) -> TransferResult:
        """Copy the objects of ``refs`` (default: every version) missing here from ``remote``;
        with ``verify``, also read those held here and replace each damaged one.

        Versions named in ``refs`` whose files neither store holds are an error naming them;
        a pull of everything pulls the versions it can and lists the others in ``missing``.
        """
        source = self.remote(remote)
        needed, missing = self._plan(refs, source, push=False)
        absent = _absence(source) if missing else None
        if absent:
            raise NotFoundError(
                f"The remote {source.uri} {absent}, so there is nothing to pull from it.",
                hint="Check the remote's URI (--remote, or remote_uri in conveyor.toml) and, "
                "for an S3-compatible server, AWS_ENDPOINT_URL.",
            )
        if missing and refs:
            raise NotFoundError(
                f"The remote {source.uri} lacks files of {_some(missing)}, and this store "
                "does not hold them.",
                hint="Push them from the machine that added them (conveyor data push), or "
                "check the remote.",
            )
        from conveyor.data.transfer import copy_objects

        result = copy_objects(
            needed,
            source,
            self.store,
            progress=progress,
            verify=verify,
            damaged_hint=_MEND_REMOTE,
        )
        return dataclasses.replace(result, missing=missing) if missing else result

    def _plan(
        self, refs: list[str] | str | None, remote: ArtifactStore, *, push: bool
    ) -> tuple[dict[str, int], tuple[str, ...]]:
        """What a push to or pull from ``remote`` of ``refs`` copies: ``{digest: size}`` of
        the objects of the versions whose files this store and ``remote`` hold between them,
        and the refs of the others."""
        selected = self._selected(refs)
        wanted: dict[str, dict[str, int]] = {}
        for version in selected:
            try:
                wanted[version.ref] = self.objects_of(version, remote)
            except NotFoundError:  # its file list is in neither store
                wanted[version.ref] = {version.digest: 0}
        every = {d for objects in wanted.values() for d in objects}
        here = self.store.exists_many(every)  # the cheap look first: the remote for the rest
        available = here | remote.exists_many(every - here)
        missing = tuple(
            ref for ref, objects in wanted.items() if any(d not in available for d in objects)
        )
        kept = [v for v in selected if v.ref not in missing]
        needed = {d: n for v in kept for d, n in wanted[v.ref].items()}
        needed.update(self._borrowed_schemas(kept, self.store if push else remote))
        return needed, missing

    def _borrowed_schemas(
        self, versions: list[DatasetVersion], source: ArtifactStore
    ) -> dict[str, int]:
        """``{digest: size}`` of the earlier versions' schemas that check ``versions`` (those
        without one of their own), as far as ``source`` holds them: wanted for validate,
        not needed for the files, so one the source lacks is left out, not an error."""
        borrowed: dict[str, int] = {}
        for version in versions:
            holder = self._schema_holder(version)
            if holder is None or holder.id == version.id:
                continue
            owner = ObjectRef(versioning.VERSION_KIND, holder.id)
            for link in self.ws.list_artifacts(owner):
                if link.name == SCHEMA:
                    borrowed[link.digest] = link.size
        held = source.exists_many(set(borrowed)) if borrowed else set()
        return {d: size for d, size in borrowed.items() if d in held}

    def objects_of(
        self, version: DatasetVersion, source: ArtifactStore | None = None
    ) -> dict[str, int]:
        """Return ``{digest: size}`` of every object ``version`` needs (manifest, files,
        schema). The manifest is read from this project's store, or else from ``source``."""
        links = self.ws.list_artifacts(ObjectRef(versioning.VERSION_KIND, version.id))
        needed = {link.digest: link.size for link in links}
        try:
            manifest = self.manifest(version)
        except (NotFoundError, IntegrityError):  # not here (yet), or damaged here
            if source is None:
                raise
            try:
                manifest = Manifest.decode(source.get(version.digest))
            except IntegrityError as e:
                raise IntegrityError(
                    f"{source.uri} holds a damaged copy of the file list of {version.ref} "
                    f"(object {version.digest}): its bytes no longer match the digest.",
                    hint=_MEND_REMOTE,
                ) from e
        needed.update((digest, size) for digest, (size, _) in _objects(manifest).items())
        return needed


def _some(refs: tuple[str, ...]) -> str:
    """The first ten of ``refs``, for a message."""
    return f"{', '.join(refs[:10])}{' and more' if len(refs) > 10 else ''}"


#: What to do about a damaged object on a remote that a pull found.
def _absence(store: ArtifactStore) -> str | None:
    """Why ``store`` cannot hold anything (its folder or bucket does not exist), if its
    backend can tell; None when it can't, or when it exists."""
    check = getattr(store.backend, "absence", None)
    if check is None:
        return None
    try:
        found: str | None = check()
    except ConveyorError:  # e.g. not allowed to look at the bucket: say what is missing
        return None
    return found


_MEND_REMOTE = (
    "Replace the remote's copy from a project that holds an intact one: conveyor data push "
    "--verify there (from Python: cv.data.push(verify=True))."
)


@contextlib.contextmanager
def _no_gc_pauses() -> Iterator[None]:
    """Hold off the cyclic garbage collector while one add builds its records.

    Adding a thousand files allocates tens of thousands of small objects without cycles
    (reference counting frees them), enough to set off a full collection over everything
    the process holds (pandas, SQLAlchemy...): a pause of 20 ms or more, a fifth of an
    incremental add. Collection resumes, as it was, afterwards. The collector is the
    process's: only adds run from the main thread of a script or the CLI use this.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def assemble(entry: FileEntry, fetch: Callable[[str], bytes]) -> bytes | bytearray:
    """Return the bytes of ``entry``, fetching each of its objects with ``fetch`` (verified).

    A file in chunks is copied chunk by chunk into one buffer of its size, so reading it
    needs its size plus one chunk of memory, not twice its size.
    """
    if not entry.chunks:
        return fetch(entry.digest)
    out = bytearray(entry.size)
    view = memoryview(out)
    offset = 0
    for digest in entry.chunks:
        data = fetch(digest)
        if offset + len(data) > entry.size:
            raise IntegrityError(f"The chunks of {entry.path} add up to more than its size.")
        view[offset : offset + len(data)] = data
        offset += len(data)
    if offset != entry.size:
        raise IntegrityError(f"The chunks of {entry.path} add up to less than its size.")
    return out


def _not_fresh(result: Any) -> set[str]:
    fresh = result.fresh or set()
    return {d for e in result.entries for d in e.objects if d not in fresh}


def _objects(manifest: Manifest) -> dict[str, tuple[int, str]]:
    """``{digest: (size, name)}`` of the objects a version's files are stored in: one per
    whole file (named by its path), one per distinct chunk of a large file (no name)."""
    objects: dict[str, tuple[int, str]] = {}
    for f in manifest.files:
        if not f.chunks:
            objects.setdefault(f.digest, (f.size, f.path))
            continue
        for i, digest in enumerate(f.chunks):
            objects.setdefault(digest, (f.chunk_size(i), ""))
    return objects


def _parallel(fn: Callable[[Any], None], items: list[Any], workers: int | None = None) -> None:
    if len(items) <= 1:
        for item in items:
            fn(item)
        return
    count = workers or min(8, max(2, os.cpu_count() or 2))
    with ThreadPoolExecutor(count, thread_name_prefix="conveyor-data") as pool:
        for _ in pool.map(fn, items):
            pass


def _check_remote_uri(uri: str) -> None:
    """Refuse a remote URI that names no place: ``s3://`` with no bucket (or ``s3:``, what a
    shell path of it becomes)."""
    _scheme, sep, rest = uri.partition("://")
    mangled = not sep and uri.endswith(":") and "/" not in uri and len(uri) > 2
    if (sep and not rest.strip("/")) or mangled:
        raise InvalidArgumentError(
            f"The remote {uri!r} names no bucket or folder.",
            hint="Give s3://bucket/prefix, or a folder.",
        )


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_ino, a.st_dev, a.st_size, a.st_mtime_ns) == (
        b.st_ino,
        b.st_dev,
        b.st_size,
        b.st_mtime_ns,
    )


def _place(uri: str) -> tuple[str, str]:
    """(scheme, location) of a store URI, to compare two: a folder and file:// alike."""
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme == "file":
        return "file", os.path.realpath(rest if sep else uri)
    return scheme, rest.rstrip("/")
