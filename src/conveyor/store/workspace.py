"""A workspace: one project's settings and the stores they name, opened on first use.

The workspace in use is held in a :class:`contextvars.ContextVar`, so threads and tasks can
each work in their own (``use_workspace``). ``conveyor.init`` also makes its workspace the
process default, which a thread that chose none uses: a worker thread started after
``init`` logs to the same store as the code that started it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import replace as replace_fields
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Self, TypeVar, cast

from conveyor.core.config import (
    CONFIG_FILE,
    STATE_DIR,
    Settings,
    load_settings,
    render_config_template,
)
from conveyor.core.errors import BackendUnavailableError, ConflictError, ConveyorError
from conveyor.core.names import validate_project_name
from conveyor.store import catalog
from conveyor.store.artifacts.cas import ArtifactStore
from conveyor.store.backends import METADATA_STORES
from conveyor.store.client import ServerClient, is_server_uri
from conveyor.store.gc import DEFAULT_GRACE, GcReport, collect_garbage
from conveyor.store.metadata.store import MetadataStore
from conveyor.store.records import ArtifactLink, LineageGraph, ObjectRef, Project

__all__ = ["Workspace", "current_workspace", "init_project", "use_workspace"]

#: Names asked for per page when listing a remote owner's artifacts.
_LIST_PAGE = 10_000

log = logging.getLogger(__name__)
_current: ContextVar[Workspace | None] = ContextVar("conveyor_workspace", default=None)
T = TypeVar("T")


class Workspace:
    """The stores of one project, opened lazily from resolved :class:`Settings`.

    >>> import tempfile
    >>> with Workspace.from_settings(root=tempfile.mkdtemp(), project="demo") as ws:
    ...     ws.project.name
    'demo'
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._metadata: MetadataStore | None = None
        self._artifacts: ArtifactStore | None = None
        self._project: Project | None = None
        self._services: dict[str, Any] = {}
        self._lock = threading.RLock()
        self._remote: ServerClient | None = None
        self._owns_stores = True
        self._flushers: list[Callable[[], None]] = []
        #: Called with the project's name and the store's other projects when this workspace
        #: creates its project in a store that already holds others (the CLI prints a note:
        #: a misspelt CONVEYOR_PROJECT makes a project of its own).
        self.on_new_project: Callable[[str, list[str]], None] | None = None
        _track(self)

    @classmethod
    def from_settings(cls, root: str | os.PathLike[str] | None = None, **overrides: Any) -> Self:
        """Resolve settings for ``root`` (conveyor.toml, CONVEYOR_*, ``overrides``)."""
        return cls(load_settings(Path(root) if root is not None else None, **overrides))

    def __repr__(self) -> str:
        return f"Workspace(root={str(self.settings.root)!r}, project={self.settings.project!r})"

    def for_project(self, name: str) -> Workspace:
        """Return a workspace of project ``name`` on the same, already open, stores.

        A team server keeps one per project; closing it closes its services, not the stores.
        """
        ws = Workspace(replace_fields(self.settings, project=name))
        ws._metadata = self.metadata
        ws._artifacts = self.artifacts
        ws._owns_stores = False
        return ws

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def remote(self) -> ServerClient | None:
        """The team server this workspace works through (``store_uri`` http(s)://), or None."""
        if self._remote is None and is_server_uri(self.settings.store_uri):
            with self._lock:
                if self._remote is None:
                    self._remote = ServerClient(self.settings.store_uri)
        return self._remote

    def before_remote_write(self, flush: Callable[[], None]) -> None:
        """Call ``flush`` before each remote artifact write: tracking's writer registers
        itself, so the run an upload names is on the server before the upload is."""
        self._flushers.append(flush)

    def flush_before_remote_write(self) -> None:
        """Run the registered flushes; a failure met earlier by one (a lost metric batch) is
        logged, not raised here: it is not this write's, and the writer reports it itself."""
        for flush in list(self._flushers):
            try:
                flush()
            except ConveyorError as e:
                log.warning("conveyor: pending writes could not be stored first: %s", e)

    def _local_only(self, what: str) -> ConveyorError:
        return ConveyorError(
            f"{what} is not available through a team server yet "
            f"(CONVEYOR_STORE_URI={self.settings.store_uri}): remote mode covers tracking, the "
            "model registry, dataset versions, features over datasets, pipeline runs of "
            "installed packages, deployments, batch predictions, monitors and alerts, and loop "
            "policies.",
            hint="Run this on the server's own stores (its database URI), or see "
            "docs/server.md for what remote mode covers.",
        )

    @property
    def metadata(self) -> MetadataStore:
        """The metadata store, opened (and migrated) on first use."""
        if self.remote is not None:
            raise self._local_only("Direct access to the metadata store")
        with self._lock:
            if self._metadata is None:
                store_cls = METADATA_STORES.resolve(self.settings.store_uri)
                store = store_cls(self.settings.store_uri, actor=self.settings.actor)
                store.open()
                self._metadata = store
            return self._metadata

    @property
    def artifacts(self) -> ArtifactStore:
        """The content-addressed artifact store."""
        if self.remote is not None:
            raise self._local_only("Direct access to the artifact store")
        if self._artifacts is None:
            self._artifacts = ArtifactStore(self.settings.artifact_uri)
        return self._artifacts

    @property
    def log_uri(self) -> str:
        """Where this project's prediction, feedback and failures logs live: the ``log_uri``
        setting's folder for the project (``.../project=NAME``), so that projects sharing
        a log store (a team server's) never read or write each other's deployments."""
        return f"{self.settings.log_uri.rstrip('/')}/project={self.settings.project}"

    @property
    def project(self) -> Project:
        """The project of this workspace, created in the store on first use."""
        if self._project is None:
            if self.remote is not None:
                self._project = _remote_project(self.remote, self.settings.project)
            else:
                name = self.settings.project
                found = self.metadata.find_project(name)
                self._project = found or self.metadata.ensure_project(name)
                if found is None and self.on_new_project is not None:
                    others = [p.name for p in self.metadata.list_projects() if p.name != name]
                    if others:
                        self.on_new_project(name, others)
        return self._project

    def open(self) -> Self:
        """Open the stores now instead of on first use."""
        _ = self.project
        return self

    def service(self, name: str, factory: Callable[[Workspace], T]) -> T:
        """Return this workspace's ``name`` service, made by ``factory(self)`` on first use.

        Domain packages (tracking, data, ...) attach their services here, so the store layer
        never imports them. A service with a ``close()`` method is closed with the workspace.
        """
        with self._lock:
            if name not in self._services:
                self._services[name] = factory(self)
            return cast(T, self._services[name])

    def close(self) -> None:
        """Close the services, then the stores."""
        with self._lock:
            services, self._services = list(self._services.values()), {}
        for svc in reversed(services):
            closer = getattr(svc, "close", None)
            if callable(closer):
                closer()
        if self._metadata is not None and self._owns_stores:
            self._metadata.close()
        self._metadata = None
        if self._remote is not None:
            self._remote.close()
            self._remote = None
        self._project = None

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- artifacts -------------------------------------------------------------------------

    def log_artifact(
        self,
        data: bytes | str | os.PathLike[str] | BinaryIO,
        owner: ObjectRef | str,
        name: str,
        *,
        media_type: str | None = None,
        replace: bool = False,
        expect_digest: str | None = None,
    ) -> ArtifactLink:
        """Store ``data`` and record it as ``owner``'s artifact ``name``, with its audit event.

        ``expect_digest``: the SHA-256 the content must have (an upload's, as its sender
        computed it); content with another is not linked.
        """
        from conveyor.core.names import validate_artifact_path

        owner = ObjectRef.of(owner)
        validate_artifact_path(name)
        if self.remote is not None:
            return _remote_upload(self, data, owner, name, media_type=media_type, replace=replace)
        rereadable = isinstance(data, bytes | str | os.PathLike)
        for attempt in (1, 2):
            put = self.artifacts.put(data)
            if expect_digest is not None and put.digest != expect_digest:
                from conveyor.core.errors import IntegrityError

                raise IntegrityError(
                    f"The content of {name!r} has SHA-256 {put.digest}, not the "
                    f"{expect_digest} its sender computed: it changed on the way.",
                    hint="Send it again.",
                )
            try:
                with self.metadata.transaction(project_id=self.project.id) as uow:
                    return catalog.link_artifact(
                        uow,
                        self.artifacts,
                        put,
                        owner,
                        name,
                        media_type=media_type,
                        replace=replace,
                    )
            except catalog.ContentMissingError:
                # gc removed the content between the put and the link: store it again.
                if attempt == 2 or not rereadable:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def list_artifacts(self, owner: ObjectRef | str) -> list[ArtifactLink]:
        """Return ``owner``'s artifacts, sorted by name."""
        owner = ObjectRef.of(owner)
        if self.remote is not None:
            path = self.remote.project_path(
                self.settings.project, "artifacts", owner.kind, owner.id
            )
            links: list[ArtifactLink] = []
            after = None
            while True:  # the server lists a page at a time
                page = self.remote.get_json(path, after=after, limit=_LIST_PAGE)
                links += [_link_from_json(item) for item in page["artifacts"]]
                following = page.get("next_after")  # absent from a server before pages
                if following is None:
                    return links
                if after is not None and following <= after:
                    raise BackendUnavailableError(
                        f"The server at {self.remote.base_url} listed {owner.kind} "
                        f"{owner.id}'s artifacts out of order (page after {after!r}).",
                        hint="Upgrade the server, or check the proxy in front of it.",
                    )
                after = following
        with self.metadata.read() as conn:
            return catalog.list_artifacts(conn, owner)

    @contextmanager
    def open_artifact(self, owner: ObjectRef | str, name: str) -> Iterator[BinaryIO]:
        """Open ``owner``'s artifact ``name`` for reading, verified against its digest."""
        owner = ObjectRef.of(owner)
        if self.remote is not None:
            with _remote_download(self, owner, name) as f:
                yield f
            return
        with self.metadata.read() as conn:
            link = catalog.find_artifact(conn, owner, name)
        with self.artifacts.open(link.digest) as f:
            yield f

    # -- lineage, audit, maintenance --------------------------------------------------------

    def lineage(
        self, ref: ObjectRef | str, *, direction: str = "upstream", depth: int | None = None
    ) -> LineageGraph:
        """Return what is upstream or downstream of ``ref`` (an ObjectRef or ``KIND:ID``)."""
        ref = ObjectRef.of(ref)
        if self.remote is not None:
            return _remote_lineage(self.remote, self.settings.project, ref, direction, depth)
        return self.metadata.lineage(ref, direction=direction, depth=depth)

    def gc(self, *, dry_run: bool = False, grace: timedelta = DEFAULT_GRACE) -> GcReport:
        """Delete stored objects that no record references (see :func:`collect_garbage`)."""
        return collect_garbage(self.metadata, self.artifacts, dry_run=dry_run, grace=grace)


