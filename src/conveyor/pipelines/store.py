"""Pipelines' SQL: pipeline and step runs, cache lookups, cancellation, schedules, leases."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from conveyor.core import ids
from conveyor.core.errors import NotFoundError
from conveyor.pipelines.records import Outputs, PipelineRun, PipelineStatus, StepRun, StepStatus
from conveyor.store.metadata.schema import pipeline_runs, pipelines, runs, step_runs
from conveyor.store.metadata.sql import insert_ignore
from conveyor.store.metadata.store import UnitOfWork

__all__ = ["PipelineStore"]

_REUSABLE = [str(StepStatus.SUCCEEDED), str(StepStatus.CACHED)]


class PipelineStore:
    def __init__(self, ws: Any) -> None:
        self.ws = ws

    @property
    def project_id(self) -> str:
        return str(self.ws.project.id)

    # -- writing -------------------------------------------------------------------------

    def ensure_pipeline(self, uow: UnitOfWork, name: str, entrypoint: str) -> str:
        conn = uow.conn
        insert_ignore(
            conn,
            pipelines,
            [
                {
                    "id": ids.new_id(),
                    "project_id": self.project_id,
                    "name": name,
                    "entrypoint": entrypoint,
                    "created_at": uow.now,
                    "updated_at": uow.now,
                }
            ],
            conflict_columns=["project_id", "name"],
        )
        row = conn.execute(
            sa.select(pipelines.c.id, pipelines.c.entrypoint).where(
                pipelines.c.project_id == self.project_id, pipelines.c.name == name
            )
        ).one()
        if row.entrypoint != entrypoint:
            conn.execute(
                pipelines.update()
                .where(pipelines.c.id == row.id)
                .values(entrypoint=entrypoint, updated_at=uow.now)
            )
        return str(row.id)

    def insert_run(self, uow: UnitOfWork, row: dict[str, Any]) -> None:
        uow.conn.execute(pipeline_runs.insert(), [row])

    def insert_steps(self, uow: UnitOfWork, rows: list[dict[str, Any]]) -> None:
        if rows:
            uow.conn.execute(step_runs.insert(), rows)

    def update_steps(self, uow: UnitOfWork, changes: list[dict[str, Any]]) -> None:
        """Apply ``changes`` (each with ``id`` and the columns to set) to step runs."""
        by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for change in changes:
            columns = tuple(sorted(k for k in change if k != "id"))
            by_columns.setdefault(columns, []).append(change)
        for columns, rows in by_columns.items():
            stmt = (
                step_runs.update()
                .where(step_runs.c.id == sa.bindparam("b_id"))
                .values({c: sa.bindparam(f"b_{c}") for c in columns})
            )
            uow.conn.execute(stmt, [{f"b_{k}": v for k, v in row.items()} for row in rows])

    def finish_run(self, uow: UnitOfWork, run_id: str, status: PipelineStatus, error: str) -> None:
        uow.conn.execute(
            pipeline_runs.update()
            .where(pipeline_runs.c.id == run_id)
            .values(status=str(status), error=error, ended_at=uow.now)
        )

    def request_cancel(self, run_id: str) -> PipelineRun:
        """Ask the coordinator of a running pipeline run to stop it."""
        run = self.get_run(run_id)
        with self.ws.metadata.transaction(project_id=self.project_id) as uow:
            uow.conn.execute(
                pipeline_runs.update()
                .where(pipeline_runs.c.id == run.id)
                .values(cancel_requested=True)
            )
            uow.audit("pipeline_run.cancel", _ref(run.id))
        return self.get_run(run.id)

    def heartbeat(self, run_id: str) -> bool:
        """Record that the coordinator is alive; return whether someone asked it to stop."""
        with self.ws.metadata.transaction(project_id=self.project_id) as uow:
            uow.conn.execute(
                pipeline_runs.update()
                .where(pipeline_runs.c.id == run_id)
                .values(heartbeat_at=uow.now)
            )
            return bool(
                uow.conn.execute(
                    sa.select(pipeline_runs.c.cancel_requested).where(pipeline_runs.c.id == run_id)
                ).scalar()
            )

    def mark_abandoned(self, run: PipelineRun, reason: str) -> None:
        """End a run whose coordinator is gone: it and its unfinished steps become KILLED."""
        from conveyor.tracking.records import RunStatus
        from conveyor.tracking.runs import tracker
        from conveyor.tracking.store import EndRun

        unfinished = [s for s in run.steps if s.status in (StepStatus.PENDING, StepStatus.RUNNING)]
        with self.ws.metadata.transaction(project_id=self.project_id) as uow:
            claimed = uow.conn.execute(
                pipeline_runs.update()
                .where(
                    pipeline_runs.c.id == run.id,
                    pipeline_runs.c.status == str(PipelineStatus.RUNNING),
                )
                .values(status=str(PipelineStatus.KILLED), error=reason, ended_at=uow.now)
            )
            if claimed.rowcount != 1:
                return
            started = [s for s in unfinished if s.status is StepStatus.RUNNING]
            self.update_steps(
                uow,
                [
                    {"id": s.id, "status": str(StepStatus.KILLED), "ended_at": uow.now}
                    for s in started
                ]
                + [
                    {"id": s.id, "status": str(StepStatus.SKIPPED)}
                    for s in unfinished
                    if s.status is StepStatus.PENDING
                ],
            )
            ends = [EndRun(s.id, RunStatus.KILLED, uow.now) for s in started]
            tracker(self.ws).store.write_in(uow, [*ends, EndRun(run.id, RunStatus.KILLED, uow.now)])
            uow.audit("pipeline_run.abandon", _ref(run.id), after={"reason": reason})

    def cancel_requested(self, run_id: str) -> bool:
        with self.ws.metadata.read() as conn:
            return bool(
                conn.execute(
                    sa.select(pipeline_runs.c.cancel_requested).where(pipeline_runs.c.id == run_id)
                ).scalar()
            )

    # -- reading -------------------------------------------------------------------------

    def id_in_use(self, run_id: str) -> bool:
        """Whether ``run_id`` names a pipeline run or a tracked run in any project: an id a
        caller chose must not take over an existing record (the engine records the pipeline
        run as a tracked run of the same id, and a run already there would be reused)."""
        with self.ws.metadata.read() as conn:
            for table in (pipeline_runs, runs):
                if conn.execute(sa.select(table.c.id).where(table.c.id == run_id)).first():
                    return True
        return False

    def find_cached(self, cache_key: str) -> StepRun | None:
        """The latest step run with ``cache_key`` whose outputs can be reused."""
        query = (
            sa.select(step_runs)
            .join(pipeline_runs, pipeline_runs.c.id == step_runs.c.pipeline_run_id)
            .where(
                pipeline_runs.c.project_id == self.project_id,  # projects share no cache
                step_runs.c.cache_key == cache_key,
                step_runs.c.status.in_(_REUSABLE),
                step_runs.c.outputs.is_not(None),
            )
            .order_by(step_runs.c.ended_at.desc())
            .limit(1)
        )
        with self.ws.metadata.read() as conn:
            row = conn.execute(query).first()
        return None if row is None else _step(row)

    def get_step_run(self, step_run_id: str) -> StepRun:
        """The step run ``step_run_id`` of a pipeline run in this project."""
        query = (
            sa.select(step_runs)
            .join(pipeline_runs, pipeline_runs.c.id == step_runs.c.pipeline_run_id)
            .where(
                pipeline_runs.c.project_id == self.project_id,
                step_runs.c.id == step_run_id,
            )
        )
        with self.ws.metadata.read() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFoundError(f"No step run {step_run_id!r} in project {self.ws.project.name!r}.")
        return _step(row)

    def steps_of(self, run_id: str) -> list[StepRun]:
        with self.ws.metadata.read() as conn:
            rows = conn.execute(
                sa.select(step_runs)
                .where(step_runs.c.pipeline_run_id == run_id)
                .order_by(step_runs.c.started_at.is_(None), step_runs.c.started_at, step_runs.c.id)
            ).all()
        return [_step(r) for r in rows]

    def _resolve_id(self, conn: sa.Connection, run_id: str) -> str:
        base = sa.select(pipeline_runs.c.id).where(pipeline_runs.c.project_id == self.project_id)
        exact = conn.execute(base.where(pipeline_runs.c.id == run_id.upper())).scalar()
        if exact is not None:
            return str(exact)
        if len(run_id) >= 6:
            found = (
                conn.execute(
                    base.where(
                        pipeline_runs.c.id.like(f"%{_escape(run_id.upper())}", escape="\\")
                    ).limit(2)
                )
                .scalars()
                .all()
            )
            if len(found) == 1:
                return str(found[0])
        raise NotFoundError(
            f"No pipeline run {run_id!r} in project {self.ws.project.name!r}.",
            hint="List them with: conveyor pipeline list",
        )

    def get_run(self, run_id: str) -> PipelineRun:
        """Return the pipeline run ``run_id`` (its full id, or its last 6+ characters)."""
        query = sa.select(pipeline_runs, pipelines.c.name.label("pipeline_name")).join(
            pipelines, pipelines.c.id == pipeline_runs.c.pipeline_id
        )
        with self.ws.metadata.read() as conn:
            full = self._resolve_id(conn, run_id)
            row = conn.execute(query.where(pipeline_runs.c.id == full)).one()
        return self._run(row, self.steps_of(full))

    def list_runs(
        self, pipeline: str | None = None, *, status: str | None = None, limit: int = 50
    ) -> list[PipelineRun]:
        """Return pipeline runs, newest first (steps not loaded: ``steps`` is empty)."""
        query = (
            sa.select(pipeline_runs, pipelines.c.name.label("pipeline_name"))
            .join(pipelines, pipelines.c.id == pipeline_runs.c.pipeline_id)
            .where(pipeline_runs.c.project_id == self.project_id)
            .order_by(pipeline_runs.c.started_at.desc(), pipeline_runs.c.id.desc())
            .limit(limit)
        )
        if pipeline is not None:
            query = query.where(pipelines.c.name == pipeline)
        if status is not None:
            query = query.where(pipeline_runs.c.status == status.upper())
        with self.ws.metadata.read() as conn:
            rows = conn.execute(query).all()
        return [self._run(r, []) for r in rows]

    def _run(self, row: Any, steps: list[StepRun]) -> PipelineRun:
        from conveyor.pipelines.worker import load_output

        ws = self.ws

        def load(step: StepRun) -> Any:
            values = [load_output(ws, o) for o in step.outputs]
            return (
                values[0]
                if len(values) == 1 and step.outputs[0]["name"] == "output"
                else (tuple(values))
            )

        return PipelineRun(
            id=row.id,
            pipeline=row.pipeline_name,
            status=PipelineStatus(row.status),
            params=dict(row.params or {}),
            entrypoint=row.entrypoint,
            executor=row.executor,
            resumed_from=row.resumed_from,
            cancel_requested=bool(row.cancel_requested),
            coordinator=row.coordinator,
            heartbeat_at=row.heartbeat_at,
            error=row.error or "",
            started_at=row.started_at,
            ended_at=row.ended_at,
            created_by=row.created_by,
            steps=steps,
            outputs=Outputs(steps, load),
        )


def _ref(run_id: str) -> Any:
    from conveyor.store.records import ObjectRef

    return ObjectRef("pipeline_run", run_id)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _step(row: Any) -> StepRun:
    return StepRun(
        id=row.id,
        pipeline_run_id=row.pipeline_run_id,
        name=row.name,
        step=row.step,
        status=StepStatus(row.status),
        cache_key=row.cache_key,
        cached_from=row.cached_from,
        attempts=int(row.attempts or 0),
        upstream=list(row.upstream or []),
        outputs=list(row.outputs or []),
        reads=list(row.reads or []),
        error=row.error or "",
        started_at=row.started_at,
        ended_at=row.ended_at,
    )
