"""Pipeline runs as the CLI and the API read and steer them: list, show, resume, cancel."""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from typing import Any

from conveyor.core.clock import utcnow
from conveyor.core.errors import ConflictError, InvalidArgumentError
from conveyor.pipelines.records import PipelineRun, PipelineStatus
from conveyor.pipelines.store import PipelineStore
from conveyor.store.workspace import Workspace, current_workspace

__all__ = ["cancel", "get_run", "list_runs", "resume", "step_log"]

#: A running pipeline's coordinator records a heartbeat every second; one silent for this long
#: (or, on this machine, whose process is gone) has died without ending its run.
STALE_AFTER = timedelta(seconds=30)


def abandoned(run: PipelineRun) -> str | None:
    """Why ``run`` is RUNNING with no coordinator left (None when it may still be running)."""
    if run.status is not PipelineStatus.RUNNING:
        return None
    host, _, pid = run.coordinator.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return f"its coordinator (process {pid} on {host}) is gone"
        except PermissionError:
            pass  # alive, another user's
    if run.heartbeat_at is not None and utcnow() - run.heartbeat_at > STALE_AFTER:
        return (
            f"its coordinator ({run.coordinator}) has been silent since {run.heartbeat_at:%H:%M:%S}"
        )
    return None


def _store(ws: Workspace | None) -> PipelineStore:
    return PipelineStore(ws or current_workspace())


def get_run(run_id: str, *, workspace: Workspace | None = None) -> PipelineRun:
    """Return pipeline run ``run_id`` (its id, or its last 6+ characters) with its steps."""
    ws = workspace or current_workspace()
    if ws.remote is not None:
        from conveyor.pipelines import remote

        return remote.get_run(ws, run_id)
    return _store(ws).get_run(run_id)


def step_log(run_id: str, step: str, *, workspace: Workspace | None = None) -> str:
    """Return what step ``step`` of pipeline run ``run_id`` printed (its stdout, stderr and
    terminal log records, the newest 1 MiB) and, when it failed, its traceback.

    A cached step did not run: its log is the one of the run it was taken from. A step that
    printed nothing has an empty log.
    """
    from conveyor.core.errors import NotFoundError
    from conveyor.pipelines import steplog
    from conveyor.pipelines.records import StepStatus

    ws = workspace or current_workspace()
    if ws.remote is not None:
        from conveyor.pipelines import remote

        return remote.step_log(ws, run_id, step)
    run = get_run(run_id, workspace=ws)
    found = run.step(step)
    if found.status in (StepStatus.PENDING, StepStatus.SKIPPED):
        raise NotFoundError(
            f"Step {step!r} of run {run.id} is {found.status}: it has not run, so it has no log."
        )
    source = found
    seen = {found.id}
    while source.cached_from and source.cached_from not in seen:  # a cache hit of a cache hit
        seen.add(source.cached_from)
        source = PipelineStore(ws).get_step_run(source.cached_from)
    text = steplog.read(ws, source.id)
    last = f"[attempt {source.attempts}]\n"
    if text is not None and source.attempts > 1 and not text.startswith(last):
        # The last attempt was killed before it stored its log: what is stored is an
        # earlier attempt's, said so, with how the last one ended.
        now = (
            "is running"
            if source.status is StepStatus.RUNNING
            else f"stored no log ({source.error or source.status})"
        )
        text = f"[attempt {source.attempts} {now}; below, an earlier attempt's log]\n{text}"
    elif text is None and source.status in (StepStatus.FAILED, StepStatus.KILLED):
        # Failed before the call (loading inputs), or its worker was killed (a timeout,
        # a cancel, a crash) with the log in its memory: the traceback is what is left.
        kept = steplog.read(ws, source.id, "traceback.txt")
        text = "[no log was stored: the step did not finish its call]\n" + (kept or found.error)
    elif text is None and source.status is StepStatus.RUNNING:
        text = "[the step is running: its log is stored when its attempt ends]\n"
    text = text or ""
    if source is not found:
        return f"[cache hit: this is the log of step run {source.id}]\n{text}"
    return text