# -- remote mode: projects and artifacts through a team server ---------------------------------


def _remote_project(client: ServerClient, name: str) -> Project:
    from datetime import datetime

    body = client.get_json(client.project_path(name))
    return Project(
        id=body["id"],
        name=body["name"],
        description=body.get("description", ""),
        created_at=datetime.fromisoformat(body["created_at"]),
    )


def _remote_lineage(
    client: ServerClient, project: str, ref: ObjectRef, direction: str, depth: int | None
) -> LineageGraph:
    from conveyor.store.records import LineageEdge

    body = client.get_json(
        client.project_path(project, "lineage", ref.kind, ref.id), direction=direction, depth=depth
    )
    edges = [
        LineageEdge(
            ObjectRef.parse(e["src"]), ObjectRef.parse(e["dst"]), e["relation"], int(e["depth"])
        )
        for e in body["edges"]
    ]
    return LineageGraph(root=ref, direction=direction, edges=edges)


def _link_from_json(item: dict[str, Any]) -> ArtifactLink:
    from datetime import datetime

    return ArtifactLink(
        owner=ObjectRef(item["owner_kind"], item["owner_id"]),
        name=item["name"],
        digest=item["digest"],
        size=int(item["size"]),
        media_type=item["media_type"],
        created_at=datetime.fromisoformat(item["created_at"]),
    )


