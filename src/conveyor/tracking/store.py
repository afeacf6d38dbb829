"""Tracking's SQL: experiments, runs, and batches of logged values written in one transaction."""

from __future__ import annotations

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
from conveyor.store.metadata.sql import insert_ignore
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

_EXPERIMENT_NAME_MAX = 200


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


def _dialect_insert(conn: sa.Connection, table: sa.Table) -> Any:
    from sqlalchemy.dialects import postgresql, sqlite

    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


class TrackingStore:
    """Experiments and runs of one workspace's project."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self._experiments: dict[str, Experiment] = {}
        self._lock = threading.Lock()

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
        created: list[dict[str, Any]] = []
        new_params: dict[tuple[str, str], str] = {}
        new_tags: dict[tuple[str, str], str] = {}
        points: list[dict[str, Any]] = []
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        ends: list[EndRun] = []
        links: list[LinkArtifact] = []
        for op in ops:
            if isinstance(op, LogMetric):
                point = {
                    "run_id": op.run_id,
                    "key": op.key,
                    "step": op.step,
                    "timestamp_ms": op.timestamp_ms,
                    "value": op.value,
                }
                points.append(point)
                current = latest.get((op.run_id, op.key))
                if current is None or op.step >= current["step"]:
                    latest[(op.run_id, op.key)] = point
            elif isinstance(op, CreateRun):
                created.append(op.row)
            elif isinstance(op, LogParam):
                seen = new_params.setdefault((op.run_id, op.key), op.value)
                if seen != op.value:
                    raise _param_conflict(op.run_id, op.key, seen, op.value)
            elif isinstance(op, SetTag):
                new_tags[(op.run_id, op.key)] = op.value
            elif isinstance(op, EndRun):
                ends.append(op)
            else:
                links.append(op)
        with self.ws.metadata.transaction(project_id=self.ws.project.id) as uow:
            conn = uow.conn
            if created:
                conn.execute(runs.insert(), created)
                for row in created:
                    uow.audit(
                        "run.create",
                        ObjectRef("run", row["id"]),
                        after={"name": row["name"], "experiment_id": row["experiment_id"]},
                    )
            if new_params:
                self._insert_params(conn, new_params)
            if new_tags:
                stmt = _dialect_insert(conn, tags)
                stmt = stmt.on_conflict_do_update(
                    index_elements=["run_id", "key"], set_={"value": stmt.excluded.value}
                )
                conn.execute(
                    stmt, [{"run_id": r, "key": k, "value": v} for (r, k), v in new_tags.items()]
                )
            if points:
                conn.execute(metrics.insert(), points)
                stmt = _dialect_insert(conn, latest_metrics)
                stmt = stmt.on_conflict_do_update(
                    index_elements=["run_id", "key"],
                    set_={
                        "value": stmt.excluded.value,
                        "step": stmt.excluded.step,
                        "timestamp_ms": stmt.excluded.timestamp_ms,
                    },
                    where=latest_metrics.c.step <= stmt.excluded.step,
                )
                conn.execute(stmt, list(latest.values()))
            for link in links:
                claim_content(
                    conn, self.ws.artifacts, link.digest, link.size, link.media_type, uow.now
                )
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
            for end in ends:
                conn.execute(
                    runs.update()
                    .where(runs.c.id == end.run_id)
                    .values(status=str(end.status), end_time=end.end_time)
                )
                uow.audit(
                    "run.end",
                    ObjectRef("run", end.run_id),
                    before={"status": "RUNNING"},
                    after={"status": str(end.status)},
                )

    @staticmethod
    def _insert_params(conn: sa.Connection, new: dict[tuple[str, str], str]) -> None:
        run_ids = sorted({r for r, _ in new})
        existing = {
            (r.run_id, r.key): r.value
            for r in conn.execute(
                sa.select(params).where(
                    params.c.run_id.in_(run_ids), params.c.key.in_(sorted({k for _, k in new}))
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
        if rows:
            conn.execute(params.insert(), rows)

    def set_deleted(self, run_id: str, deleted: bool) -> None:
        """Mark a run deleted (hidden from search) or restore it, with an audit event."""
        self.get_run(run_id, include_deleted=True)
        with self.ws.metadata.transaction(project_id=self.ws.project.id) as uow:
            uow.conn.execute(
                runs.update()
                .where(runs.c.id == run_id)
                .values(deleted_at=utcnow() if deleted else None)
            )
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

    def metric_history(
        self, run_id: str, key: str, *, max_points: int | None = None
    ) -> list[MetricPoint]:
        """Return every point of a metric ordered by step, or ``max_points`` evenly spread."""
        self.get_run(run_id)
        base = sa.select(metrics.c.step, metrics.c.value, metrics.c.timestamp_ms).where(
            metrics.c.run_id == run_id, metrics.c.key == key
        )
        with self.ws.metadata.read() as conn:
            if max_points is not None:
                if max_points < 2:
                    raise InvalidArgumentError(f"max_points must be at least 2; got {max_points}.")
                total = conn.execute(
                    sa.select(sa.func.count()).select_from(base.subquery())
                ).scalar_one()
                if total > max_points:
                    return _downsample(conn, base, total, max_points)
            rows = conn.execute(base.order_by(metrics.c.step, metrics.c.timestamp_ms)).all()
        return [MetricPoint(r.step, _nan(r.value), r.timestamp_ms) for r in rows]


def _downsample(
    conn: sa.Connection, base: sa.Select[Any], total: int, max_points: int
) -> list[MetricPoint]:
    """Keep every k-th point by position, plus the last, so the curve keeps its shape."""
    numbered = base.add_columns(
        sa.func.row_number().over(order_by=(metrics.c.step, metrics.c.timestamp_ms)).label("n")
    ).subquery()
    every = -(-total // (max_points - 1))
    query = (
        sa.select(numbered.c.step, numbered.c.value, numbered.c.timestamp_ms)
        .where(((numbered.c.n - 1) % every == 0) | (numbered.c.n == total))
        .order_by(numbered.c.n)
    )
    return [MetricPoint(r.step, _nan(r.value), r.timestamp_ms) for r in conn.execute(query)]


def _nan(value: float | None) -> float:
    return float("nan") if value is None else value


def _param_conflict(run_id: str, key: str, old: str, new: str) -> ConflictError:
    return ConflictError(
        f"The param {key!r} of run {run_id} is already {old!r}; it cannot become {new!r}.",
        hint="Params are fixed once logged: use another key, or a metric for values that change.",
    )


def load_run_values(
    conn: sa.Connection, run_ids: Sequence[str]
) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, float]], dict[str, dict[str, str]]]:
    """Return params, latest metrics and tags of ``run_ids``, each keyed by run id."""
    p: dict[str, dict[str, str]] = {}
    m: dict[str, dict[str, float]] = {}
    t: dict[str, dict[str, str]] = {}
    for start in range(0, len(run_ids), 500):
        chunk = list(run_ids[start : start + 500])
        for r in conn.execute(
            sa.select(params.c.run_id, params.c.key, params.c.value).where(
                params.c.run_id.in_(chunk)
            )
        ):
            p.setdefault(r.run_id, {})[r.key] = r.value
        for r in conn.execute(
            sa.select(latest_metrics.c.run_id, latest_metrics.c.key, latest_metrics.c.value).where(
                latest_metrics.c.run_id.in_(chunk)
            )
        ):
            m.setdefault(r.run_id, {})[r.key] = _nan(r.value)
        for r in conn.execute(
            sa.select(tags.c.run_id, tags.c.key, tags.c.value).where(tags.c.run_id.in_(chunk))
        ):
            t.setdefault(r.run_id, {})[r.key] = r.value
    return p, m, t


def run_from_row(
    row: Any, run_params: dict[str, str], run_metrics: dict[str, float], run_tags: dict[str, str]
) -> Run:
    """Build a :class:`Run` from a ``runs`` row joined with its experiment's name."""
    return Run(
        id=row.id,
        name=row.name,
        experiment=row.experiment_name,
        status=RunStatus(row.status),
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
