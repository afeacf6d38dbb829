"""The metadata store: one SQL database (SQLite or PostgreSQL) behind units of work."""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime
from types import TracebackType
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from conveyor.core import ids
from conveyor.core.clock import utcnow
from conveyor.core.errors import (
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
)
from conveyor.core.names import validate_project_name
from conveyor.store.metadata import engine as engines
from conveyor.store.metadata import migrate as migrations
from conveyor.store.metadata.schema import audit_events, lineage_edges, projects
from conveyor.store.metadata.sql import insert_ignore
from conveyor.store.principal import current_principal, current_source
from conveyor.store.records import AuditEvent, LineageEdge, LineageGraph, ObjectRef, Project

__all__ = ["MetadataStore", "UnitOfWork"]

_INSERT_AUDIT = audit_events.insert()


class UnitOfWork:
    """One transaction: a change, its lineage edges and its audit event commit together."""

    def __init__(self, conn: sa.Connection, actor: str, project_id: str | None) -> None:
        principal = current_principal()
        self.conn = conn
        # A request to the team server acts as its authenticated user, whatever the store's
        # configured actor says.
        self.actor = principal.name if principal is not None else actor
        self.token_id = principal.token_id if principal is not None else None
        self.source = current_source()
        self.project_id = project_id
        self.now = utcnow()
        self._audit_rows: list[dict[str, Any]] = []

    def audit(
        self,
        action: str,
        obj: ObjectRef,
        *,
        before: Any = None,
        after: Any = None,
    ) -> str:
        """Record that the actor did ``action`` to ``obj``; returns the event id.

        Events are written together, in one statement, when the unit of work commits.
        """
        event_id = ids.new_id()
        row = {
            "id": event_id,
            "project_id": self.project_id,
            "at": self.now,
            "actor": self.actor,
            "action": action,
            "object_kind": obj.kind,
            "object_id": obj.id,
            "before": before,
            "after": after,
        }
        if self.token_id is not None or self.source is not None:  # a team-server request
            row["token_id"] = self.token_id
            row["source"] = self.source[:100] if self.source else self.source
        self._audit_rows.append(row)
        return event_id

    def write_audit(self) -> None:
        """Write the audit events recorded so far (done for you before commit)."""
        if self._audit_rows:
            rows, self._audit_rows = self._audit_rows, []
            self.conn.execute(_INSERT_AUDIT, rows)

    def link(self, src: ObjectRef, dst: ObjectRef, relation: str) -> None:
        """Record a lineage edge ``src -relation-> dst`` (recording it twice is harmless)."""
        if not relation or len(relation) > 64:
            raise InvalidArgumentError(
                f"A lineage relation must be 1 to 64 characters; got {relation!r}."
            )
        if src == dst:
            raise InvalidArgumentError(f"A lineage edge cannot point from {src} to itself.")
        insert_ignore(
            self.conn,
            lineage_edges,
            [
                {
                    "id": ids.new_id(),
                    "project_id": self.project_id,
                    "src_kind": src.kind,
                    "src_id": src.id,
                    "dst_kind": dst.kind,
                    "dst_id": dst.id,
                    "relation": relation,
                    "created_at": self.now,
                }
            ],
            conflict_columns=["src_kind", "src_id", "dst_kind", "dst_id", "relation"],
        )


