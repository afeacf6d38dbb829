"""Starting, logging to and ending runs: the ``Tracker`` service and the ``ActiveRun`` handle."""

from __future__ import annotations

import atexit
import io
import json
import logging
import os
import sys
import threading
import time
import traceback
import weakref
from contextvars import ContextVar
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from conveyor.core import ids
from conveyor.core.clock import utcnow
from conveyor.core.errors import (
    ConflictError,
    ConveyorError,
    InvalidArgumentError,
    NotFoundError,
)
from conveyor.core.names import validate_artifact_path
from conveyor.store.activity import enter_activity, leave_activity
from conveyor.store.catalog import guess_media_type
from conveyor.store.records import ArtifactLink, ObjectRef
from conveyor.store.workspace import Workspace, current_workspace
from conveyor.tracking import environment, validation
from conveyor.tracking.records import RunStatus
from conveyor.tracking.store import (
    CreateRun,
    EndRun,
    LinkArtifact,
    LogMetric,
    LogParam,
    SetTag,
    TrackingStore,
)
from conveyor.tracking.writer import Writer

__all__ = ["ActiveRun", "Tracker", "active_run", "active_runs", "tracker"]

log = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "default"
_active: ContextVar[tuple[ActiveRun, ...]] = ContextVar("conveyor_active_runs", default=())


def tracker(ws: Workspace | None = None) -> Tracker:
    """Return the tracking service of ``ws`` (default: the workspace in use)."""
    return (ws or current_workspace()).service("tracking", Tracker)


def active_runs() -> tuple[ActiveRun, ...]:
    """Return the runs active in this context, outermost first."""
    return _active.get()


def active_run() -> ActiveRun | None:
    """Return the innermost active run, or None."""
    stack = _active.get()
    return stack[-1] if stack else None


