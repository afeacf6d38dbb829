"""``conveyor pipeline``, ``conveyor schedule`` and ``conveyor scheduler``."""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from conveyor.cli.commands import RunsUntilStopped
from conveyor.cli.context import workspace_for
from conveyor.cli.output import console, err_console
from conveyor.core.errors import InvalidArgumentError

if TYPE_CHECKING:
    from conveyor.pipelines.dsl import Pipeline
    from conveyor.pipelines.records import PipelineRun

pipeline_app = typer.Typer(
    help="Run pipelines and look at their runs.\n\nA pipeline is a Python function decorated "
    "with @cv.pipeline whose @cv.step calls form a DAG; name it MODULE:PIPELINE (e.g. "
    "pipelines.churn:train) or FILE.py:PIPELINE. Unchanged steps are taken from the cache.",
    no_args_is_help=True,
)
schedule_app = typer.Typer(
    help="Cron schedules that start pipeline runs (started by `conveyor scheduler run`).",
    no_args_is_help=True,
)
scheduler_app = typer.Typer(
    help="The scheduler: starts the pipeline runs that schedules say are due.",
    no_args_is_help=True,
)

_STYLE = {
    "SUCCEEDED": "green",
    "CACHED": "cyan",
    "FAILED": "red",
    "KILLED": "yellow",
    "SKIPPED": "dim",
    "RUNNING": "blue",
    "PENDING": "dim",
}
_MARK = {"SUCCEEDED": "✓", "CACHED": "↺", "FAILED": "✗", "KILLED": "■", "RUNNING": "▶"}
PARAM_HELP = "A pipeline parameter, KEY=VALUE (repeatable); VALUE is read as JSON when it can be."
EXECUTOR_HELP = (
    "Where steps run: local (worker processes), inline (this process), ray, ray://HOST:PORT."
)


def _when(at: Any) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S") if at is not None else ""


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


def _status(status: str) -> str:
    return f"[{_STYLE.get(status, 'white')}]{status}[/]"


def parse_params(pipeline: Pipeline, pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs as the pipeline's parameters (a str default keeps VALUE as text)."""
    defaults = pipeline.parameters
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise InvalidArgumentError(f"A parameter is KEY=VALUE; got {pair!r}.")
        default = defaults.get(key, inspect.Parameter.empty)
        parameter = pipeline.signature.parameters.get(key)
        annotation = parameter.annotation if parameter is not None else None
        if isinstance(default, str) or annotation in (str, "str"):  # -p tag=2024 stays text
            params[key] = text
            continue
        try:
            params[key] = json.loads(text)
        except json.JSONDecodeError:
            params[key] = text
    return params


def _printer() -> Any:
    def show(name: str, status: str, detail: str) -> None:
        mark = _MARK.get(status, "·")
        extra = f"  [dim]{escape(detail)}[/]" if detail else ""
        err_console.print(f"  {_status(mark)} {escape(name):<28} {_status(status)}{extra}")

    return show


def _summary(run: PipelineRun) -> None:
    counts: dict[str, int] = {}
    for step in run.steps:
        counts[str(step.status)] = counts.get(str(step.status), 0) + 1
    parts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
    console.print(
        f"{_status(str(run.status))} pipeline run [bold]{run.id}[/] "
        f"({escape(run.pipeline)}) in {_seconds(run.duration)}: {parts}"
    )


@pipeline_app.command("run")
def run_(
    ctx: typer.Context,
    reference: Annotated[str, typer.Argument(help="MODULE:PIPELINE or FILE.py:PIPELINE.")],
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help=PARAM_HELP)] = None,
    executor: Annotated[str, typer.Option("--executor", "-e", help=EXECUTOR_HELP)] = "local",
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Run every step, even those in the cache.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run as JSON.")] = False,
) -> None:
    """Run a pipeline, showing each step as it starts and ends.

    Examples:\n
      conveyor pipeline run pipelines.churn:train -p n_estimators=300\n
      conveyor pipeline run flows.py:train --executor inline --no-cache
    """
    from conveyor.core.errors import NotFoundError
    from conveyor.pipelines.engine import PipelineFailed
    from conveyor.pipelines.loader import load_pipeline
    from conveyor.store.workspace import use_workspace

    ws = use_workspace(workspace_for(ctx), default=True)
    failed = None
    with _prints_to_stderr(as_json):
        try:
            pipeline = load_pipeline(reference)
        except NotFoundError as e:
            if ws.remote is None:
                raise
            raise NotFoundError(
                e.message,
                hint="Through a team server, the pipeline's package must be importable here "
                "too (pip install it, or run from the folder that holds it), and allowed on "
                "the server (conveyor server --pipelines PKG).",
            ) from None
        params = parse_params(pipeline, param or [])
        pipeline.bind(params)  # a wrong parameter, refused before "Running ..."
        from conveyor.pipelines.executors import check_executor

        check_executor(executor)
        where = escape(executor)
        if ws.remote is not None:
            from conveyor.pipelines.remote import check_installed_here

            check_installed_here(pipeline)  # refused before anything is said to be running
            where = f"the team server ({where})"
        err_console.print(f"Running [bold]{escape(pipeline.name)}[/] on {where} ...")
        try:
            run = pipeline.run(
                executor=executor, cache=not no_cache, workspace=ws, progress=_printer(), **params
            )
        except PipelineFailed as e:
            run = failed = e.run
    _report(run, as_json, cached=not no_cache)
    if failed is not None:
        raise typer.Exit(1)