class MetadataStore:
    """Metadata in SQLite (the embedded default) or PostgreSQL, chosen by URI.

    The constructor only stores the URI; the first use opens the engine and brings the
    schema up to date (``auto_migrate=False`` leaves that to :meth:`migrate`).

    >>> with MetadataStore("sqlite://") as store:
    ...     store.ensure_project("demo").name
    'demo'
    """

    def __init__(self, uri: str, *, actor: str = "unknown", auto_migrate: bool = True) -> None:
        self.uri = uri
        self.actor = actor
        self.auto_migrate = auto_migrate
        self._engine: Engine | None = None
        self._lock = threading.Lock()
        # An in-memory SQLite database is one connection (StaticPool) that every thread
        # shares: its transactions take turns, or one would begin inside another's.
        self._turns = (
            threading.RLock()
            if uri.startswith("sqlite") and engines.sqlite_path(uri) is None
            else nullcontext()
        )
        _track(self)

    def __repr__(self) -> str:
        return f"MetadataStore({engines.describe_url(self.uri)!r})"

    # -- lifecycle -------------------------------------------------------------------------

    def open(self) -> Self:
        """Connect, and migrate the schema when ``auto_migrate`` is set. Safe to call twice.

        The engine becomes visible to other threads only once the schema is up to date.
        A SQLite file that is not yet at the current schema (or does not exist) is set up
        under a file lock, so processes creating or migrating the same store at once queue
        instead of racing; one already current is opened without it.
        """
        with self._lock:
            if self._engine is not None:
                return self
            path = engines.sqlite_path(self.uri)
            if path is None:
                self._engine = self._open_engine()
                return self
            if path.is_file():
                self._engine = self._open_if_current()
                if self._engine is not None:
                    return self
            from filelock import FileLock, Timeout

            path.parent.mkdir(parents=True, exist_ok=True)
            lock = FileLock(f"{path}.lock", timeout=engines.BUSY_TIMEOUT_S)
            try:
                with lock:
                    self._engine = self._open_engine()
            except Timeout as e:
                raise engines.unavailable(self.uri, e) from e
            return self

    def _open_if_current(self) -> Engine | None:
        """Return an engine on an existing store already at the current schema, else None
        (whatever is wrong, the locked path then reports it)."""
        engine = engines.create_engine(self.uri)
        try:
            with engine.connect() as conn:
                revision = migrations.current_revision(conn)
                conn.rollback()
        except sa.exc.SQLAlchemyError:
            engine.dispose()
            return None
        if revision != migrations.HEAD:
            engine.dispose()
            return None
        return engine

    def _open_engine(self) -> Engine:
        engine = engines.create_engine(self.uri)
        try:
            with engine.connect() as conn:
                revision = migrations.current_revision(conn)
                conn.rollback()
            migrations.check_known(revision)
            if revision != migrations.HEAD and self.auto_migrate:
                _upgrade(engine, "head")
        except sa.exc.OperationalError as e:
            engine.dispose()
            raise engines.unavailable(self.uri, e) from e
        except BaseException:
            engine.dispose()
            raise
        return engine

    def close(self) -> None:
        """Release every connection."""
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine, opened on first use."""
        if self._engine is None:
            self.open()
        assert self._engine is not None
        return self._engine

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    # -- schema ----------------------------------------------------------------------------

    def migrate(self, target: str = "head") -> list[str]:
        """Bring the schema to ``target`` under a lock; returns the revisions applied."""
        return _upgrade(self.engine, target)

    def revision(self) -> str | None:
        """Return the schema revision of the store (None when empty)."""
        with self.read() as conn:
            return migrations.current_revision(conn)

    # -- transactions ----------------------------------------------------------------------

    @contextmanager
    def read(self) -> Iterator[sa.Connection]:
        """Yield a connection in a read transaction."""
        with _GATE.open(), self._turns, self._translated(), self.engine.connect() as conn:
            try:
                yield conn
            finally:
                conn.rollback()

    @contextmanager
    def transaction(
        self, *, actor: str | None = None, project_id: str | None = None
    ) -> Iterator[UnitOfWork]:
        """Yield a unit of work; it commits when the block ends and rolls back if it raises.

        A unique-key collision with a concurrent writer becomes a ConflictError, a lost
        connection a BackendUnavailableError.
        """
        with _GATE.open(), self._turns, self._translated():
            writer = self.engine.connect().execution_options(**{engines.WRITE: True})
            with writer as conn, conn.begin():
                uow = UnitOfWork(conn, actor or self.actor, project_id)
                yield uow
                uow.write_audit()

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """Turn database exceptions into Conveyor errors that say what to do."""
        try:
            yield
        except sa.exc.DatabaseError as e:
            reason = str(e.orig).strip().splitlines()[0] if str(e.orig).strip() else str(e)
            if "append-only" in reason:
                raise PermissionDeniedError(
                    "Audit events are append-only: the store refuses to change or delete them."
                ) from e
            if isinstance(e, sa.exc.IntegrityError):
                raise ConflictError(
                    f"The change conflicts with data already in the store ({reason}).",
                    hint="Another process may have made the same change; read it back and retry.",
                ) from e
            if isinstance(e, sa.exc.OperationalError):
                raise engines.unavailable(self.uri, e) from e
            if isinstance(e, sa.exc.DataError) and _about_nul(str(e.orig)):
                raise InvalidArgumentError(
                    "PostgreSQL cannot store the NUL character (\\x00) in text or JSON, and "
                    f"this change holds one in a name or a value ({reason}), so it was not "
                    "made.",
                    hint="Remove it first: for a table's text column, "
                    "df[col].str.replace('\\x00', ''); for its column names, rename them.",
                ) from e
            raise

    # -- projects --------------------------------------------------------------------------

    def ensure_project(self, name: str, *, description: str = "") -> Project:
        """Return the project called ``name``, creating it (with an audit event) if missing."""
        validate_project_name(name)
        existing = self.find_project(name)
        if existing is not None:
            return existing
        project_id = ids.new_id()
        with self.transaction(project_id=project_id) as uow:
            inserted = insert_ignore(
                uow.conn,
                projects,
                [
                    {
                        "id": project_id,
                        "name": name,
                        "description": description,
                        "created_at": uow.now,
                    }
                ],
                conflict_columns=["name"],
            )
            if inserted:
                uow.audit("project.create", ObjectRef("project", project_id), after={"name": name})
        project = self.find_project(name)
        assert project is not None
        return project

    def list_projects(self) -> list[Project]:
        """Return every project, sorted by name."""
        with self.read() as conn:
            rows = conn.execute(sa.select(projects).order_by(projects.c.name)).all()
        return [Project(**r._mapping) for r in rows]

    def find_project(self, name: str) -> Project | None:
        """Return the project called ``name``, or None."""
        with self.read() as conn:
            row = conn.execute(sa.select(projects).where(projects.c.name == name)).first()
        return Project(**row._mapping) if row else None

    def get_project(self, name: str) -> Project:
        """Return the project called ``name``; raise NotFoundError if there is none."""
        project = self.find_project(name)
        if project is None:
            raise NotFoundError(
                f"No project called {name!r}.", hint="Create it with conveyor.init(project=...)."
            )
        return project

    # -- lineage and audit -----------------------------------------------------------------

    def lineage(
        self,
        ref: ObjectRef,
        *,
        direction: str = "upstream",
        depth: int | None = None,
        project_id: str | None = None,
    ) -> LineageGraph:
        """Return everything upstream or downstream of ``ref``, to ``depth`` steps (any depth);
        with ``project_id``, only the edges recorded in that project.

        One recursive query collects the objects reachable from ``ref`` (each once, so cycles
        end the walk); the edges between them are then ordered by their distance from ``ref``.
        """
        if direction not in ("upstream", "downstream"):
            raise InvalidArgumentError(
                f"direction must be 'upstream' or 'downstream'; got {direction!r}."
            )
        if depth is not None and depth < 1:
            raise InvalidArgumentError(f"depth must be at least 1; got {depth}.")
        e = lineage_edges
        if direction == "upstream":
            near_kind, near_id, far_kind, far_id = (
                e.c.dst_kind,
                e.c.dst_id,
                e.c.src_kind,
                e.c.src_id,
            )
        else:
            near_kind, near_id, far_kind, far_id = (
                e.c.src_kind,
                e.c.src_id,
                e.c.dst_kind,
                e.c.dst_id,
            )
        scope = e.c.project_id == project_id if project_id is not None else sa.true()
        walk = (
            sa.select(far_kind.label("kind"), far_id.label("id"))
            .where(near_kind == ref.kind, near_id == ref.id, scope)
            .cte("walk", recursive=True)
        )
        walk = walk.union(
            sa.select(far_kind, far_id)
            .join(walk, sa.and_(near_kind == walk.c.kind, near_id == walk.c.id))
            .where(scope)
        )
        reached = sa.union(
            sa.select(walk.c.kind, walk.c.id),
            sa.select(sa.literal(ref.kind).label("kind"), sa.literal(ref.id).label("id")),
        ).subquery("reached")
        query = (
            sa.select(e.c.src_kind, e.c.src_id, e.c.dst_kind, e.c.dst_id, e.c.relation)
            .join(reached, sa.and_(near_kind == reached.c.kind, near_id == reached.c.id))
            .where(scope)
        )
        onward: dict[ObjectRef, list[tuple[ObjectRef, ObjectRef, str]]] = {}
        with self.read() as conn:
            for row in conn.execute(query):
                src = ObjectRef(row.src_kind, row.src_id)
                dst = ObjectRef(row.dst_kind, row.dst_id)
                near = dst if direction == "upstream" else src
                onward.setdefault(near, []).append((src, dst, row.relation))
        edges: list[LineageEdge] = []
        distance = {ref: 0}
        frontier = [ref]
        while frontier and (depth is None or distance[frontier[0]] < depth):
            following: list[ObjectRef] = []
            for node in frontier:
                for src, dst, relation in sorted(onward.get(node, [])):
                    edges.append(LineageEdge(src, dst, relation, distance[node] + 1))
                    far = src if direction == "upstream" else dst
                    if far not in distance:
                        distance[far] = distance[node] + 1
                        following.append(far)
            frontier = following
        return LineageGraph(root=ref, direction=direction, edges=edges)

    def audit_log(
        self,
        *,
        obj: ObjectRef | None = None,
        actor: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        project_id: str | None = None,
        limit: int = 100,
    ) -> list[AuditEvent]:
        """Return audit events, newest first, filtered by object, actor, action, time and
        project."""
        query = sa.select(audit_events).order_by(audit_events.c.id.desc()).limit(limit)
        if project_id is not None:
            query = query.where(audit_events.c.project_id == project_id)
        if obj is not None:
            query = query.where(
                audit_events.c.object_kind == obj.kind, audit_events.c.object_id == obj.id
            )
        if actor is not None:
            query = query.where(audit_events.c.actor == actor)
        if action is not None:
            query = query.where(audit_events.c.action == action)
        if since is not None:
            query = query.where(audit_events.c.at >= since)
        with self.read() as conn:
            rows = conn.execute(query).all()
        return [
            AuditEvent(
                id=r.id,
                at=r.at,
                actor=r.actor,
                action=r.action,
                object=ObjectRef(r.object_kind, r.object_id),
                project_id=r.project_id,
                before=r.before,
                after=r.after,
                token_id=r.token_id,
                source=r.source,
            )
            for r in rows
        ]

    def analyze(self, tables: list[str]) -> None:
        """Refresh the query planner's statistics for ``tables``."""
        from conveyor.store.metadata.schema import metadata

        unknown = [t for t in tables if t not in metadata.tables]
        if unknown:
            raise InvalidArgumentError(f"Unknown table(s) to analyze: {', '.join(unknown)}.")
        with self.transaction() as uow:
            for table in tables:  # names checked against the schema above
                uow.conn.exec_driver_sql(f"ANALYZE {table}")

    def counts(self) -> dict[str, int]:
        """Return the number of rows in each table (for ``conveyor info``)."""
        from conveyor.store.metadata.schema import metadata

        out: dict[str, int] = {}
        with self.read() as conn:
            existing = set(sa.inspect(conn).get_table_names())
            for table in metadata.sorted_tables:
                if table.name in existing:
                    out[table.name] = conn.execute(
                        sa.select(sa.func.count()).select_from(table)
                    ).scalar_one()
        return out


