"""The coordinator: runs a pipeline's graph on an executor and records every step.

Records are written in few transactions: everything that changes between two waits on the
executor (steps that finished, steps found in the cache, steps about to start) commits
together, so a trivial step costs about one commit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from conveyor.core import ids
from conveyor.core.clock import utcnow
from conveyor.core.errors import ConveyorError, InvalidArgumentError
from conveyor.pipelines.dsl import Graph, Node, Pipeline, StepOutput, map_futures
from conveyor.pipelines.executors import Executor, Handle, make_executor
from conveyor.pipelines.records import DONE, PipelineRun, PipelineStatus, StepStatus
from conveyor.pipelines.store import PipelineStore
from conveyor.pipelines.worker import InputRef, StepResult, StepTask, workspace_settings
from conveyor.store.metadata.store import UnitOfWork
from conveyor.store.records import ObjectRef
from conveyor.store.workspace import Workspace, current_workspace
from conveyor.tracking import validation
from conveyor.tracking.records import RunStatus
from conveyor.tracking.runs import tracker
from conveyor.tracking.store import EndRun, LinkArtifact, LogParam

__all__ = ["PipelineFailed", "run_pipeline"]

log = logging.getLogger(__name__)

#: How often a running pipeline's coordinator records that it is alive and checks whether
#: someone asked to cancel it.
HEARTBEAT_S = 1.0
Progress = Callable[[str, str, str], None]  # (call name, status, detail)


class PipelineFailed(ConveyorError, RuntimeError):
    """A step failed (after its retries) or the run was cancelled; ``.run`` has the record."""

    code = "conveyor.pipeline_failed"

    def __init__(self, message: str, run: PipelineRun) -> None:
        super().__init__(
            message,
            hint=f"conveyor pipeline show {run.id}; after a fix: conveyor pipeline resume {run.id}",
        )
        self.run = run


@dataclass
class _State:
    node: Node
    id: str
    status: StepStatus = StepStatus.PENDING
    attempts: int = 0
    cache_key: str | None = None
    cached_from: str | None = None
    outputs: list[dict[str, Any]] = field(default_factory=list)
    reads: list[dict[str, str]] = field(default_factory=list)
    error: str = ""
    traceback: str = ""
    started_at: datetime | None = None
    handle: Handle | None = None
    retry_at: float | None = None


def output_digest(output: dict[str, Any]) -> str:
    """One digest for a stored output: its materializer and its files' digests."""
    parts = [output["materializer"], json.dumps(output.get("info", {}), sort_keys=True)]
    parts += [f"{n}={f['digest']}" for n, f in sorted(output["files"].items())]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _tagged(value: Any) -> Any:
    """``value`` with what JSON would blur made explicit: tuples are not lists, and a dict
    with a non-string key is not JSON (TypeError: digested by pickle instead)."""
    if type(value) is tuple:
        return {"$tuple": [_tagged(v) for v in value]}
    if type(value) is list:
        return [_tagged(v) for v in value]
    if type(value) is dict:
        if not all(type(k) is str for k in value):
            raise TypeError("a dict key that is not a string")
        return {k: _tagged(v) for k, v in value.items()}
    return value


def _value_digest(value: Any) -> str:
    try:
        text = json.dumps(_tagged(value), sort_keys=True, separators=(",", ":"), allow_nan=True)
        return hashlib.sha256(b"json:" + text.encode()).hexdigest()
    except (TypeError, ValueError):
        import cloudpickle

        try:
            return hashlib.sha256(b"pickle:" + cloudpickle.dumps(value)).hexdigest()
        except Exception as e:
            raise InvalidArgumentError(
                f"An argument of type {type(value).__name__} cannot be digested for the cache "
                f"key ({e}).",
                hint="Pass plain values, or produce the object inside a step; or use "
                "@cv.step(cache=False).",
            ) from e


def _closure_digest(fn: Any) -> Any:
    """Values the step's function captured from an enclosing function (they change results)."""
    cells = getattr(fn, "__closure__", None) or ()
    names = fn.__code__.co_freevars
    found = {}
    for name, cell in zip(names, cells, strict=False):
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        if callable(value) or isinstance(value, type):
            continue  # functions and classes are code, not data
        try:
            found[name] = _value_digest(value)
        except InvalidArgumentError:
            found[name] = repr(type(value))
    return found


