"""Running one step call, in whatever process an executor gives it.

The coordinator sends a :class:`StepTask` (pickled with cloudpickle: the step's function goes
by value, so it runs on any worker that reaches the stores); the worker opens the workspace,
attaches to the step's tracked run, loads the inputs from the artifact store, calls the
function, checks the result against the return annotation, stores each output through its
materializer and answers with a :class:`StepResult`.
"""

from __future__ import annotations

import inspect
import logging
import numbers
import sys
import time
import traceback
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from conveyor.core.errors import ConveyorError, InvalidArgumentError
from conveyor.pipelines.dsl import Step
from conveyor.pipelines.materializers import get_materializer, materializer_for

__all__ = ["InputRef", "StepResult", "StepTask", "execute"]


class StepTimedOut(BaseException):
    """Raised into a step running in this process when its timeout passes."""


@dataclass(frozen=True, slots=True)
class InputRef:
    """An upstream output, as stored: loaded by the worker before the call."""

    step: str
    output: dict[str, Any]


@dataclass(slots=True)
class StepTask:
    settings: dict[str, Any]
    step: Step[Any]
    node: str
    run_id: str
    experiment: str
    parent_id: str
    arguments: dict[str, Any]
    attempt: int


@dataclass(slots=True)
class StepResult:
    ok: bool
    outputs: list[dict[str, Any]] = field(default_factory=list)
    reads: list[dict[str, str]] = field(default_factory=list)
    error: str = ""
    traceback: str = ""
    seconds: float = 0.0


#: The workspace an in-process executor runs steps in (set by the inline executor).
_inline_workspace: list[Any] = []
_workspaces: dict[tuple[Any, ...], Any] = {}


def _workspace(settings: dict[str, Any]) -> Any:
    if _inline_workspace:
        return _inline_workspace[-1]
    key = tuple(sorted(settings.items()))
    ws = _workspaces.get(key)
    if ws is None:
        from conveyor.store.workspace import Workspace, current_workspace, use_workspace

        current = current_workspace() if _inherited(settings) else None
        ws = current or Workspace.from_settings(
            settings["root"],
            project=settings["project"],
            store_uri=settings["store_uri"],
            artifact_uri=settings["artifact_uri"],
            actor=settings["actor"],
        )
        use_workspace(ws, default=True)
        _workspaces[key] = ws
    return ws


def _inherited(settings: dict[str, Any]) -> bool:
    """Whether the workspace this (forked) process inherited is the one the task names."""
    from conveyor.store import workspace as wsmod

    found = wsmod._current.get() or (wsmod._default[0] if wsmod._default else None)
    return found is not None and workspace_settings(found) == settings


def workspace_settings(ws: Any) -> dict[str, Any]:
    s = ws.settings
    return {
        "root": str(s.root),
        "project": s.project,
        "store_uri": s.store_uri,
        "artifact_uri": s.artifact_uri,
        "actor": s.actor,
    }


def load_output(ws: Any, output: dict[str, Any]) -> Any:
    """Load one stored output (verified against its digests)."""
    materializer = get_materializer(output["materializer"])
    files = {name: ws.artifacts.get(f["digest"]) for name, f in output["files"].items()}
    return materializer.load(files, output.get("info", {}))


def execute(task: StepTask) -> StepResult:
    """Run ``task`` here and report how it went (never raises for the step's own errors).

    The step's code runs in the task's workspace: ``cv.data.load`` and the like inside it
    use that project's stores, whatever the process's default is (a `--root` given to the
    command, an inline run of another project's pipeline).
    """
    from conveyor.store import workspace as wsmod

    ws = _workspace(task.settings)
    token = wsmod._current.set(ws)
    try:
        return _execute(task, ws)
    finally:
        wsmod._current.reset(token)


def _execute(task: StepTask, ws: Any) -> StepResult:
    from conveyor.pipelines import steplog
    from conveyor.store.activity import recording_reads
    from conveyor.tracking.runs import tracker

    started = time.perf_counter()
    run = tracker(ws).attach(task.run_id, task.node, task.experiment, task.parent_id)
    try:
        try:
            arguments = _load_inputs(ws, task.arguments)
        except Exception as e:  # noqa: BLE001 - reported as the step's failure
            return StepResult(
                ok=False,
                error=f"could not load its inputs: {type(e).__name__}: {e}",
                traceback=traceback.format_exc(),
            )
        with recording_reads() as reads, steplog.capture() as output:
            try:
                # Rebuilt from the bound arguments, so *args and **kwargs reach the function
                # as the pipeline passed them.
                call = inspect.BoundArguments(task.step.signature, arguments)  # type: ignore[arg-type,unused-ignore]
                value = task.step.fn(*call.args, **call.kwargs)
            except BaseException as e:
                from conveyor.tracking.runs import Terminated

                # In this process (inline), Ctrl-C and a SIGTERM stop the whole run; a step's
                # own sys.exit() is only that step failing, as it is in a worker process.
                if isinstance(e, StepTimedOut) or (
                    isinstance(e, KeyboardInterrupt | Terminated) and not _is_worker()
                ):
                    # A timed-out step's traceback shows where it was when time ran out.
                    timed_out = isinstance(e, StepTimedOut)
                    _keep_log(run, output, _user_traceback(e) if timed_out else "", task.attempt)
                    raise
                _keep_log(run, output, _user_traceback(e), task.attempt)
                return StepResult(
                    ok=False,
                    reads=list(reads),
                    error=f"{type(e).__name__}: {e}",
                    traceback=_user_traceback(e),
                    seconds=time.perf_counter() - started,
                )
        _keep_log(run, output, "", task.attempt)
        try:
            outputs = _store_outputs(ws, task.step, value)
        except InvalidArgumentError as e:
            return StepResult(ok=False, reads=list(reads), error=str(e), traceback="")
        return StepResult(
            ok=True, outputs=outputs, reads=list(reads), seconds=time.perf_counter() - started
        )
    finally:
        run.detach()