class Tracker:
    """Tracking for one workspace: starts runs and owns the background writer."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.remote = ws.remote is not None
        if self.remote:
            from conveyor.tracking.remote import RemoteTrackingStore

            self.store: TrackingStore = RemoteTrackingStore(ws)  # type: ignore[assignment]
            ws.before_remote_write(lambda: self.writer.flush())
        else:
            self.store = TrackingStore(ws)
        self._git_diff: bytes | None = None  # remote mode: uploaded as each run's artifact
        self.writer = Writer(self.store.write)
        self._env_lock = threading.Lock()
        self._env: tuple[environment.RunEnvironment, str, str | None] | None = None
        self._open: dict[str, ActiveRun] = {}
        #: Runs a parent process had open when this one was forked from it: a child run may
        #: name one as its parent before the parent's writer has stored it.
        self._inherited: dict[str, ActiveRun] = {}
        self._open_lock = threading.Lock()
        self.origin_pid = os.getpid()
        _register(self)

    def close(self) -> None:
        """End this process's runs that are still open as FINISHED, then store what is queued."""
        self._end_open_runs(RunStatus.FINISHED)
        self.writer.close()

    def open_runs(self) -> list[ActiveRun]:
        """Return the runs this process started with this tracker and has not ended."""
        with self._open_lock:
            return [r for r in self._open.values() if r.pid == os.getpid()]

    def _end_open_runs(self, status: RunStatus) -> None:
        for run in reversed(self.open_runs()):
            run.end(status)

    def _finish_at_exit(self) -> None:
        """End runs left open (FAILED after an uncaught error, KILLED after Ctrl-C or
        SIGTERM); store all."""
        # An interactive session keeps its last error (sys.last_value) long after it
        # was shown: it says nothing of how the session ended.
        last = None if _interactive() else getattr(sys, "last_value", None)
        if _terminated or isinstance(last, KeyboardInterrupt):
            status = RunStatus.KILLED
        elif last is not None:
            status = RunStatus.FAILED
        else:
            status = RunStatus.FINISHED
        if _in_child_process(self):
            # A worker leaving (a pool ends its workers with SIGTERM, which is held while
            # this stores): a store that does not answer must not keep it for minutes.
            self.writer.shorten_retries(CHILD_EXIT_RETRY_S)
        try:
            self._end_open_runs(status)
        finally:
            self.writer.close()

    def _after_fork_in_child(self) -> None:
        """Forget the parent's open runs (they are the parent's to end) and its writer thread;
        replace locks another thread may have held at the fork."""
        self._open_lock = threading.Lock()
        self._env_lock = threading.Lock()
        self._inherited.update({k: r for k, r in self._open.items() if r.pid != os.getpid()})
        self._open = {k: r for k, r in self._open.items() if r.pid == os.getpid()}
        self.writer.reset_after_fork()

    def flush(self) -> None:
        """Wait until everything logged so far is stored."""
        self.writer.flush()

    def _environment(self) -> tuple[environment.RunEnvironment, str, str | None]:
        """Capture the environment once and store its package list and git diff once."""
        with self._env_lock:
            if self._env is None:
                env = environment.capture(str(self.ws.settings.root))
                if self.remote:
                    # The server stores the content and links it, computing the digest itself.
                    digest = self.store.put_content(env.packages, "text/plain")  # type: ignore[attr-defined]
                    if env.git is not None and env.git.dirty and env.git.diff:
                        self._git_diff = env.git.diff
                    self._env = (env, digest, None)
                    return self._env
                packages = self.ws.artifacts.put(env.packages)
                self.writer.submit(
                    LinkArtifact(
                        ObjectRef("environment", packages.digest),
                        "requirements.txt",
                        packages.digest,
                        packages.size,
                        "text/plain",
                    )
                )
                diff_digest = None
                if env.git is not None and env.git.dirty and env.git.diff:
                    diff_digest = self.ws.artifacts.put(env.git.diff).digest
                self._env = (env, packages.digest, diff_digest)
            return self._env

    def start_run(
        self,
        experiment: str | None = None,
        *,
        name: str | None = None,
        tags: dict[str, Any] | None = None,
        parent: ActiveRun | str | None = None,
    ) -> ActiveRun:
        """Start a run and make it the active one; see :func:`conveyor.start_run`."""
        outer = active_run()
        if parent is None and outer is not None:
            parent = outer
        parent_id, parent_experiment = self._parent(parent)
        if experiment is None:
            # (an empty CONVEYOR_EXPERIMENT is unset, as for every CONVEYOR_* variable)
            experiment = (
                parent_experiment or os.environ.get("CONVEYOR_EXPERIMENT") or DEFAULT_EXPERIMENT
            )
        exp = self.store.experiment(experiment)
        checked_tags = {
            validation.check_key(k, "tag"): validation.tag_value(k, v)
            for k, v in (tags or {}).items()
        }
        if name is not None and (not isinstance(name, str) or not 0 < len(name) <= 200):
            raise InvalidArgumentError(f"A run name must be 1 to 200 characters; got {name!r}.")
        if name is not None:
            validation.no_nul(name, f"The run name {name!r}")
        run_id = ids.new_id()
        run_name = name or f"run-{run_id[-6:].lower()}"
        ops = self.create_ops(exp.name, run_id, run_name, parent_id, checked_tags)
        self.writer.submit_many(ops)
        run = self._activate(ActiveRun(self, run_id, run_name, exp.name, parent_id))
        if self._git_diff is not None:  # remote mode (the upload flushes the run's creation)
            self.ws.log_artifact(
                self._git_diff, run.ref, "environment/git.diff", media_type="text/x-diff"
            )
        return run

    def _parent(self, parent: ActiveRun | str | None) -> tuple[str | None, str | None]:
        """The id and experiment of ``parent``, a run that must exist in this project
        (a mistyped id would leave a child pointing at nothing)."""
        if parent is None:
            return None, None
        if isinstance(parent, str):
            with self._open_lock:
                parent = self._open.get(parent) or self._inherited.get(parent, parent)
        if isinstance(parent, ActiveRun):
            return parent.id, parent.experiment
        if not isinstance(parent, str) or not parent:
            raise InvalidArgumentError(
                f"parent must be a run or a run id; got {parent!r}.",
                hint="Pass the parent run (cv.start_run returns it) or its id.",
            )
        self.writer.flush()  # a run this process started may still be on its way
        found = self.store.get_run(parent)  # NotFoundError names the id and the project
        if found.deleted:
            raise ConflictError(
                f"Run {parent!r} is deleted: a run cannot be started under it.",
                hint=f"Restore it first: conveyor runs restore {parent}",
            )
        return found.id, found.experiment

    def create_ops(
        self,
        experiment: str,
        run_id: str,
        name: str,
        parent_id: str | None,
        tags: dict[str, str] | None = None,
        *,
        start_time: datetime | None = None,
    ) -> list[Any]:
        """Return the writes that create run ``run_id`` (with the environment it runs in).

        For services that create runs in their own transaction (pipelines create a step's
        run together with the step's record): pass them to ``store.write_in``, with the
        ``start_time`` the service records for it (default: now).
        """
        exp = self.store.experiment(experiment)
        env, packages_digest, diff_digest = self._environment()
        run_name = name
        git = env.git
        row = {
            "id": run_id,
            "project_id": self.ws.project.id,
            "experiment_id": exp.id,
            "name": run_name,
            "status": str(RunStatus.RUNNING),
            "start_time": start_time or utcnow(),
            "end_time": None,
            "user": self.ws.settings.actor,
            "parent_id": parent_id,
            "git_commit": git.commit if git else None,
            "git_branch": git.branch if git else None,
            "git_dirty": git.dirty if git else None,
            "command": env.command,
            "python_version": env.python_version,
            "host": env.host,
            "environment_digest": packages_digest,
            "deleted_at": None,
        }
        ops: list[Any] = [CreateRun(row)]
        ops += [SetTag(run_id, k, v) for k, v in (tags or {}).items()]
        if diff_digest is not None and git is not None:
            ops.append(
                LinkArtifact(
                    ObjectRef("run", run_id),
                    "environment/git.diff",
                    diff_digest,
                    len(git.diff),
                    "text/x-diff",
                )
            )
        return ops

    def attach(
        self, run_id: str, name: str, experiment: str, parent_id: str | None = None
    ) -> ActiveRun:
        """Make the existing run ``run_id`` the active one in this context, without creating it.

        A pipeline step's code runs in a worker while the coordinator owns the run: the worker
        attaches, logs and detaches (:meth:`ActiveRun.detach`); the coordinator ends the run.
        """
        return self._activate(ActiveRun(self, run_id, name, experiment, parent_id))

    def _activate(self, run: ActiveRun) -> ActiveRun:
        with self._open_lock:
            self._open[run.id] = run
        _active.set((*_active.get(), run))
        enter_activity(run.ref)
        return run