def _remote_upload(
    ws: Workspace,
    data: bytes | str | os.PathLike[str] | BinaryIO,
    owner: ObjectRef,
    name: str,
    *,
    media_type: str | None,
    replace: bool,
) -> ArtifactLink:
    """Stream ``data`` to the server (a file is read in chunks, never whole into memory)."""
    client = ws.remote
    assert client is not None
    ws.flush_before_remote_write()
    path = client.project_path(ws.settings.project, "artifacts", owner.kind, owner.id, name)
    params = {"replace": "true" if replace else "false"}
    if media_type:
        params["media_type"] = media_type
    if isinstance(data, bytes):
        response = client.request("PUT", path, content=data, params=params)
    elif (
        isinstance(data, str | os.PathLike)
        and owner.kind == "run"
        and os.path.getsize(data) >= RESUMABLE_FROM
    ):
        link = _resumable_upload(ws, data, owner, name, media_type=media_type, replace=replace)
        if link is not None:
            return link
        with open(data, "rb") as f:
            response = client.request("PUT", path, content=_chunks(f), params=params, retry=False)
    elif isinstance(data, str | os.PathLike):
        with open(data, "rb") as f:
            response = client.request("PUT", path, content=_chunks(f), params=params, retry=False)
    else:
        response = client.request("PUT", path, content=_chunks(data), params=params, retry=False)
    return _link_from_json(response.json())