def _keep_log(run: Any, output: Any, failure: str, attempt: int) -> None:
    """Store what the step printed (and how it failed) on its tracked run, in place of an
    earlier attempt's log; nothing for a first attempt that printed nothing."""
    from conveyor.pipelines.steplog import NAME

    text = output.text()
    if failure:
        text += ("" if not text or text.endswith("\n") else "\n") + failure
    if not text and attempt <= 1:
        return
    if attempt > 1:
        text = f"[attempt {attempt}]\n{text}"
    try:
        ws = run.tracker.ws
        ws.log_artifact(text.encode(), run.ref, NAME, media_type="text/plain", replace=True)
    except Exception:  # a log that cannot be stored must not fail the step
        logging.getLogger("conveyor.pipelines").warning(
            "Could not store the log of step %s", run.ref, exc_info=True
        )


def _is_worker() -> bool:
    return not _inline_workspace


def _load_inputs(ws: Any, arguments: dict[str, Any]) -> dict[str, Any]:
    def resolve(value: Any) -> Any:
        if isinstance(value, InputRef):
            return load_output(ws, value.output)
        if type(value) in (list, tuple):
            return type(value)(resolve(v) for v in value)
        if type(value) is dict:
            return {k: resolve(v) for k, v in value.items()}
        return value

    return {name: resolve(value) for name, value in arguments.items()}


def _user_traceback(error: BaseException) -> str:
    """The traceback from the step's own code down (this module's frames left out)."""
    tb: types.TracebackType | None = error.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(error), error, tb))


def output_names(step: Step[Any]) -> list[str]:
    n = step.n_outputs
    return ["output"] if n is None else [f"output_{i}" for i in range(n)]


def _store_outputs(ws: Any, step: Step[Any], value: Any) -> list[dict[str, Any]]:
    n = step.n_outputs
    if n is None:
        values = [value]
        annotations = [step.returns]
    else:
        if not isinstance(value, tuple | list) or len(value) != n:
            raise InvalidArgumentError(
                f"Step {step.name!r} is annotated to return {n} values "
                f"({_type_name(step.returns)}) but returned {_describe(value)}."
            )
        values = list(value)
        annotations = list(typing.get_args(step.returns))
    stored = []
    for name, item, annotation in zip(output_names(step), values, annotations, strict=True):
        if not type_matches(item, annotation):
            raise InvalidArgumentError(
                f"Step {step.name!r} returned {_describe(item)} for {name}, but its annotation "
                f"says {_type_name(annotation)}.",
                hint="Return what the annotation says, or change the annotation.",
            )
        materializer = materializer_for(item)
        try:
            files, info = materializer.save(item)
        except ConveyorError:
            raise
        except Exception as e:  # noqa: BLE001 - a value its format cannot write (mixed types)
            raise InvalidArgumentError(
                f"Step {step.name!r} returned {_describe(item)} for {name} that cannot be "
                f"stored ({materializer.name}): {type(e).__name__}: {e}",
                hint="Give each column one type (e.g. df[col].astype(str)), or return a value "
                "of another type.",
            ) from None
        entries = {}
        for file_name, data in files.items():
            put = ws.artifacts.put_bytes(data)
            entries[file_name] = {"digest": put.digest, "size": put.size}
        stored.append(
            {
                "name": name,
                "materializer": materializer.name,
                "type": f"{type(item).__module__}.{type(item).__qualname__}",
                "info": info,
                "files": entries,
            }
        )
    return stored


def _describe(value: Any) -> str:
    kind = f"a {type(value).__module__}.{type(value).__qualname__}".replace("builtins.", "")
    if isinstance(value, tuple | list):
        return f"{kind} of {len(value)}"
    return kind


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__qualname__
    return repr(annotation).replace("typing.", "")


def type_matches(value: Any, annotation: Any) -> bool:
    """Whether ``value`` fits ``annotation``, as far as a runtime check can tell.

    Classes are checked with isinstance (any real number fits ``float``, any integer
    ``int``); unions by their members; generics (``list[int]``) by their container only;
    what cannot be checked (``Any``, type variables, strings) fits.
    """
    if annotation is None or annotation is Any or (annotation is type(None) and value is None):
        return True
    if annotation is type(None):
        return value is None
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return any(type_matches(value, a) for a in typing.get_args(annotation))
    if origin is typing.Annotated:
        return type_matches(value, typing.get_args(annotation)[0])
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if origin is not None:
        return not isinstance(origin, type) or isinstance(value, origin)
    if annotation is float:
        return isinstance(value, numbers.Real)
    if annotation is int:
        return isinstance(value, numbers.Integral)
    if isinstance(annotation, type):
        try:
            return isinstance(value, annotation)
        except TypeError:
            return True
    return True


def run_in_worker(payload: bytes) -> bytes:
    """The entry point worker processes call: a pickled task in, a pickled result out."""
    import cloudpickle

    try:
        task = cloudpickle.loads(payload)
        result = execute(task)
    except BaseException as e:  # noqa: BLE001 - anything that escapes is still reported
        result = StepResult(
            ok=False, error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc()
        )
    sys.stdout.flush()
    return cloudpickle.dumps(result)