def list_runs(
    pipeline: str | None = None,
    *,
    status: str | None = None,
    limit: int = 50,
    workspace: Workspace | None = None,
) -> list[PipelineRun]:
    """Return pipeline runs, newest first (without their steps)."""
    if status is not None:
        if status.upper() not in set(PipelineStatus):
            raise InvalidArgumentError(
                f"status must be one of {', '.join(PipelineStatus)}; got {status!r}."
            )
        status = status.upper()
    ws = workspace or current_workspace()
    if ws.remote is not None:
        from conveyor.pipelines import remote

        return remote.list_runs(ws, pipeline, status=status, limit=limit)
    return _store(ws).list_runs(pipeline, status=status, limit=limit)


def resume(
    run_id: str,
    *,
    executor: str | None = None,
    pipeline: Any = None,
    workspace: Workspace | None = None,
    progress: Any = None,
    new_run_id: str | None = None,
    cache: bool = True,
) -> PipelineRun:
    """Run a failed or stopped pipeline run again, reusing the outputs of its finished steps.

    With ``cache=False`` (as the run was started), only the steps this run itself finished
    are reused: a step it had not reached runs, whatever other runs cached.

    The pipeline is imported again from where the run recorded it (so a fixed step runs its
    new code; in a session that already imported it, pass the fixed ``pipeline``) and gets
    the same parameters. A finished step is reused when the new call is
    the same call (the same code, arguments and inputs: its cache key), even if it was not
    cacheable; a changed step runs again, and so does what depends on it. A run whose
    coordinator died (see :func:`cancel`) is marked KILLED first. Returns the new run.
    """
    from conveyor.pipelines.engine import run_pipeline
    from conveyor.pipelines.loader import load_pipeline

    ws = workspace or current_workspace()
    if ws.remote is not None:
        from conveyor.pipelines.remote import needs_the_store, resume_on_server

        if pipeline is not None or new_run_id is not None:
            raise needs_the_store("Resuming a run with a pipeline of this session")
        return resume_on_server(ws, run_id, executor=executor, progress=progress, cache=cache)
    old = get_run(run_id, workspace=ws)
    gone = abandoned(old)
    if gone is not None:
        PipelineStore(ws).mark_abandoned(old, f"Pipeline {old.pipeline!r} was abandoned: {gone}.")
        old = get_run(old.id, workspace=ws)
    if old.status in (PipelineStatus.SUCCEEDED, PipelineStatus.RUNNING):
        raise ConflictError(
            f"Pipeline run {old.id} is {old.status}; only FAILED or KILLED runs are resumed.",
            hint="Start a new run with: conveyor pipeline run",
        )
    if pipeline is None:
        pipeline = load_pipeline(old.entrypoint, root=ws.settings.root)
    elif getattr(pipeline, "name", None) != old.pipeline:
        raise ConflictError(
            f"Run {old.id} is of pipeline {old.pipeline!r}; cannot resume it with "
            f"{getattr(pipeline, 'name', pipeline)!r}."
        )
    return run_pipeline(
        pipeline,
        old.params,
        executor=executor or old.executor,
        ws=ws,
        progress=progress,
        resume_from=old,
        run_id=new_run_id,
        cache=cache,
    )


def cancel(run_id: str, *, workspace: Workspace | None = None) -> PipelineRun:
    """Ask a running pipeline run to stop: its coordinator kills the running steps and marks
    the run KILLED within about a second. A run whose coordinator died (its process is gone,
    or it has been silent for 30 s) is marked KILLED at once."""
    ws = workspace or current_workspace()
    if ws.remote is not None:
        from conveyor.pipelines import remote

        return remote.cancel(ws, run_id)
    store = _store(ws)
    run = store.get_run(run_id)
    if run.status is not PipelineStatus.RUNNING:
        raise ConflictError(f"Pipeline run {run.id} is {run.status}; there is nothing to cancel.")
    gone = abandoned(run)
    if gone is not None:
        store.mark_abandoned(run, f"Pipeline {run.pipeline!r} was abandoned: {gone}.")
        return store.get_run(run.id)
    return store.request_cancel(run.id)