#: Files this large go up in chunks, each its own request, resumed where the server holds
#: them after a failure (smaller ones stream in one request).
RESUMABLE_FROM = 64 << 20
#: How many times an upload resumes after the client gave up retrying one chunk.
RESUMES = 5


class _Pieces:
    """A chunk, read into one reused buffer, sent in 1 MiB pieces (a resend starts again).
    A new 8 MiB bytes per chunk, which the HTTP client copies whole again, grew the client's
    heap by 8 MB a chunk here (glibc did not reuse the freed blocks): 130 MB for 160 MB."""

    PIECE = 1 << 20

    def __init__(self, data: memoryview) -> None:
        self.data = data

    def __iter__(self) -> Iterator[bytes]:
        for start in range(0, len(self.data), self.PIECE):
            yield bytes(self.data[start : start + self.PIECE])


def _resumable_upload(
    ws: Workspace,
    path: str | os.PathLike[str],
    owner: ObjectRef,
    name: str,
    *,
    media_type: str | None,
    replace: bool,
) -> ArtifactLink | None:
    """Send the file in the chunks the server asks for; after a failure, ask the server how
    much it holds and go on from there. Its SHA-256 is computed on the way (each byte read
    once) and checked by the server before the artifact is linked. None when the server
    takes no resumable uploads (an older one): the caller streams the file in one request."""
    import hashlib

    from conveyor.core.errors import InvalidArgumentError, NotFoundError

    client = ws.remote
    assert client is not None
    size = os.path.getsize(path)
    base = client.project_path(ws.settings.project, "uploads")
    try:
        started = client.send_json("POST", base, {"size": size})
    except (NotFoundError, BackendUnavailableError):
        return None
    session = f"{base}/{started['id']}"
    chunk = max(1, int(started["chunk"]))
    digest = hashlib.sha256()
    offset = hashed = 0
    failures = 0
    buffer = bytearray(chunk)  # one buffer for every chunk: see _Pieces
    try:
        with open(path, "rb", buffering=0) as f:
            while offset < size:
                f.seek(offset)
                data = memoryview(buffer)[: f.readinto(memoryview(buffer)[: size - offset])]
                if not data:
                    raise InvalidArgumentError(
                        f"{os.fspath(path)} shrank while it was being uploaded "
                        f"({size} bytes at the start)."
                    )
                if offset + len(data) > hashed:
                    digest.update(data[hashed - offset :])
                    hashed = offset + len(data)
                try:
                    answer = client.request(
                        "PUT",
                        session,
                        content=_Pieces(data),
                        params={"offset": offset},
                        headers={"Content-Length": str(len(data))},
                    )
                    offset = int(answer.json()["offset"])
                    failures = 0
                except (BackendUnavailableError, ConflictError) as e:
                    if isinstance(e, ConflictError) and "changed" in e.message:
                        raise
                    failures += 1
                    if failures > RESUMES:
                        raise
                    time.sleep(min(2.0**failures, 30.0))
                    with contextlib.suppress(BackendUnavailableError):  # still down: next turn
                        offset = int(client.get_json(session)["offset"])
        if os.path.getsize(path) != size:
            raise InvalidArgumentError(f"{os.fspath(path)} changed while it was being uploaded.")
        body = {"run_id": owner.id, "name": name, "sha256": digest.hexdigest(), "replace": replace}
        if media_type:
            body["media_type"] = media_type
        # Completing again returns the same link: safe to retry after a lost answer.
        done = client.request("POST", f"{session}/artifact", json=body, retry=True)
        return _link_from_json(done.json())
    except BaseException:
        with contextlib.suppress(Exception):  # leave nothing behind on the server
            client.request("DELETE", session, retry=False)
        raise


