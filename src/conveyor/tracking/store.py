"""Tracking's SQL: experiments, runs, and batches of logged values written in one transaction."""

from __future__ import annotations

import functools
import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from conveyor.core import ids
from conveyor.core.clock import utcnow
from conveyor.core.errors import ConflictError, InvalidArgumentError, NotFoundError
from conveyor.store.catalog import claim_content
from conveyor.store.metadata.schema import (
    artifact_links,
    experiments,
    latest_metrics,
    metrics,
    params,
    runs,
    tags,
)
from conveyor.store.metadata.sql import Prepared, dialect_insert, insert_ignore
from conveyor.store.metadata.store import UnitOfWork
from conveyor.store.records import ObjectRef
from conveyor.store.workspace import Workspace
from conveyor.tracking.records import Experiment, MetricPoint, Run, RunStatus

__all__ = [
    "CreateRun",
    "EndRun",
    "LinkArtifact",
    "LogMetric",
    "LogParam",
    "SetTag",
    "TrackingStore",
]

log = logging.getLogger(__name__)

_EXPERIMENT_NAME_MAX = 200
_FIRST_ANALYZE = 200
_STATUSES = {status.value: status for status in RunStatus}


# -- operations the writer batches ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreateRun:
    row: dict[str, Any]


@dataclass(frozen=True, slots=True)
class LogParam:
    run_id: str
    key: str
    value: str


@dataclass(frozen=True, slots=True)
class SetTag:
    run_id: str
    key: str
    value: str


@dataclass(frozen=True, slots=True)
class LogMetric:
    run_id: str
    key: str
    value: float | None
    step: int
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class EndRun:
    run_id: str
    status: RunStatus
    end_time: datetime


@dataclass(frozen=True, slots=True)
class LinkArtifact:
    owner: ObjectRef
    name: str
    digest: str
    size: int
    media_type: str


Op = CreateRun | LogParam | SetTag | LogMetric | EndRun | LinkArtifact


_INSERT_PARAMS = Prepared(params.insert())  # for runs created in the batch: nothing to meet


@dataclass(frozen=True, slots=True)
class _Statements:
    """Statements built once per dialect and executed with many rows each.

    Every write is idempotent, so the writer may resend a batch whose commit was lost.
    """

    insert_runs: Any
    insert_metrics: Prepared
    insert_latest: Prepared
    insert_tags: Prepared
    upsert_tags: Prepared
    upsert_latest: Prepared
    end_runs: Any


@functools.cache
def _statements(dialect: str) -> _Statements:
    insert = dialect_insert(dialect)
    tags_stmt = insert(tags)
    latest_stmt = insert(latest_metrics)
    newer = sa.or_(
        latest_metrics.c.step < latest_stmt.excluded.step,
        sa.and_(
            latest_metrics.c.step == latest_stmt.excluded.step,
            latest_metrics.c.timestamp_ms <= latest_stmt.excluded.timestamp_ms,
        ),
    )
    return _Statements(
        insert_runs=insert(runs).on_conflict_do_nothing(index_elements=["id"]),
        insert_metrics=Prepared(insert(metrics).on_conflict_do_nothing()),
        insert_latest=Prepared(insert(latest_metrics).on_conflict_do_nothing()),
        insert_tags=Prepared(insert(tags).on_conflict_do_nothing()),
        upsert_tags=Prepared(
            tags_stmt.on_conflict_do_update(
                index_elements=["run_id", "key"], set_={"value": tags_stmt.excluded.value}
            )
        ),
        upsert_latest=Prepared(
            latest_stmt.on_conflict_do_update(
                index_elements=["run_id", "key"],
                set_={
                    "value": latest_stmt.excluded.value,
                    "step": latest_stmt.excluded.step,
                    "timestamp_ms": latest_stmt.excluded.timestamp_ms,
                },
                where=newer,
            )
        ),
        end_runs=runs.update()
        .where(runs.c.id == sa.bindparam("b_id"))
        .values(status=sa.bindparam("b_status"), end_time=sa.bindparam("b_end")),
    )