def _package_versions(packages: tuple[str, ...]) -> dict[str, str]:
    found = {}
    for package in packages:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "(not installed)"
    return found


def run_pipeline(
    pipeline: Pipeline,
    params: dict[str, Any],
    *,
    executor: str = "local",
    cache: bool = True,
    ws: Workspace | None = None,
    progress: Progress | None = None,
    resume_from: PipelineRun | None = None,
    run_id: str | None = None,
) -> PipelineRun:
    """Run ``pipeline`` (see :meth:`Pipeline.run`).

    ``run_id``: the id to record the run under, chosen beforehand by a caller that must be
    able to tell later whether the run started (the continuous-training controller).
    """
    ws = ws or current_workspace()
    if ws.remote is not None:
        from conveyor.pipelines.remote import needs_the_store, run_on_server

        if resume_from is not None or run_id is not None:
            raise needs_the_store(f"Resuming pipeline {pipeline.name!r}")
        pipeline.bind(params)  # a wrong param is refused here, before the server is asked
        return run_on_server(
            ws, pipeline, params, executor=executor, cache=cache, progress=progress
        )
    bound = pipeline.bind(params)
    for key in bound:
        validation.check_key(key, "param")
    graph = pipeline.build(bound)
    ex = make_executor(executor, ws)  # an unreachable backend fails before anything is recorded
    engine = _Engine(ws, pipeline, graph, bound, ex, executor, cache, progress, resume_from)
    if run_id is not None:
        engine.run_id = run_id
    return engine.run()


