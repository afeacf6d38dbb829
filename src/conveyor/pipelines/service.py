"""Pipeline runs as the CLI and the API read and steer them: list, show, resume, cancel."""

from __future__ import annotations

from typing import Any

from conveyor.core.errors import ConflictError
from conveyor.pipelines.records import PipelineRun, PipelineStatus
from conveyor.pipelines.store import PipelineStore
from conveyor.store.workspace import Workspace, current_workspace

__all__ = ["cancel", "get_run", "list_runs", "resume"]


def _store(ws: Workspace | None) -> PipelineStore:
    return PipelineStore(ws or current_workspace())


def get_run(run_id: str, *, workspace: Workspace | None = None) -> PipelineRun:
    """Return pipeline run ``run_id`` (its id, or its last 6+ characters) with its steps."""
    return _store(workspace).get_run(run_id)


def list_runs(
    pipeline: str | None = None,
    *,
    status: str | None = None,
    limit: int = 50,
    workspace: Workspace | None = None,
) -> list[PipelineRun]:
    """Return pipeline runs, newest first (without their steps)."""
    return _store(workspace).list_runs(pipeline, status=status, limit=limit)


def resume(
    run_id: str,
    *,
    executor: str | None = None,
    workspace: Workspace | None = None,
    progress: Any = None,
) -> PipelineRun:
    """Run a failed or stopped pipeline run again, reusing the outputs of its finished steps.

    The pipeline is imported again from where the run recorded it (so a fixed step runs its
    new code) and gets the same parameters. Returns the new run.
    """
    from conveyor.pipelines.engine import run_pipeline
    from conveyor.pipelines.loader import load_pipeline

    ws = workspace or current_workspace()
    old = get_run(run_id, workspace=ws)
    if old.status in (PipelineStatus.SUCCEEDED, PipelineStatus.RUNNING):
        raise ConflictError(
            f"Pipeline run {old.id} is {old.status}; only FAILED or KILLED runs are resumed.",
            hint="Start a new run with: conveyor pipeline run",
        )
    pipeline = load_pipeline(old.entrypoint)
    return run_pipeline(
        pipeline,
        old.params,
        executor=executor or old.executor,
        ws=ws,
        progress=progress,
        resume_from=old,
    )


def cancel(run_id: str, *, workspace: Workspace | None = None) -> PipelineRun:
    """Ask a running pipeline run to stop: its coordinator kills the running steps and marks
    the run KILLED within about a second."""
    store = _store(workspace)
    run = store.get_run(run_id)
    if run.status is not PipelineStatus.RUNNING:
        raise ConflictError(f"Pipeline run {run.id} is {run.status}; there is nothing to cancel.")
    return store.request_cancel(run.id)