class ActiveRun:
    """A run in progress. Use it as a context manager, or call :meth:`end`.

    Leaving the ``with`` block normally ends it FINISHED; an exception ends it FAILED with
    the traceback stored as ``traceback.txt``; Ctrl-C ends it KILLED.
    """

    def __init__(
        self, tracker: Tracker, run_id: str, name: str, experiment: str, parent_id: str | None
    ) -> None:
        self.tracker = tracker
        self.id = run_id
        self.name = name
        self.experiment = experiment
        self.parent_id = parent_id
        self.ended = False
        self.status = RunStatus.RUNNING
        self.pid = os.getpid()
        self._params: dict[str, str] = {}
        self._steps: dict[str, int] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ActiveRun(id={self.id!r}, name={self.name!r}, experiment={self.experiment!r})"

    @property
    def ref(self) -> ObjectRef:
        """This run as a lineage reference."""
        return ObjectRef("run", self.id)

    def _check_open(self) -> None:
        if self.ended:
            raise ConflictError(
                f"Run {self.id} ({self.name}) has ended ({self.status}); it takes no more values.",
                hint="Start a new run with start_run().",
            )

    # -- params, metrics, tags ---------------------------------------------------------------

    def log_param(self, key: str, value: Any) -> None:
        """Log one param; logging it again with another value is a ConflictError."""
        self.log_params({key: value})

    def log_params(self, values: dict[str, Any]) -> None:
        """Log several params; all are checked before any is logged."""
        self._check_open()
        checked = {
            validation.check_key(key, "param"): validation.param_value(key, value)
            for key, value in values.items()
        }
        with self._lock:
            for key, text in checked.items():
                old = self._params.get(key)
                if old is not None and old != text:
                    raise ConflictError(
                        f"The param {key!r} of run {self.id} is already {old!r}; "
                        f"it cannot become {text!r}.",
                        hint="Params are fixed once logged: use another key, "
                        "or a metric for values that change.",
                    )
            new = {k: v for k, v in checked.items() if k not in self._params}
            self.tracker.writer.submit_many([LogParam(self.id, k, v) for k, v in new.items()])
            self._params.update(new)

    def log_metric(
        self, key: str, value: float, step: int | None = None, timestamp: float | None = None
    ) -> None:
        """Log one value of a metric; ``step`` defaults to one past the key's last step."""
        self._check_open()
        validation.check_key(key, "metric")
        number = validation.metric_value(key, value)
        ms = validation.timestamp_ms(key, time.time() if timestamp is None else timestamp)
        if step is not None:
            step = validation.check_step(key, step)
        with self._lock:
            if step is None:
                step = self._steps.get(key, -1) + 1
            if step > self._steps.get(key, -1):
                self._steps[key] = step
        self.tracker.writer.submit(LogMetric(self.id, key, number, step, ms))

    def log_metrics(
        self, values: dict[str, float], step: int | None = None, timestamp: float | None = None
    ) -> None:
        """Log one value of each of several metrics, at the same step and time."""
        ts = time.time() if timestamp is None else timestamp
        for key, value in values.items():
            self.log_metric(key, value, step=step, timestamp=ts)

    def set_tag(self, key: str, value: Any) -> None:
        """Set a tag (tags, unlike params, may change)."""
        self.set_tags({key: value})

    def set_tags(self, values: dict[str, Any]) -> None:
        """Set several tags."""
        self._check_open()
        ops = [
            SetTag(self.id, validation.check_key(k, "tag"), validation.tag_value(k, v))
            for k, v in values.items()
        ]
        self.tracker.writer.submit_many(ops)

    # -- artifacts ---------------------------------------------------------------------------

    def log_artifact(
        self, path: str | os.PathLike[str], name: str | None = None
    ) -> list[ArtifactLink]:
        """Store a file, or every file under a directory, as artifacts of this run."""
        if not isinstance(path, str | os.PathLike):
            raise InvalidArgumentError(
                f"log_artifact stores a file or a folder, by its path; got a "
                f"{type(path).__name__}.",
                hint="For content in memory: log_text(text, name), log_dict(data, name), "
                "log_table(df, name), or write it to a file first.",
            )
        source = Path(path)
        base = validate_artifact_path(name or source.name)
        if source.is_file():
            return [self._store(source, base)]
        if source.is_dir():
            files = sorted(p for p in source.rglob("*") if p.is_file())
            return [self._store(f, f"{base}/{f.relative_to(source).as_posix()}") for f in files]
        raise NotFoundError(f"Cannot log {source}: no such file or directory.")

    def log_text(self, text: str, name: str) -> ArtifactLink:
        """Store ``text`` (UTF-8) as the artifact ``name``."""
        return self._store(text.encode(), name)

    def log_dict(self, data: Any, name: str) -> ArtifactLink:
        """Store ``data`` as JSON, or YAML when ``name`` ends in .yaml or .yml."""
        if name.endswith((".yaml", ".yml")):
            try:
                import yaml
            except ImportError as e:
                raise InvalidArgumentError(
                    "Logging YAML needs PyYAML.", hint="pip install pyyaml, or use a .json name."
                ) from e
            body = yaml.safe_dump(data, sort_keys=False).encode()
        else:
            body = json.dumps(data, indent=2, default=str).encode()
        return self._store(body, name)

    def log_table(self, table: Any, name: str) -> ArtifactLink:
        """Store a pandas DataFrame or Arrow table as Parquet."""
        if not name.endswith(".parquet"):
            raise InvalidArgumentError(
                f"log_table writes Parquet; name the artifact '*.parquet' (got {name!r})."
            )
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not isinstance(table, pa.Table):
            if not hasattr(table, "to_parquet"):
                raise InvalidArgumentError(
                    f"log_table takes a pandas DataFrame or a pyarrow Table; "
                    f"got {type(table).__name__}."
                )
            table = pa.Table.from_pandas(table)
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        return self._store(buffer.getvalue(), name)

    def log_figure(self, figure: Any, name: str) -> ArtifactLink:
        """Store a matplotlib figure as an image (format from the extension: png, svg, pdf)."""
        fmt = name.rsplit(".", 1)[-1].lower() if "." in name else ""
        if fmt not in ("png", "svg", "pdf", "jpg", "jpeg"):
            raise InvalidArgumentError(
                f"log_figure needs a name ending in .png, .svg, .pdf or .jpg; got {name!r}."
            )
        buffer = io.BytesIO()
        figure.savefig(buffer, format=fmt)
        return self._store(buffer.getvalue(), name)

    def _store(self, data: bytes | Path, name: str) -> ArtifactLink:
        self._check_open()
        return self.tracker.ws.log_artifact(data, self.ref, name, media_type=guess_media_type(name))

    # -- ending ------------------------------------------------------------------------------

    def end(self, status: RunStatus | str = RunStatus.FINISHED) -> None:
        """End the run with ``status`` and hand what it logged to the writer at once.

        The writer stores it straight away, together with whatever else is queued, so ending
        a run does not wait for a transaction of its own; :func:`conveyor.flush`,
        ``get_run``, ``search_runs`` and the end of the process wait until it is stored.
        A failure already known from earlier logging is raised here.
        """
        if self.ended:
            return
        try:
            final = RunStatus(status)
        except ValueError:
            raise InvalidArgumentError(
                f"A run ends FINISHED, FAILED or KILLED; got {status!r}."
            ) from None
        if final is RunStatus.RUNNING:
            raise InvalidArgumentError("A run cannot end RUNNING; use FINISHED, FAILED or KILLED.")
        self.ended = True
        self.status = final
        _active.set(tuple(r for r in _active.get() if r is not self))
        leave_activity(self.ref)
        with self.tracker._open_lock:
            self.tracker._open.pop(self.id, None)
        self.tracker.writer.submit(EndRun(self.id, final, utcnow()))
        if _in_child_process(self.tracker):
            # A worker process may be terminated (a multiprocessing pool's exit does),
            # skipping every exit hook: store the run before carrying on.
            self.tracker.writer.flush()

    def detach(self) -> None:
        """Stop being the active run here without ending it, and store what it logged."""
        _active.set(tuple(r for r in _active.get() if r is not self))
        leave_activity(self.ref)
        with self.tracker._open_lock:
            self.tracker._open.pop(self.id, None)
        self.ended = True
        self.tracker.writer.flush()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.end(RunStatus.FINISHED)
            self.tracker.writer.raise_pending()  # a failure met while this run logged
            return
        if issubclass(exc_type, KeyboardInterrupt | Terminated):
            self.end(RunStatus.KILLED)
            return
        if issubclass(exc_type, SystemExit) and getattr(exc, "code", None) in (None, 0):
            self.end(RunStatus.FINISHED)  # sys.exit() and sys.exit(0) are a success
            return
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        try:
            if self.tracker.remote:
                try:
                    self._store(text.encode(), "traceback.txt")
                except ConveyorError as e:  # the user's own error matters more than this
                    log.warning("conveyor: could not store the traceback of %s: %s", self.id, e)
                return
            put = self.tracker.ws.artifacts.put(text.encode())
            self.tracker.writer.submit(
                LinkArtifact(self.ref, "traceback.txt", put.digest, put.size, "text/plain")
            )
        finally:
            self.end(RunStatus.FAILED)