@contextlib.contextmanager
def _prints_to_stderr(enabled: bool) -> Iterator[None]:
    """With --json, send what the pipeline prints (on import, in its steps, in worker
    processes: file descriptor 1 itself) to stderr while it runs, so that stdout carries
    the JSON alone."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        _flush_c_stdio()  # what compiled code printed, still in the C library's buffer
        os.dup2(saved, 1)
        os.close(saved)


def _flush_c_stdio() -> None:
    """Flush the C library's stdio buffers (``fflush(NULL)``), where it can be reached."""
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError, TypeError):  # no C library by that means (Windows)
        pass


def _report(run: PipelineRun, as_json: bool, *, cached: bool = True) -> None:
    if as_json:
        console.print_json(json.dumps(_run_dict(run), default=str))
        return
    _summary(run)
    if run.error:
        err_console.print(f"[red]{escape(run.error)}[/]")
        flag = "" if cached else " --no-cache"  # as it ran: not from other runs' cache
        err_console.print(
            f"Inspect it with [bold]conveyor pipeline show {run.id[-8:]}[/] and "
            f"[bold]conveyor pipeline logs {run.id[-8:]}[/]; after a fix, "
            f"[bold]conveyor pipeline resume {run.id[-8:]}{flag}[/] reuses the finished steps."
        )


def _run_dict(run: PipelineRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "pipeline": run.pipeline,
        "status": str(run.status),
        "params": run.params,
        "executor": run.executor,
        "entrypoint": run.entrypoint,
        "resumed_from": run.resumed_from,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "duration_s": run.duration,
        "error": run.error,
        "steps": [
            {
                "id": s.id,
                "name": s.name,
                "step": s.step,
                "status": str(s.status),
                "attempts": s.attempts,
                "cached_from": s.cached_from,
                "upstream": s.upstream,
                "duration_s": s.duration,
                "outputs": [
                    {"name": o["name"], "type": o["type"], "materializer": o["materializer"]}
                    for o in s.outputs
                ],
                "error": s.error,
            }
            for s in run.steps
        ],
    }


