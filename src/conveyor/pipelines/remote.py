"""Pipeline runs and schedules through a team server: run an installed pipeline on the
server's host and follow it, list and show runs, read a step's log, cancel or resume a run,
make, list and delete schedules, with the same records as embedded.

Loading step outputs needs the store itself, as does running or scheduling a pipeline
defined in a file or a script (the server runs installed packages only).
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

from conveyor.core.errors import ConveyorError, InvalidArgumentError
from conveyor.pipelines.records import Outputs, PipelineRun, PipelineStatus, StepRun, StepStatus
from conveyor.store.workspace import Workspace

__all__ = [
    "cancel",
    "check_installed_here",
    "create_schedule",
    "delete_schedule",
    "get_run",
    "list_runs",
    "list_schedules",
    "needs_the_store",
    "run_on_server",
    "step_log",
]

#: How often a run the server started is read while it goes.
POLL_S = 0.5
#: How long to wait for the server to start a run (it waits up to 45 s for the record).
START_WAIT_S = 75.0

#: The most runs one listing returns through the server.
MAX_LIMIT = 1000


def needs_the_store(what: str) -> InvalidArgumentError:
    return InvalidArgumentError(
        f"{what} needs the store itself, not a team server (CONVEYOR_STORE_URI is http...).",
        hint="Run it where the metadata and artifact stores are reachable; reading runs, "
        "steps and logs works through the server.",
    )


def _status(kind: Any, value: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise InvalidArgumentError(
            f"The server reports a {kind.__name__} this client does not know: {value!r}.",
            hint="Upgrade conveyor-mlops here to the server's version.",
        ) from None


def _when(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _step(raw: dict[str, Any]) -> StepRun:
    return StepRun(
        id=raw["id"],
        pipeline_run_id=raw["pipeline_run_id"],
        name=raw["name"],
        step=raw["step"],
        status=_status(StepStatus, raw["status"]),
        cache_key=raw.get("cache_key"),
        cached_from=raw.get("cached_from"),
        attempts=int(raw.get("attempts") or 0),
        upstream=list(raw.get("upstream") or []),
        outputs=list(raw.get("outputs") or []),
        reads=list(raw.get("reads") or []),
        error=raw.get("error") or "",
        started_at=_when(raw.get("started_at")),
        ended_at=_when(raw.get("ended_at")),
    )


def _not_loaded(step: StepRun) -> Any:
    raise needs_the_store(f"Loading the outputs of step {step.name!r}")


def _run(raw: dict[str, Any]) -> PipelineRun:
    steps = [_step(s) for s in raw.get("steps") or []]
    started = _when(raw["started_at"])
    assert started is not None
    return PipelineRun(
        id=raw["id"],
        pipeline=raw["pipeline"],
        status=_status(PipelineStatus, raw["status"]),
        params=dict(raw.get("params") or {}),
        entrypoint=raw.get("entrypoint") or "",
        executor=raw.get("executor") or "",
        resumed_from=raw.get("resumed_from"),
        cancel_requested=bool(raw.get("cancel_requested")),
        coordinator=raw.get("coordinator") or "",
        heartbeat_at=_when(raw.get("heartbeat_at")),
        error=raw.get("error") or "",
        started_at=started,
        ended_at=_when(raw.get("ended_at")),
        created_by=raw.get("created_by") or "",
        steps=steps,
        outputs=Outputs(steps, _not_loaded),
    )


def _path(ws: Workspace, *rest: str) -> tuple[Any, str]:
    client = ws.remote
    assert client is not None
    return client, client.project_path(ws.settings.project, *rest)


def list_runs(
    ws: Workspace, pipeline: str | None, *, status: str | None, limit: int
) -> list[PipelineRun]:
    client, path = _path(ws, "pipeline-runs")
    status = status.upper() if status else None
    limit = max(1, min(limit, MAX_LIMIT))  # the route's bound
    body = client.get_json(path, pipeline=pipeline, status=status, limit=limit)
    return [_run(r) for r in body["runs"]]


def get_run(ws: Workspace, run_id: str) -> PipelineRun:
    client, path = _path(ws, "pipeline-runs", run_id)
    return _run(client.get_json(path))


def step_log(ws: Workspace, run_id: str, step: str) -> str:
    client, path = _path(ws, "pipeline-runs", run_id, "steps", step, "log")
    return str(client.get_json(path)["log"])


def cancel(ws: Workspace, run_id: str) -> PipelineRun:
    client, path = _path(ws, "pipeline-runs", run_id, "cancel")
    return _run(client.send_json("POST", path))


def run_on_server(
    ws: Workspace,
    pipeline: Any,
    params: dict[str, Any],
    *,
    executor: str,
    cache: bool,
    progress: Any = None,
) -> PipelineRun:
    """Run ``pipeline`` on the server's host (its package installed there) and follow it
    until it ends, telling ``progress`` of each step's changes as a local run does; Ctrl-C
    cancels it. Raises :class:`PipelineFailed` when it does not succeed, as embedded."""
    check_installed_here(pipeline)
    _check_json(params)
    body = {"pipeline": pipeline.entrypoint, "params": params, "executor": executor, "cache": cache}
    return _start_and_follow(ws, ("pipeline-runs",), body, pipeline.name, progress)


def check_installed_here(pipeline: Any) -> None:
    """Refuse a pipeline defined in a file or a script: the server imports packages only."""
    from conveyor.core.modules import FILE_MODULE_PREFIX

    entrypoint = pipeline.entrypoint
    module = entrypoint.partition(":")[0]
    if module == "__main__" or module.startswith(FILE_MODULE_PREFIX) or "/" in module:
        raise InvalidArgumentError(
            f"Pipeline {pipeline.name!r} is defined in a file ({entrypoint}), which a team "
            "server cannot import.",
            hint="Put it in a package installed on the server's host (and allowed there with "
            "conveyor server --pipelines PKG), then use it as package.module:name.",
        )


def _check_json(params: dict[str, Any]) -> None:
    import json

    try:
        json.dumps(params)
    except TypeError as e:
        raise InvalidArgumentError(
            f"Through a team server a pipeline's params travel as JSON ({e})."
        ) from None


def resume_on_server(
    ws: Workspace,
    run_id: str,
    *,
    executor: str | None = None,
    progress: Any = None,
    cache: bool = True,
) -> PipelineRun:
    """Resume a FAILED or KILLED run on the server's host (its pipeline installed there),
    following it as :func:`run_on_server` does; returns the new run."""
    old = get_run(ws, run_id)
    body = {"executor": executor, "cache": cache}
    return _start_and_follow(ws, ("pipeline-runs", old.id, "resume"), body, old.pipeline, progress)


def _start_and_follow(
    ws: Workspace, route: tuple[str, ...], body: dict[str, Any], name: str, progress: Any
) -> PipelineRun:
    import time

    from conveyor.core import ids
    from conveyor.pipelines.engine import PipelineFailed

    client, path = _path(ws, *route)
    run_id = ids.new_id()  # chosen here: a Ctrl-C before the answer can still cancel it
    ws.flush_before_remote_write()
    seen: dict[str, str] = {}
    try:
        run = _run(client.send_json("POST", path, {**body, "run_id": run_id}, timeout=START_WAIT_S))
        while True:
            for step in run.steps:
                status = str(step.status)
                told = status in ("PENDING", "SKIPPED")  # a local run does not tell these
                if progress is not None and seen.get(step.name) != status and not told:
                    progress(step.name, status, _detail(step))
                seen[step.name] = status
            if run.ended_at is not None or str(run.status) != "RUNNING":
                break
            time.sleep(POLL_S)
            run = get_run(ws, run.id)
    except KeyboardInterrupt:
        with contextlib.suppress(ConveyorError):  # it ended, or never started: nothing to stop
            cancel(ws, run_id)
        raise
    if str(run.status) != "SUCCEEDED":
        raise PipelineFailed(run.error or f"Pipeline {name!r} ended {run.status}.", run)
    return run


def _detail(step: StepRun) -> str:
    """What a local run says beside a step's status: its time, its cache source, its error."""
    if step.status == StepStatus.CACHED and step.cached_from:
        return f"from {step.cached_from[-6:].lower()}"
    if step.status == StepStatus.FAILED:  # "Step 'x' failed: ERROR\n\nTRACEBACK" -> ERROR
        head = step.error.split("\n\n", 1)[0]
        prefix, sep, error = head.partition(": ")
        return error if sep and prefix.startswith("Step ") else head
    if step.status == StepStatus.SUCCEEDED and step.started_at and step.ended_at:
        return f"{(step.ended_at - step.started_at).total_seconds():.2f}s"
    return ""