class TrackingStore:
    """Experiments and runs of one workspace's project."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self._experiments: dict[str, Experiment] = {}
        self._lock = threading.Lock()
        self._runs_written = 0
        self._analyze_at = _FIRST_ANALYZE

    # -- experiments -----------------------------------------------------------------------

    def experiment(self, name: str, *, create: bool = True) -> Experiment:
        """Return the experiment called ``name`` in this project, creating it if asked."""
        if not isinstance(name, str) or not name.strip() or len(name) > _EXPERIMENT_NAME_MAX:
            raise InvalidArgumentError(
                f"An experiment name must be 1 to {_EXPERIMENT_NAME_MAX} characters; got {name!r}."
            )
        with self._lock:
            if name in self._experiments:
                return self._experiments[name]
        project = self.ws.project
        where = (experiments.c.project_id == project.id) & (experiments.c.name == name)
        with self.ws.metadata.read() as conn:
            row = conn.execute(sa.select(experiments).where(where)).first()
        if row is None:
            if not create:
                raise NotFoundError(
                    f"No experiment called {name!r} in project {project.name!r}.",
                    hint="List them with: conveyor experiments list",
                )
            with self.ws.metadata.transaction(project_id=project.id) as uow:
                new_id = ids.new_id()
                if insert_ignore(
                    uow.conn,
                    experiments,
                    [
                        {
                            "id": new_id,
                            "project_id": project.id,
                            "name": name,
                            "description": "",
                            "created_at": uow.now,
                        }
                    ],
                    conflict_columns=["project_id", "name"],
                ):
                    uow.audit(
                        "experiment.create", ObjectRef("experiment", new_id), after={"name": name}
                    )
                row = uow.conn.execute(sa.select(experiments).where(where)).one()
        exp = Experiment(
            id=row.id, name=row.name, project_id=row.project_id, created_at=row.created_at
        )
        with self._lock:
            self._experiments[name] = exp
        return exp

    def list_experiments(self) -> list[tuple[Experiment, int]]:
        """Return this project's experiments with their number of (not deleted) runs."""
        count = (
            sa.select(sa.func.count())
            .where(runs.c.experiment_id == experiments.c.id, runs.c.deleted_at.is_(None))
            .scalar_subquery()
        )
        query = (
            sa.select(experiments, count.label("n_runs"))
            .where(experiments.c.project_id == self.ws.project.id)
            .order_by(experiments.c.name)
        )
        with self.ws.metadata.read() as conn:
            rows = conn.execute(query).all()
        return [(Experiment(r.id, r.name, r.project_id, r.created_at), int(r.n_runs)) for r in rows]

    # -- writing ---------------------------------------------------------------------------

    def write(self, ops: Sequence[Op]) -> None:
        """Apply ``ops`` in one transaction, with an audit event per run created or ended."""
        with self.ws.metadata.transaction(project_id=self.ws.project.id) as uow:
            created = self.write_in(uow, ops)
        self.after_write(created)

    def after_write(self, created: int) -> None:
        """Count runs created; refresh the planner's statistics as the tables grow."""
        with self._lock:
            self._runs_written += created
            due = self._runs_written >= self._analyze_at
            if due:
                self._analyze_at *= 2
        if due:
            self._refresh_statistics()

    def write_in(self, uow: UnitOfWork, ops: Sequence[Op]) -> int:
        """Apply ``ops`` inside ``uow`` (another service's transaction); return runs created."""
        created: list[dict[str, Any]] = []
        new_params: dict[tuple[str, str], str] = {}
        new_tags: dict[tuple[str, str], str] = {}
        points: list[dict[str, Any]] = []
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        ends: list[EndRun] = []
        links: list[LinkArtifact] = []
        for op in ops:
            if type(op) is LogMetric:
                point = {
                    "run_id": op.run_id,
                    "key": op.key,
                    "step": op.step,
                    "timestamp_ms": op.timestamp_ms,
                    "value": op.value,
                }
                points.append(point)
                current = latest.get((op.run_id, op.key))
                if current is None or (op.step, op.timestamp_ms) >= (
                    current["step"],
                    current["timestamp_ms"],
                ):
                    latest[(op.run_id, op.key)] = point
            elif type(op) is CreateRun:
                created.append(op.row)
            elif type(op) is LogParam:
                seen = new_params.setdefault((op.run_id, op.key), op.value)
                if seen != op.value:
                    raise _param_conflict(op.run_id, op.key, seen, op.value)
            elif type(op) is SetTag:
                new_tags[(op.run_id, op.key)] = op.value
            elif type(op) is EndRun:
                ends.append(op)
            elif type(op) is LinkArtifact:
                links.append(op)
        fresh = {row["id"]: row for row in created}
        # A run created and ended in the same batch is inserted finished: no update needed.
        finished_fresh = [e for e in ends if e.run_id in fresh]
        for end in finished_fresh:
            fresh[end.run_id] = {
                **fresh[end.run_id],
                "status": str(end.status),
                "end_time": end.end_time,
            }
        updates = [e for e in ends if e.run_id not in fresh]
        conn = uow.conn
        statements = _statements(conn.dialect.name)
        # A resent batch (its first commit's acknowledgement was lost) finds its runs
        # stored already: those are neither inserted nor audited again.
        stored = _existing(conn, runs.c.id, list(fresh)) if fresh else set()
        inserted = {rid: row for rid, row in fresh.items() if rid not in stored}
        if inserted:
            conn.execute(statements.insert_runs, list(inserted.values()))
            for row in created:
                if row["id"] in inserted:
                    uow.audit(
                        "run.create",
                        ObjectRef("run", row["id"]),
                        after={"name": row["name"], "experiment_id": row["experiment_id"]},
                    )
        if new_params:
            self._insert_params(conn, new_params, set(inserted))
        if new_tags:
            tag_rows = [{"run_id": r, "key": k, "value": v} for (r, k), v in new_tags.items()]
            _split(tag_rows, fresh, statements.insert_tags, statements.upsert_tags, conn)
        if points:
            statements.insert_metrics.executemany(conn, points)
            _split(
                list(latest.values()),
                fresh,
                statements.insert_latest,
                statements.upsert_latest,
                conn,
            )
        for link in links:
            claim_content(conn, self.ws.artifacts, link.digest, link.size, link.media_type, uow.now)
            insert_ignore(
                conn,
                artifact_links,
                [
                    {
                        "id": ids.new_id(),
                        "digest": link.digest,
                        "owner_kind": link.owner.kind,
                        "owner_id": link.owner.id,
                        "name": link.name,
                        "created_at": uow.now,
                    }
                ],
                conflict_columns=["owner_kind", "owner_id", "name"],
            )
        running = (
            _existing(
                conn,
                runs.c.id,
                [e.run_id for e in updates],
                runs.c.status == str(RunStatus.RUNNING),
            )
            if updates
            else set()
        )
        updates = [e for e in updates if e.run_id in running]
        if updates:
            conn.execute(
                statements.end_runs,
                [
                    {"b_id": e.run_id, "b_status": str(e.status), "b_end": e.end_time}
                    for e in updates
                ],
            )
        for end in ends:
            if end.run_id not in inserted and end.run_id not in running:
                continue  # ended already: a resent batch
            uow.audit(
                "run.end",
                ObjectRef("run", end.run_id),
                before={"status": "RUNNING"},
                after={"status": str(end.status)},
            )
        return len(created)

    def _refresh_statistics(self) -> None:
        """Keep the planner's statistics in step as the store grows (doubling: a handful of
        ANALYZEs over a store's life), so searches pick the most selective index.

        The batch is committed already: a failure here is logged, never raised, so the
        writer does not send the batch again.
        """
        try:
            self.ws.metadata.analyze(["runs", "params", "tags", "latest_metrics"])
        except Exception as e:  # noqa: BLE001 - statistics are an optimization
            log.warning("conveyor: could not refresh the query planner's statistics: %s", e)

    @staticmethod
    def _insert_params(
        conn: sa.Connection, new: dict[tuple[str, str], str], fresh_runs: set[str]
    ) -> None:
        # Runs created in this very batch have no params yet: no need to look.
        older = {(r, k) for r, k in new if r not in fresh_runs}
        existing: dict[tuple[str, str], str] = {}
        if older:
            existing = {
                (r.run_id, r.key): r.value
                for r in conn.execute(
                    sa.select(params).where(
                        params.c.run_id.in_(sorted({r for r, _ in older})),
                        params.c.key.in_(sorted({k for _, k in older})),
                    )
                )
            }
        rows = []
        for (run_id, key), value in new.items():
            if (run_id, key) in existing:
                if existing[(run_id, key)] != value:
                    raise _param_conflict(run_id, key, existing[(run_id, key)], value)
                continue
            rows.append({"run_id": run_id, "key": key, "value": value})
        _INSERT_PARAMS.executemany(conn, rows)

    def set_deleted(self, run_id: str, deleted: bool) -> None:
        """Mark a run deleted (hidden from search) or restore it, with an audit event; a run
        already so is left alone (no second event, its deletion time kept)."""
        self.get_run(run_id, include_deleted=True)
        state = runs.c.deleted_at.is_(None) if deleted else runs.c.deleted_at.is_not(None)
        with self.ws.metadata.transaction(project_id=self.ws.project.id) as uow:
            changed = uow.conn.execute(
                runs.update()
                .where(runs.c.id == run_id, state)
                .values(deleted_at=utcnow() if deleted else None)
            ).rowcount
            if changed:
                uow.audit("run.delete" if deleted else "run.restore", ObjectRef("run", run_id))

    # -- reading ---------------------------------------------------------------------------

    def get_run(self, run_id: str, *, include_deleted: bool = True) -> Run:
        """Return the run with id ``run_id`` with its params, latest metrics and tags."""
        query = (
            sa.select(runs, experiments.c.name.label("experiment_name"))
            .join(experiments, experiments.c.id == runs.c.experiment_id)
            .where(runs.c.id == run_id, runs.c.project_id == self.ws.project.id)
        )
        with self.ws.metadata.read() as conn:
            row = conn.execute(query).first()
            if row is None or (row.deleted_at is not None and not include_deleted):
                raise NotFoundError(
                    f"No run {run_id!r} in project {self.ws.project.name!r}.",
                    hint="List runs with: conveyor runs list",
                )
            found = load_run_values(conn, [run_id])
        run_params, run_metrics, run_tags = found
        return run_from_row(
            row, run_params.get(run_id, {}), run_metrics.get(run_id, {}), run_tags.get(run_id, {})
        )

    def latest_metric_ops(self, run_id: str, to_run_id: str) -> list[LogMetric]:
        """The latest point of each metric of ``run_id`` (its step and time kept), as
        operations that log them on ``to_run_id`` (a cached pipeline step shows the metrics
        of the run it reuses)."""
        query = sa.select(
            latest_metrics.c.key,
            latest_metrics.c.value,
            latest_metrics.c.step,
            latest_metrics.c.timestamp_ms,
        ).where(latest_metrics.c.run_id == run_id)
        with self.ws.metadata.read() as conn:
            rows = conn.execute(query).all()
        return [LogMetric(to_run_id, key, value, step, ts) for key, value, step, ts in rows]

    def metric_history(
        self, run_id: str, key: str, *, max_points: int | None = None
    ) -> list[MetricPoint]:
        """Return every point of a metric ordered by step, or ``max_points`` evenly spread."""
        return [
            MetricPoint(step, math.nan if value is None else value, ts)
            for step, value, ts in self.metric_rows(run_id, key, max_points=max_points)
        ]

    def metric_rows(
        self, run_id: str, key: str, *, max_points: int | None = None
    ) -> list[tuple[int, float | None, int]]:
        """:meth:`metric_history` as plain ``(step, value or None, timestamp_ms)`` tuples (the
        server sends these as they are: no object per point)."""
        if max_points is not None and max_points < 2:
            raise InvalidArgumentError(f"max_points must be at least 2; got {max_points}.")
        base = sa.select(metrics.c.step, metrics.c.value, metrics.c.timestamp_ms).where(
            metrics.c.run_id == run_id, metrics.c.key == key
        )
        with self.ws.metadata.read() as conn:
            exists = conn.execute(
                sa.select(runs.c.id).where(
                    runs.c.id == run_id, runs.c.project_id == self.ws.project.id
                )
            ).first()
            if exists is None:
                raise NotFoundError(
                    f"No run {run_id!r} in project {self.ws.project.name!r}.",
                    hint="List runs with: conveyor runs list",
                )
            if max_points is not None:
                total = conn.execute(
                    sa.select(sa.func.count()).select_from(base.subquery())
                ).scalar_one()
                if total > max_points:
                    return _downsample(conn, base, total, max_points)
            return _history(conn, run_id, key)