@pipeline_app.command("list")
def list_(
    ctx: typer.Context,
    pipeline: Annotated[str | None, typer.Option("--pipeline", help="Only this pipeline.")] = None,
    status: Annotated[
        str | None, typer.Option("--status", help="Only runs with this status (e.g. FAILED).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many runs.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List pipeline runs, newest first: id, pipeline, status, start, duration."""
    from conveyor.pipelines.service import list_runs

    with workspace_for(ctx) as ws:
        runs = list_runs(pipeline, status=status, limit=limit, workspace=ws)
    if as_json:
        console.print_json(json.dumps([_run_dict(r) for r in runs], default=str))
        return
    if not runs:
        if pipeline is not None or status is not None:
            console.print("No pipeline run matches.")
        else:
            console.print("No pipeline runs yet. Start one: conveyor pipeline run MODULE:PIPELINE")
        return
    for r in runs:
        console.print(
            f"{r.id}  {escape(r.pipeline):<20} {_status(f'{r.status!s:<9}')}  "
            f"{_when(r.started_at)}  {_seconds(r.duration)}",
            highlight=False,
        )


@pipeline_app.command("show")
def show(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="A pipeline run id (or its last 6+ characters).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show a run's DAG: each step with its status, duration, attempts and cache hits."""
    from conveyor.pipelines.service import get_run

    with workspace_for(ctx) as ws:
        run = get_run(run_id, workspace=ws)
    if as_json:
        console.print_json(json.dumps(_run_dict(run), default=str))
        return
    params = ", ".join(f"{k}={v!r}" for k, v in run.params.items())
    tree = Tree(
        f"[bold]{escape(run.pipeline)}[/] {run.id} {_status(str(run.status))} "
        f"{_seconds(run.duration)}  [dim]{escape(params)}[/]"
    )
    children: dict[str, list[str]] = {s.name: [] for s in run.steps}
    for s in run.steps:
        for up in s.upstream:
            children.setdefault(up, []).append(s.name)
    by_name = {s.name: s for s in run.steps}
    shown: set[str] = set()

    def label(name: str) -> str:
        s = by_name[name]
        parts = [f"{_status(_MARK.get(str(s.status), '·'))} [bold]{escape(name)}[/]"]
        parts.append(_status(str(s.status)))
        if s.duration is not None:
            parts.append(_seconds(s.duration))
        if s.attempts > 1:
            parts.append(f"{s.attempts} attempts")
        if s.cached_from:
            parts.append(f"[dim]from {s.cached_from[-8:]}[/]")
        if s.upstream and len(s.upstream) > 1:
            parts.append(f"[dim]after {escape(', '.join(s.upstream))}[/]")
        return "  ".join(parts)

    def add(node: Tree, name: str) -> None:
        if name in shown:
            node.add(f"[dim]{escape(name)} (above)[/]")
            return
        shown.add(name)
        branch = node.add(label(name))
        for child in children.get(name, []):
            add(branch, child)

    for s in run.steps:
        if not s.upstream:
            add(tree, s.name)
    console.print(tree)
    if run.error:
        err_console.print(f"[red]{escape(run.error)}[/]")


@pipeline_app.command("logs")
def logs(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="A pipeline run id (or its last 6+ characters).")],
    step: Annotated[
        str | None,
        typer.Argument(help="A step's name in the run (train, train_2); default: every step."),
    ] = None,
) -> None:
    """Print what a run's steps printed: stdout, stderr, terminal log records, tracebacks.

    Examples:\n
      conveyor pipeline logs 3f9a2c train\n
      conveyor pipeline logs 3f9a2c            # every step that ran, in order
    """
    from conveyor.pipelines.records import StepStatus
    from conveyor.pipelines.service import get_run, step_log

    with workspace_for(ctx) as ws:
        run = get_run(run_id, workspace=ws)
        if step is not None:
            run.step(step)  # a clear error for a name the run lacks
        names = (
            [step]
            if step
            else [
                s.name
                for s in run.steps
                if s.status not in (StepStatus.PENDING, StepStatus.SKIPPED)
            ]
        )
        for name in names:
            text = step_log(run.id, name, workspace=ws)
            if step is None:
                console.print(f"[bold]── {escape(name)} ──[/]")
            if text:
                typer.echo(text, nl=not text.endswith("\n"))  # as printed: no markup, no wrap
            else:
                console.print("[dim](nothing printed)[/]")


@pipeline_app.command("resume")
def resume(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="A FAILED or KILLED pipeline run.")],
    executor: Annotated[
        str | None, typer.Option("--executor", "-e", help="Default: the run's own.")
    ] = None,
    no_cache: Annotated[
        bool,
        typer.Option(
            "--no-cache",
            help="Reuse only this run's finished steps, not what other runs cached (as a run "
            "started with --no-cache wants).",
        ),
    ] = False,
) -> None:
    """Run a failed run again from where it failed, reusing the steps that finished."""
    from conveyor.pipelines.engine import PipelineFailed
    from conveyor.pipelines.service import resume as resume_run
    from conveyor.store.workspace import use_workspace

    ws = use_workspace(workspace_for(ctx), default=True)
    try:
        run = resume_run(
            run_id, executor=executor, workspace=ws, progress=_printer(), cache=not no_cache
        )
    except PipelineFailed as e:
        _report(e.run, False, cached=not no_cache)
        raise typer.Exit(1) from None
    _report(run, False)


@pipeline_app.command("cancel")
def cancel(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="A RUNNING pipeline run.")],
) -> None:
    """Ask a running pipeline run to stop; its steps are killed and it ends KILLED."""
    from conveyor.pipelines.service import cancel as cancel_run

    with workspace_for(ctx) as ws:
        run = cancel_run(run_id, workspace=ws)
    console.print(f"Asked pipeline run {run.id} ({escape(run.pipeline)}) to stop.")


# -- schedules ------------------------------------------------------------------------------