class _ForkGate:
    """Transactions pass through; a fork waits until none is in progress.

    SQLite keeps each process's file-lock bookkeeping in memory: a fork taken while a
    connection holds a lock hands the child a copy that says the lock is held, and the
    child's own connections then wait on a lock nobody will release.

    Re-entrant per thread: a read nested in a transaction never waits, and a thread forking
    from inside its own transaction waits only for the others.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._active = 0
        self._forking = False
        self._local = threading.local()

    def _depth(self) -> int:
        return getattr(self._local, "depth", 0)

    @contextmanager
    def open(self) -> Iterator[None]:
        depth = self._depth()
        with self._cond:
            while self._forking and depth == 0:
                self._cond.wait()
            self._active += 1
        self._local.depth = depth + 1
        try:
            yield
        finally:
            self._local.depth = depth
            with self._cond:
                self._active -= 1
                self._cond.notify_all()

    def before_fork(self) -> None:
        self._cond.acquire()  # held across the fork: no transaction starts meanwhile
        self._forking = True
        own = self._depth()
        self._cond.wait_for(lambda: self._active == own, timeout=_FORK_WAIT_S)

    def after_fork_in_parent(self) -> None:
        self._forking = False
        self._cond.notify_all()
        self._cond.release()

    def after_fork_in_child(self) -> None:
        own = self._depth()  # only the forking thread exists in the child
        self._cond = threading.Condition()
        self._forking = False
        self._active = own


_FORK_WAIT_S = 30.0
_GATE = _ForkGate()


def _after_fork_in_child() -> None:
    """A forked child must neither use nor close the parent's pooled connections.

    Using them would share a socket or a SQLite handle between processes; closing them (even
    by garbage collection) would roll back the parent's transaction in progress and disturb
    SQLite's shared WAL index. So the child keeps the inherited pools referenced, untouched,
    and starts new ones.
    """
    _GATE.after_fork_in_child()
    for store in list(_open_stores):
        store._lock = threading.Lock()
        if isinstance(store._turns, type(threading.RLock())):  # a thread may hold it at fork
            store._turns = threading.RLock()
        if store._engine is not None:
            _inherited_pools.append(store._engine.pool)
            store._engine.dispose(close=False)


_open_stores: weakref.WeakSet[MetadataStore] = weakref.WeakSet()
_inherited_pools: list[Any] = []
_fork_hook: list[bool] = []


def _track(store: MetadataStore) -> None:
    """Remember ``store`` for the fork hook, installed on first use (not at import)."""
    _open_stores.add(store)
    if not _fork_hook:
        os.register_at_fork(
            before=_GATE.before_fork,
            after_in_parent=_GATE.after_fork_in_parent,
            after_in_child=_after_fork_in_child,
        )
        _fork_hook.append(True)


def _upgrade(engine: Engine, target: str) -> list[str]:
    """Run the migrations to ``target`` in one write transaction on ``engine``."""
    if target != "head" and target not in migrations.REVISIONS:
        raise InvalidArgumentError(
            f"Unknown schema revision {target!r}; known: {', '.join(migrations.REVISIONS)} "
            "or 'head'."
        )
    writer = engine.connect().execution_options(**{engines.WRITE: True})
    with writer as conn, conn.begin():
        return migrations.upgrade(conn, target)


def _about_nul(reason: str) -> bool:
    """Whether PostgreSQL (or its driver) refused a NUL character: text cannot hold one,
    and JSONB refuses the escape \\u0000."""
    return "\\u0000" in reason or "(0x00)" in reason