# -- process exit and fork -------------------------------------------------------------------

_trackers: weakref.WeakSet[Tracker] = weakref.WeakSet()
_hooks_installed = False
_hooks_lock = threading.Lock()


def _register(owner: Tracker) -> None:
    """Remember ``owner`` so its open runs end and its queue is stored when the process ends."""
    global _hooks_installed
    with _hooks_lock:
        _trackers.add(owner)
        if not _hooks_installed:
            atexit.register(_at_exit)
            os.register_at_fork(after_in_child=_after_fork)
            _on_sigterm()
            _hooks_installed = True


#: How long a forked or multiprocessing worker retries an unreachable store on its way out.
CHILD_EXIT_RETRY_S = 5.0


class Terminated(SystemExit):
    """The process was sent SIGTERM (``kill``, ``timeout``, a container stopping): its
    open runs end KILLED, what they logged is stored, and it exits with status 143."""


_terminated = False


def _interactive() -> bool:
    return hasattr(sys, "ps1") or bool(sys.flags.interactive)


def _on_sigterm() -> None:
    """Make SIGTERM leave like ``sys.exit(143)``, so runs end and their queue is stored
    (the default kills the process on the spot). Only where SIGTERM has its default
    action, from the main thread: a handler of the program's own is left alone."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _raise_terminated)
    except (ValueError, OSError):  # no signals here (an embedded interpreter)
        return


def _raise_terminated(signum: int, _frame: Any) -> None:
    global _terminated
    import signal

    _terminated = True
    leaving = sys.modules.get("multiprocessing.util")
    if leaving is not None and getattr(leaving, "_exiting", False):
        # A multiprocessing worker already on its way out (a pool ends its workers with
        # SIGTERM as they leave): its exit finalizer stores the queue; raising here would
        # skip that finalizer.
        signal.signal(signum, signal.SIG_IGN)
        return
    # Leaving stores what is queued: a second SIGTERM (a pool terminating its workers sends
    # more than one) must not cut that short. SIGKILL, which orchestrators send after a
    # grace period, still stops it.
    signal.signal(signum, signal.SIG_IGN)
    raise Terminated(128 + signum)


def _at_exit() -> None:
    _hold_sigterm()
    for owner in list(_trackers):
        owner._finish_at_exit()


def _hold_sigterm() -> None:
    """While the queue is stored on the way out, a SIGTERM (what a multiprocessing pool
    sends its workers as they are already leaving) must not cut that short."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is _raise_terminated:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
    except (ValueError, OSError):
        return


def _in_child_process(owner: Tracker) -> bool:
    """Whether this process was forked from the tracker's, or is a multiprocessing worker."""
    if os.getpid() != owner.origin_pid:
        return True
    if "multiprocessing" in sys.modules:
        import multiprocessing

        return multiprocessing.parent_process() is not None
    return False


class _ForkMarker:
    """A weak-referenceable key for multiprocessing's after-fork registry."""


_FORK_MARKER = _ForkMarker()


def _after_fork() -> None:
    for owner in list(_trackers):
        owner._after_fork_in_child()
    if "multiprocessing" in sys.modules:
        # multiprocessing's forked children leave through os._exit, skipping atexit, but run
        # its finalizers first. It clears them when the child starts, then runs its
        # after-fork callbacks: install the finalizer from one of those.
        from multiprocessing import util

        util.register_after_fork(_FORK_MARKER, _install_multiprocessing_finalizer)


def _install_multiprocessing_finalizer(_marker: object) -> None:
    from multiprocessing import util

    util.Finalize(None, _at_exit, exitpriority=100)