@schedule_app.command("create")
def schedule_create(
    ctx: typer.Context,
    reference: Annotated[str, typer.Argument(help="MODULE:PIPELINE or FILE.py:PIPELINE.")],
    cron: Annotated[
        str, typer.Option("--cron", help="When, in UTC: '0 3 * * *' is 03:00 every day.")
    ],
    name: Annotated[str | None, typer.Option("--name", help="Default: the pipeline's.")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help=PARAM_HELP)] = None,
    executor: Annotated[str, typer.Option("--executor", "-e", help=EXECUTOR_HELP)] = "local",
    catch_up: Annotated[
        int, typer.Option("--catch-up", help="Missed runs to start after downtime, at most.")
    ] = 1,
    replace: Annotated[bool, typer.Option("--replace", help="Overwrite a same-named one.")] = False,
) -> None:
    """Store a schedule for a pipeline."""
    from conveyor.pipelines.loader import load_pipeline
    from conveyor.pipelines.schedules import schedule

    with workspace_for(ctx) as ws:
        pipeline = load_pipeline(reference)
        made = schedule(
            pipeline,
            cron=cron,
            params=parse_params(pipeline, param or []),
            name=name,
            executor=executor,
            catch_up=catch_up,
            replace=replace,
            workspace=ws,
        )
    console.print(
        f"Schedule [bold]{escape(made.name)}[/] runs {escape(made.pipeline)} at "
        f"'{escape(made.cron)}' (UTC); next: {_when(made.next_run_at)}. "
        "Start the scheduler with: conveyor scheduler run"
    )


@schedule_app.command("list")
def schedule_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List schedules with their next due time and last run."""
    from conveyor.pipelines.schedules import list_schedules

    with workspace_for(ctx) as ws:
        found = list_schedules(workspace=ws)
    if as_json:
        rows = [{f: getattr(s, f) for f in s.__slots__} for s in found]
        console.print_json(json.dumps(rows, default=str))
        return
    if not found:
        console.print(
            "No schedules. Create one: conveyor schedule create MODULE:PIPELINE --cron ..."
        )
        return
    table = Table("name", "pipeline", "cron (UTC)", "params", "next run", "last run")
    for s in found:
        table.add_row(
            escape(s.name),
            escape(s.pipeline),
            escape(s.cron),
            escape(json.dumps(s.params)),
            _when(s.next_run_at),
            (s.last_run_id or "")[-8:],
        )
    console.print(table)


@schedule_app.command("delete")
def schedule_delete(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The schedule's name.")],
) -> None:
    """Delete a schedule (the runs it started stay)."""
    from conveyor.pipelines.schedules import delete_schedule

    with workspace_for(ctx) as ws:
        delete_schedule(name, workspace=ws)
    console.print(f"Deleted schedule {escape(name)}.")


@scheduler_app.command("run", cls=RunsUntilStopped)
def scheduler_run(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="Start what is due now, then exit.")] = False,
    poll: Annotated[float, typer.Option("--poll", help="Seconds between checks.")] = 10.0,
    max_runs: Annotated[
        int,
        typer.Option("--max-runs", min=1, help="Runs going at once, at most; others wait."),
    ] = 4,
) -> None:
    """Start due pipeline runs and scheduled monitors until stopped (Ctrl-C).

    Each run goes in a process of its own (its output in .conveyor/launches/RUN_ID.log), so
    a long run holds up no other schedule; a schedule's own runs go one at a time, and at
    most --max-runs at once. Stopping the scheduler leaves the runs it started going. Run
    two for availability: only the one holding the project's lease starts runs, and a due
    run is never started twice. --once runs what is due here, one after the other, and
    prints each run's summary.
    """
    from conveyor.pipelines.schedules import Scheduler
    from conveyor.store.workspace import use_workspace

    ws = use_workspace(workspace_for(ctx), default=True)

    def started(found: Any) -> None:
        err_console.print(f"{_when(time_now())} starting {escape(found.name)} ({found.pipeline})")

    def failed(name: str, message: str) -> None:
        err_console.print(f"{_when(time_now())} [red]{escape(message)}[/]")

    def ended(found: Any, run: Any) -> None:
        if run is None:
            if found.name not in scheduler.errors:  # else printed by failed() already
                failed(found.name, f"Schedule {found.name!r} did not start its run.")
        else:
            err_console.print(
                f"{_when(time_now())} {escape(found.name)} {str(run.status).lower()}: run {run.id}"
            )

    scheduler = Scheduler(ws, on_start=started, on_end=ended, on_error=failed, max_runs=max_runs)
    if once:
        runs = scheduler.tick()
        scheduler.release_lease()
        for r in runs:
            if hasattr(r, "steps"):
                _summary(r)
            else:  # a monitor's result
                console.print(
                    f"monitor {escape(r.monitor)}: {r.rows:,} predictions, data drifted: "
                    f"{r.dataset_drifted}"
                )
        if scheduler.errors:  # each printed by failed() as it happened
            raise typer.Exit(1)
        if not runs:
            console.print(
                "Nothing was started: no schedule is due (or another scheduler holds the lease)."
            )
        return
    err_console.print(f"Scheduler {scheduler.holder} checking every {poll:g} s (Ctrl-C stops).")
    scheduler.run_forever(poll=poll)


def time_now() -> Any:
    from conveyor.core.clock import utcnow

    return utcnow()