def _schedule(raw: dict[str, Any]) -> Any:
    from conveyor.pipelines.schedules import Schedule

    known = set(Schedule.__dataclass_fields__)  # a newer server may send more
    for key in ("next_run_at", "last_run_at", "created_at"):
        raw[key] = _when(raw.get(key))
    return Schedule(**{k: v for k, v in raw.items() if k in known})


def list_schedules(ws: Workspace) -> list[Any]:
    client, path = _path(ws, "schedules")
    return [_schedule(raw) for raw in client.get_json(path)["schedules"]]


def create_schedule(
    ws: Workspace,
    pipeline: Any,
    params: dict[str, Any],
    *,
    cron: str,
    name: str | None,
    executor: str,
    catch_up: int,
    replace: bool,
) -> Any:
    """Store a schedule on the server: the scheduler on its host starts the runs, each
    acting as you with the role you hold when it is due."""
    check_installed_here(pipeline)
    _check_json(params)
    client, path = _path(ws, "schedules")
    body = {
        "pipeline": pipeline.entrypoint,
        "name": name,
        "cron": cron,
        "params": params,
        "executor": executor,
        "catch_up": catch_up,
        "replace": replace,
    }
    return _schedule(client.send_json("POST", path, body))


def delete_schedule(ws: Workspace, name: str) -> Any:
    client, path = _path(ws, "schedules", name)
    return _schedule(client.send_json("DELETE", path))