class _Engine:
    def __init__(
        self,
        ws: Workspace,
        pipeline: Pipeline,
        graph: Graph,
        params: dict[str, Any],
        ex: Executor,
        executor: str,
        cache: bool,
        progress: Progress | None,
        resume_from: PipelineRun | None,
    ) -> None:
        self.ws = ws
        self.pipeline = pipeline
        self.graph = graph
        self.params = params
        self.ex = ex
        self.executor = executor
        self.cache = cache
        self.progress = progress
        self.store = PipelineStore(ws)
        self.tracker = tracker(ws)
        self.run_id = ids.new_id()
        self.states = {name: _State(node, ids.new_id()) for name, node in graph.nodes.items()}
        self.reused = {
            s.name: s for s in (resume_from.steps if resume_from else []) if s.status in DONE
        }
        self.resume_from = resume_from
        self.settings = workspace_settings(ws)
        self.ops: list[Any] = []  # tracking writes for the next commit
        self.changes: list[dict[str, Any]] = []  # step-run updates for the next commit
        self.edges: list[tuple[ObjectRef, ObjectRef, str]] = []
        self.to_submit: list[_State] = []
        self.next_handle = 0
        self.failed: _State | None = None
        self.killed = False

    # -- recording -----------------------------------------------------------------------

    def _tell(self, state: _State, detail: str = "") -> None:
        if self.progress is not None:
            self.progress(state.node.name, str(state.status), detail)

    def _commit(self, then: Callable[[UnitOfWork], None] | None = None) -> None:
        """Write what changed since the last commit (and ``then``'s writes) in one transaction."""
        if not (self.ops or self.changes or self.edges or then):
            return
        ops, changes, edges = self.ops, self.changes, self.edges
        self.ops, self.changes, self.edges = [], [], []
        with self.ws.metadata.transaction(project_id=self.store.project_id) as uow:
            self.tracker.store.write_in(uow, ops)
            self.store.update_steps(uow, changes)
            for src, dst, relation in edges:
                uow.link(src, dst, relation)
            if then is not None:
                then(uow)

    def _start_records(self) -> None:
        name = self.pipeline.name
        ops = self.tracker.create_ops(
            name,
            self.run_id,
            f"{name}-{self.run_id[-6:].lower()}",
            None,
            {"conveyor.pipeline": name, "conveyor.executor": self.executor},
        )
        ops += [
            LogParam(self.run_id, k, validation.param_value(k, v)) for k, v in self.params.items()
        ]
        with self.ws.metadata.transaction(project_id=self.store.project_id) as uow:
            pipeline_id = self.store.ensure_pipeline(uow, name, self.pipeline.entrypoint)
            self.store.insert_run(
                uow,
                {
                    "id": self.run_id,
                    "pipeline_id": pipeline_id,
                    "project_id": self.store.project_id,
                    "status": str(PipelineStatus.RUNNING),
                    "params": self.params,
                    "entrypoint": self.pipeline.entrypoint,
                    "executor": self.executor,
                    "resumed_from": self.resume_from.id if self.resume_from else None,
                    "cancel_requested": False,
                    "coordinator": f"{socket.gethostname()}:{os.getpid()}"[:200],
                    "heartbeat_at": uow.now,
                    "error": "",
                    "started_at": uow.now,
                    "ended_at": None,
                    "created_by": self.ws.settings.actor,
                },
            )
            self.tracker.store.write_in(uow, ops)
            self.store.insert_steps(
                uow,
                [
                    {
                        "id": s.id,
                        "pipeline_run_id": self.run_id,
                        "name": s.node.name,
                        "step": s.node.step.name,
                        "status": str(StepStatus.PENDING),
                        "attempts": 0,
                        "upstream": s.node.upstream,
                        "error": "",
                    }
                    for s in self.states.values()
                ],
            )
            uow.audit(
                "pipeline_run.start",
                ObjectRef("pipeline_run", self.run_id),
                after={"pipeline": name, "executor": self.executor},
            )

    def _step_run_ops(self, state: _State, tags: dict[str, str] | None = None) -> list[Any]:
        ops = self.tracker.create_ops(
            self.pipeline.name,
            state.id,
            state.node.name,
            self.run_id,
            {"conveyor.step": state.node.step.name, **(tags or {})},
            start_time=state.started_at,  # the step's own: a cached step starts as it ends
        )
        for key, value in state.node.arguments.items():
            if _has_future(value):
                continue
            try:
                validation.check_key(key, "param")
                ops.append(LogParam(state.id, key, validation.param_value(key, value)))
            except ConveyorError:
                continue  # a value too long or odd for a param: it is still in the cache key
        return ops

    def _output_edges(self, state: _State) -> None:
        run = ObjectRef("run", state.id)
        # Only the outputs its arguments take: a step given the train split of a step that
        # returns train and test did not use the test split.
        used: dict[tuple[str, int], None] = {}

        def note(future: StepOutput) -> StepOutput:
            used[(future.node.name, 0 if future.index is None else future.index)] = None
            return future

        for value in state.node.arguments.values():
            map_futures(value, note)
        for up, index in used:
            outputs = self.states[up].outputs
            if index < len(outputs):
                self.edges.append((_output_ref(self.states[up], outputs[index]), run, "used_by"))
        if state.cached_from is not None:  # what the step read when it ran, it uses again
            for read in state.reads:
                if read.get("kind") == "dataset" and read.get("id"):
                    self.edges.append((ObjectRef("dataset_version", read["id"]), run, "used_by"))
        for out in state.outputs:
            self.edges.append((run, _output_ref(state, out), "produced"))
            for file_name, f in out["files"].items():
                self.ops.append(
                    LinkArtifact(
                        run,
                        f"outputs/{out['name']}/{file_name}",
                        f["digest"],
                        f["size"],
                        "application/octet-stream",
                    )
                )

    # -- scheduling ----------------------------------------------------------------------

    def _arguments(self, state: _State) -> dict[str, Any]:
        def to_input(future: StepOutput) -> InputRef:
            up = self.states[future.node.name]
            index = 0 if future.index is None else future.index
            return InputRef(up.node.name, up.outputs[index])

        return {k: map_futures(v, to_input) for k, v in state.node.arguments.items()}

    def _cache_key(self, state: _State, arguments: dict[str, Any]) -> str:
        def digest_of(value: Any) -> Any:
            if isinstance(value, InputRef):
                return {"$input": output_digest(value.output)}
            if type(value) in (list, tuple):
                return [digest_of(v) for v in value]
            if type(value) is dict:
                return {k: digest_of(v) for k, v in value.items()}
            return value

        step = state.node.step
        material = {
            "step": step.name,
            "version": step.options.version,
            "source": step.source_digest,  # (computed now: see code_digest)
            "closure": _closure_digest(step.fn),
            "arguments": _value_digest({k: digest_of(v) for k, v in arguments.items()}),
            "packages": _package_versions(step.options.packages),
        }
        return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()

    def _reusable(self, state: _State) -> Any:
        """A recorded step run whose outputs this call can take, or None."""
        earlier = self.reused.get(state.node.name)
        if earlier is not None and earlier.cache_key == state.cache_key:
            return earlier  # resuming: the same call (code, arguments, inputs) finished before
        if not (self.cache and state.node.step.options.cache) or state.cache_key is None:
            return None
        found = self.store.find_cached(state.cache_key)
        if found is None or not self._still_valid(found):
            return None
        return found

    def _still_valid(self, found: Any) -> bool:
        digests = {f["digest"] for o in found.outputs for f in o["files"].values()}
        if self.ws.artifacts.exists_many(digests) != digests:
            return False
        datasets = [r for r in found.reads if r.get("kind") == "dataset"]
        if datasets:
            from conveyor.data.service import data_service

            service = data_service(self.ws)
            for read in datasets:
                try:
                    if service.get(read["ref"]).id != read["id"]:
                        return False
                except ConveyorError:
                    return False
        return True

    def _schedule_ready(self) -> None:
        """Take every step whose inputs are ready: from the cache, or to start."""
        progressed = True
        while progressed and self.failed is None and not self.killed:
            progressed = False
            for state in self.states.values():
                if state.status is not StepStatus.PENDING:
                    continue
                if any(self.states[u].status not in DONE for u in state.node.upstream):
                    continue
                arguments = self._arguments(state)
                # Computed (and recorded) even when the cache is off: a later run may reuse
                # this fresher result, and resume matches finished steps by it.
                state.cache_key = self._cache_key(state, arguments)
                found = self._reusable(state)
                if found is not None:
                    self._take_cached(state, found)
                    progressed = True
                    continue
                state.status = StepStatus.RUNNING
                state.started_at = utcnow()
                state.attempts = 1
                self.ops += self._step_run_ops(state)
                self.changes.append(
                    {
                        "id": state.id,
                        "status": str(StepStatus.RUNNING),
                        "cache_key": state.cache_key,
                        "attempts": 1,
                        "started_at": state.started_at,
                    }
                )
                state.handle = self._handle(state, arguments)
                self.to_submit.append(state)
                self._tell(state)

    def _take_cached(self, state: _State, found: Any) -> None:
        now = utcnow()
        state.status = StepStatus.CACHED
        state.cached_from = found.id
        state.outputs = found.outputs
        state.reads = found.reads
        state.started_at = now
        self.ops += self._step_run_ops(state, {"conveyor.cached_from": found.id})
        # The metrics the step recorded when it ran (their last values: the whole history
        # stays on that run), as its outputs are: a cache hit gives the same results.
        self.ops += self.tracker.store.latest_metric_ops(found.id, state.id)
        self.ops.append(EndRun(state.id, RunStatus.FINISHED, now))
        self.changes.append(
            {
                "id": state.id,
                "status": str(StepStatus.CACHED),
                "cache_key": state.cache_key,
                "cached_from": found.id,
                "outputs": found.outputs,
                "reads": found.reads,
                "started_at": now,
                "ended_at": now,
            }
        )
        self._output_edges(state)
        self._tell(state, f"from {found.id[-6:].lower()}")

    def _handle(self, state: _State, arguments: dict[str, Any]) -> Handle:
        self.next_handle += 1
        task = StepTask(
            settings=self.settings,
            step=state.node.step,
            node=state.node.name,
            run_id=state.id,
            experiment=self.pipeline.name,
            parent_id=self.run_id,
            arguments=arguments,
            attempt=state.attempts,
        )
        return Handle(self.next_handle, task, state.node.step.options.resources)

    def _submit(self) -> None:
        submitting, self.to_submit = self.to_submit, []
        for state in submitting:
            assert state.handle is not None
            state.handle.task.attempt = state.attempts
            state.handle.started_at = None
            self.ex.submit(state.handle)

    # -- results -------------------------------------------------------------------------

    def _finished(self, handle: Handle, result: StepResult) -> None:
        state = next((s for s in self.states.values() if s.handle is handle), None)
        if state is None or state.status is not StepStatus.RUNNING:
            return
        if result.ok:
            state.status = StepStatus.SUCCEEDED
            state.outputs = result.outputs
            state.reads = result.reads
            now = utcnow()
            # It started when a worker took it, not when it was queued: its duration is its
            # own, not also the steps it waited for.
            # (A step that was retried keeps its first start: its time is all its attempts.)
            if state.started_at is not None and result.seconds > 0 and state.attempts == 1:
                state.started_at = max(state.started_at, now - timedelta(seconds=result.seconds))
            self.ops.append(EndRun(state.id, RunStatus.FINISHED, now))
            self.changes.append(
                {
                    "id": state.id,
                    "status": str(StepStatus.SUCCEEDED),
                    "outputs": result.outputs,
                    "reads": result.reads,
                    "attempts": state.attempts,
                    "started_at": state.started_at,
                    "ended_at": now,
                }
            )
            self._output_edges(state)
            self._tell(state, f"{result.seconds:.2f}s")
            return
        self._attempt_failed(state, result.error, result.traceback)

    def _attempt_failed(self, state: _State, error: str, tb: str, *, final: bool = False) -> None:
        options = state.node.step.options
        if state.attempts <= options.retries and not (self.killed or final):
            delay = options.retry_delay * 2 ** (state.attempts - 1)
            log.warning(
                "conveyor: step %s failed (attempt %d of %d): %s; retrying in %.1f s",
                state.node.name,
                state.attempts,
                options.retries + 1,
                error,
                delay,
            )
            state.retry_at = time.monotonic() + delay
            state.error = error
            self._tell(state, f"attempt {state.attempts} failed: {error}; retrying")
            return
        state.status = StepStatus.FAILED
        state.error = error
        state.traceback = tb
        now = utcnow()
        text = f"Step {state.node.name!r} failed"
        if state.attempts > 1:
            text += f" after {state.attempts} attempts"
        text += f": {error}"
        if tb:
            text += f"\n\n{tb}"
        put = self.ws.artifacts.put_bytes(text.encode())
        self.ops.append(
            LinkArtifact(
                ObjectRef("run", state.id), "traceback.txt", put.digest, put.size, "text/plain"
            )
        )
        self.ops.append(EndRun(state.id, RunStatus.FAILED, now))
        self.changes.append(
            {
                "id": state.id,
                "status": str(StepStatus.FAILED),
                "attempts": state.attempts,
                "error": text,
                "ended_at": now,
            }
        )
        if self.failed is None:
            self.failed = state
        self._tell(state, error)

    @staticmethod
    def _deadline(state: _State) -> float | None:
        """When a running attempt times out: its timeout after it really started (a step
        queued for a free worker is not yet on the clock), or None."""
        timeout = state.node.step.options.timeout
        handle = state.handle
        if not timeout or handle is None or handle.started_at is None or state.retry_at:
            return None
        return handle.started_at + timeout

    def _check_timers(self) -> None:
        now = time.monotonic()
        for state in self.states.values():
            if state.status is not StepStatus.RUNNING:
                continue
            deadline = self._deadline(state)
            if deadline is not None and now >= deadline and state.handle is not None:
                self.ex.cancel(state.handle)
                state.handle.started_at = None
                timeout = state.node.step.options.timeout or 0
                self._attempt_failed(state, f"timed out after {human_seconds(timeout)}", "")
            if state.retry_at is not None and now >= state.retry_at:
                state.retry_at = None
                if self.killed:
                    continue
                state.attempts += 1
                self.changes.append({"id": state.id, "attempts": state.attempts})
                assert state.handle is not None
                self.to_submit.append(state)

    def _next_wake(self) -> float:
        wake = HEARTBEAT_S
        now = time.monotonic()
        for state in self.states.values():
            for t in (self._deadline(state), state.retry_at):
                if t is not None:
                    wake = min(wake, max(0.0, t - now))
        return wake

    def _in_flight(self) -> bool:
        return any(s.status is StepStatus.RUNNING for s in self.states.values())

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> PipelineRun:
        self._start_records()
        beat = _Heartbeat(self.store, self.run_id)
        beat.start()
        previous = _on_sigterm()
        stopped: BaseException | None = None  # Ctrl-C or SIGTERM
        crash: BaseException | None = None  # an error of the coordinator itself
        try:
            self._loop(beat)
        except KeyboardInterrupt as e:
            stopped = e
            self._kill_all()
        except BaseException as e:  # noqa: BLE001 - recorded, then raised again below
            crash = e
            self._kill_all()
        finally:
            beat.stop()
            _restore_sigterm(previous)
            try:
                self.ex.shutdown()
            except Exception as e:  # noqa: BLE001 - the records matter more than the pool
                log.warning("conveyor: stopping the %s executor failed: %s", self.ex.name, e)
        run = self._finish(crash)
        if isinstance(stopped, _Terminated):
            raise SystemExit(143)
        if stopped is not None:
            raise KeyboardInterrupt
        if crash is not None:
            raise crash
        if run.status is not PipelineStatus.SUCCEEDED:
            raise PipelineFailed(run.error, run)
        return run

    def _loop(self, beat: _Heartbeat) -> None:
        while True:
            self._schedule_ready()
            self._commit()
            self._submit()
            if not self._in_flight():
                return
            if self.failed is not None or self.killed:
                # Let the running steps finish; start nothing new; retries are dropped.
                for s in self.states.values():
                    if s.status is StepStatus.RUNNING and s.retry_at is not None:
                        s.retry_at = None
                        self._attempt_failed(s, s.error, "", final=True)
                if not any(
                    s.status is StepStatus.RUNNING and s.handle is not None
                    for s in self.states.values()
                ):
                    return
            for handle, result in self.ex.wait(self._next_wake()):
                self._finished(handle, result)
            self._check_timers()
            if beat.cancel_requested and not self.killed:
                self._kill_all()

    def _kill_all(self) -> None:
        self.killed = True
        for state in self.states.values():
            if state.status is StepStatus.RUNNING:
                if state.handle is not None:
                    self.ex.cancel(state.handle)
                state.status = StepStatus.KILLED
                now = utcnow()
                self.ops.append(EndRun(state.id, RunStatus.KILLED, now))
                self.changes.append(
                    {"id": state.id, "status": str(StepStatus.KILLED), "ended_at": now}
                )
                self._tell(state)

    def _finish(self, crash: BaseException | None = None) -> PipelineRun:
        for state in self.states.values():
            if state.status is StepStatus.PENDING:
                state.status = StepStatus.SKIPPED
                self.changes.append({"id": state.id, "status": str(StepStatus.SKIPPED)})
        if crash is not None:
            status, error = (
                PipelineStatus.FAILED,
                (
                    f"Pipeline {self.pipeline.name!r} stopped: its coordinator failed with "
                    f"{type(crash).__name__}: {crash}"
                ),
            )
        elif self.killed:
            status, error = PipelineStatus.KILLED, f"Pipeline {self.pipeline.name!r} was stopped."
        elif self.failed is not None:
            status, error = PipelineStatus.FAILED, self._failure_text(self.failed)
        else:
            status, error = PipelineStatus.SUCCEEDED, ""
        final = {
            PipelineStatus.SUCCEEDED: RunStatus.FINISHED,
            PipelineStatus.FAILED: RunStatus.FAILED,
            PipelineStatus.KILLED: RunStatus.KILLED,
        }[status]
        self.ops.append(EndRun(self.run_id, final, utcnow()))

        def end(uow: UnitOfWork) -> None:
            self.store.finish_run(uow, self.run_id, status, error)
            uow.audit(
                "pipeline_run.end",
                ObjectRef("pipeline_run", self.run_id),
                after={"status": str(status)},
            )

        self._commit(then=end)
        return self.store.get_run(self.run_id)

    def _failure_text(self, state: _State) -> str:
        text = f"Pipeline {self.pipeline.name!r} failed at step {state.node.name!r}"
        if state.attempts > 1:
            text += f" after {state.attempts} attempts"
        text += f": {state.error}"
        if state.traceback:
            text += f"\n\n{state.traceback.rstrip()}"
        return text


class _Heartbeat(threading.Thread):
    """Records every second that the coordinator is alive and notices a cancel request (so
    `conveyor pipeline cancel` works, and a run whose coordinator died can be told apart)."""

    def __init__(self, store: PipelineStore, run_id: str) -> None:
        super().__init__(name="conveyor-pipeline-heartbeat", daemon=True)
        self.store = store
        self.run_id = run_id
        self.cancel_requested = False
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(HEARTBEAT_S):
            try:
                if self.store.heartbeat(self.run_id):
                    self.cancel_requested = True
            except Exception as e:  # noqa: BLE001 - a missed beat is retried next second
                log.debug("conveyor: pipeline heartbeat failed: %s", e)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C (the run ends KILLED), then the process exits 143."""


def _raise_terminated(_signum: int, _frame: Any) -> None:
    raise _Terminated


def _on_sigterm() -> Any:
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_terminated)


def _restore_sigterm(previous: Any) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


def _output_ref(state: _State, output: dict[str, Any]) -> ObjectRef:
    return ObjectRef("step_output", f"{state.id}/{output['name']}")


def _has_future(value: Any) -> bool:
    found = []
    map_futures(value, lambda f: found.append(f))
    return bool(found)


def human_seconds(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"