def _chunks(f: BinaryIO, size: int = 1 << 20) -> Iterator[bytes]:
    while chunk := f.read(size):
        yield chunk


@contextmanager
def _remote_download(ws: Workspace, owner: ObjectRef, name: str) -> Iterator[BinaryIO]:
    """Download to a temporary file, checking the SHA-256 the server announces, then open it."""
    import hashlib
    import tempfile

    from conveyor.core.errors import IntegrityError

    client = ws.remote
    assert client is not None
    path = client.project_path(ws.settings.project, "artifacts", owner.kind, owner.id, name)
    with tempfile.TemporaryFile() as tmp:
        digest = hashlib.sha256()
        with client.stream(path) as response:
            expected = response.headers.get("X-Conveyor-Digest", "")
            for chunk in response.iter_bytes(1 << 20):
                digest.update(chunk)
                tmp.write(chunk)
        if expected and digest.hexdigest() != expected.removeprefix("sha256:"):
            raise IntegrityError(
                f"The artifact {owner}/{name} arrived damaged: its SHA-256 does not match."
            )
        tmp.seek(0)
        yield cast(BinaryIO, tmp)


_workspaces: weakref.WeakSet[Workspace] = weakref.WeakSet()
_fork_hook: list[bool] = []


def _track(ws: Workspace) -> None:
    _workspaces.add(ws)
    if not _fork_hook:
        os.register_at_fork(after_in_child=_after_fork_in_child)
        _fork_hook.append(True)


def _after_fork_in_child() -> None:
    """Locks another thread held at the fork stay held in the child: replace them."""
    global _default_lock
    _default_lock = threading.Lock()
    for ws in list(_workspaces):
        ws._lock = threading.RLock()


_default: list[Workspace] = []  # the process default, set by use_workspace(..., default=True)
_default_lock = threading.Lock()


def current_workspace() -> Workspace:
    """Return the workspace in use: this context's, else the process default, else one
    resolved from conveyor.toml and CONVEYOR_* (which becomes the default)."""
    ws = _current.get()
    if ws is not None:
        return ws
    with _default_lock:
        if not _default:
            _default.append(Workspace.from_settings())
        return _default[0]


def use_workspace(ws: Workspace, *, default: bool = False) -> Workspace:
    """Make ``ws`` the workspace in use in this context (and the process default if asked)."""
    _current.set(ws)
    if default:
        with _default_lock:
            _default[:] = [ws]
    return ws


def init_project(
    root: str | os.PathLike[str], *, project: str | None = None
) -> tuple[Workspace, list[str]]:
    """Create ``.conveyor/`` and a commented ``conveyor.toml`` in ``root`` (idempotent).

    Returns the opened workspace and the paths created (empty when everything existed).
    """
    root_path = Path(root).resolve()
    created: list[str] = []
    if root_path.exists() and not root_path.is_dir():
        raise ConflictError(
            f"Cannot make a project in {root_path}: it is a file, not a folder.",
            hint="Give a folder (it is created if missing).",
        )
    name = project or _default_project_name(root_path)
    validate_project_name(name)  # before anything is written: a bad name leaves nothing
    root_path.mkdir(parents=True, exist_ok=True)
    config = root_path / CONFIG_FILE
    if config.exists() and project is not None:
        configured = load_settings(root_path).project
        if configured != project:
            raise ConflictError(
                f"{config} already names the project {configured!r}, not {project!r}.",
                hint="Edit conveyor.toml to switch projects, or run init without --project.",
            )
    if not config.exists():
        config.write_text(render_config_template(name), encoding="utf-8")
        created.append(str(config))
    state = root_path / STATE_DIR
    if not state.exists():
        state.mkdir()
        created.append(str(state))
    ignore = state / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# Conveyor's local state: do not commit.\n*\n", encoding="utf-8")
    ws = Workspace(load_settings(root_path, project=project))
    ws.open()
    return ws, created


def _default_project_name(root: Path) -> str:
    """The folder's name as a valid project name: accents dropped (café: cafe), any other
    character not allowed made a dash."""
    import unicodedata

    ascii_name = unicodedata.normalize("NFKD", root.name).encode("ascii", "ignore").decode()
    cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in ascii_name)
    cleaned = cleaned.strip(".-")[:100].rstrip(".-")
    return cleaned or "default"