def _existing(conn: sa.Connection, column: Any, ids: list[str], *where: Any) -> set[str]:
    """Return which of ``ids`` have a row (matching ``where``) in ``column``'s table."""
    found: set[str] = set()
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        found.update(conn.execute(sa.select(column).where(column.in_(chunk), *where)).scalars())
    return found


def _split(
    rows: list[dict[str, Any]],
    fresh: dict[str, Any],
    insert: Prepared,
    upsert: Prepared,
    conn: sa.Connection,
) -> None:
    """Plain-insert rows of runs created in this batch (nothing to collide with); upsert others."""
    insert.executemany(conn, [r for r in rows if r["run_id"] in fresh])
    upsert.executemany(conn, [r for r in rows if r["run_id"] not in fresh])


def _downsample(
    conn: sa.Connection, base: sa.Select[Any], total: int, max_points: int
) -> list[tuple[int, float | None, int]]:
    """Keep ``max_points`` points evenly spread by position, the first and the last among
    them, so the curve keeps its shape: the points ``0 .. total-1`` fall in ``max_points``
    buckets (``k * (max_points - 1) // (total - 1)``), and each bucket's first is kept."""
    numbered = base.add_columns(
        sa.func.row_number().over(order_by=(metrics.c.step, metrics.c.timestamp_ms)).label("n")
    ).subquery()
    k = numbered.c.n - 1
    spread, span = max_points - 1, total - 1
    query = (
        sa.select(numbered.c.step, numbered.c.value, numbered.c.timestamp_ms)
        .where((k == 0) | ((k * spread) // span != ((k - 1) * spread) // span))
        .order_by(numbered.c.n)
    )
    return [(r.step, r.value, r.timestamp_ms) for r in conn.execute(query)]


def _history(conn: sa.Connection, run_id: str, key: str) -> list[tuple[int, float | None, int]]:
    """Every point of one metric, read straight from the driver (10,000 rows in a few ms)."""
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        # Fixed SQL (only the driver's placeholder is inserted); values are bound parameters.
        sql = (
            f"SELECT step, value, timestamp_ms FROM metrics WHERE run_id = {mark} "  # noqa: S608
            f'AND "key" = {mark} ORDER BY step, timestamp_ms'
        )
        cursor.execute(sql, (run_id, key))
        return [tuple(row) for row in cursor.fetchall()]
    finally:
        cursor.close()


def _param_conflict(run_id: str, key: str, old: str, new: str) -> ConflictError:
    return ConflictError(
        f"The param {key!r} of run {run_id} is already {old!r}; it cannot become {new!r}.",
        hint="Params are fixed once logged: use another key, or a metric for values that change.",
    )


def load_run_values(
    conn: sa.Connection, run_ids: Sequence[str]
) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, float]], dict[str, dict[str, str]]]:
    """Return params, latest metrics and tags of ``run_ids``, each keyed by run id.

    A page of search results needs these for up to thousands of runs at once, so the three
    queries go straight to the driver: fixed SQL with one bound placeholder per id.
    """
    p: dict[str, dict[str, str]] = {}
    m: dict[str, dict[str, float]] = {}
    t: dict[str, dict[str, str]] = {}
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        for start in range(0, len(run_ids), 500):
            chunk = tuple(run_ids[start : start + 500])
            marks = ", ".join([mark] * len(chunk))
            for table, into in (("params", p), ("latest_metrics", m), ("tags", t)):
                # Table names are constants from this list; ids are bound parameters.
                cursor.execute(
                    f'SELECT run_id, "key", value FROM {table} WHERE run_id IN ({marks})',  # noqa: S608
                    chunk,
                )
                for run_id, key, value in cursor.fetchall():
                    into.setdefault(run_id, {})[key] = value
    finally:
        cursor.close()
    for values in m.values():
        for key, value in values.items():
            if value is None:
                values[key] = math.nan
    return p, m, t


def run_from_row(
    row: Any, run_params: dict[str, str], run_metrics: dict[str, float], run_tags: dict[str, str]
) -> Run:
    """Build a :class:`Run` from a ``runs`` row joined with its experiment's name."""
    return Run(
        id=row.id,
        name=row.name,
        experiment=row.experiment_name,
        status=_STATUSES[row.status],
        start_time=row.start_time,
        end_time=row.end_time,
        user=row.user,
        parent_id=row.parent_id,
        params=run_params,
        metrics=run_metrics,
        tags=run_tags,
        git_commit=row.git_commit,
        git_branch=row.git_branch,
        git_dirty=row.git_dirty,
        command=row.command,
        python_version=row.python_version,
        host=row.host,
        environment_digest=row.environment_digest,
        deleted=row.deleted_at is not None,
    )
