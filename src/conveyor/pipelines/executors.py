"""Where steps run: this process (``inline``), a pool of worker processes (``local``), Ray.

An executor takes pickled tasks (``submit``), reports finished ones (``wait``) and can stop
one that overran its timeout (``cancel``). The engine owns everything else: what to run,
retries, caching, the records.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from conveyor.core.errors import BackendUnavailableError, InvalidArgumentError
from conveyor.pipelines.worker import StepResult, StepTask

__all__ = ["Executor", "connect_ray", "make_executor"]


@dataclass(slots=True)
class Handle:
    id: int
    task: StepTask
    resources: dict[str, float]
    #: When a worker took the task (monotonic clock): its timeout counts from here. The inline
    #: executor leaves it unset and times steps out itself.
    started_at: float | None = None


class Executor:
    name: str = "?"

    def submit(self, handle: Handle) -> None:
        raise NotImplementedError

    def wait(self, timeout: float | None) -> list[tuple[Handle, StepResult]]:
        """Return the tasks that finished, waiting up to ``timeout`` s for the first one."""
        raise NotImplementedError

    def cancel(self, handle: Handle) -> None:
        """Stop a running task (its result never arrives)."""
        raise NotImplementedError

    def shutdown(self) -> None:
        pass


class InlineExecutor(Executor):
    """Runs each step in this process, one at a time, when the engine waits."""

    name = "inline"

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.pending: list[Handle] = []

    def submit(self, handle: Handle) -> None:
        self.pending.append(handle)

    def wait(self, timeout: float | None) -> list[tuple[Handle, StepResult]]:
        from conveyor.pipelines import worker

        if not self.pending:
            if timeout:
                time.sleep(min(timeout, 0.05))
            return []
        handle = self.pending.pop(0)
        worker._inline_workspace.append(self.ws)
        try:
            return [(handle, _with_alarm(handle.task))]
        finally:
            worker._inline_workspace.pop()

    def cancel(self, handle: Handle) -> None:
        self.pending = [h for h in self.pending if h is not handle]


def _with_alarm(task: StepTask) -> StepResult:
    """Run ``task`` here, stopping it with SIGALRM after its timeout (main thread only).

    The processes the step started (and theirs) are killed first, so that a step waiting
    for one (``Popen.wait``) can be interrupted and none is left running.
    """
    from conveyor.pipelines import child_processes
    from conveyor.pipelines.worker import StepTimedOut, execute

    timeout = task.step.options.timeout
    import threading

    if not timeout or threading.current_thread() is not threading.main_thread():
        return execute(task)

    before = child_processes.snapshot()
    left: list[int] = []

    def expire(_signum: int, _frame: Any) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        left.extend(child_processes.stop_started_since(before))
        raise StepTimedOut

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        result = execute(task)
    except StepTimedOut:
        from conveyor.pipelines.engine import human_seconds

        error = f"timed out after {human_seconds(timeout)}"
        if before is None:
            error += (
                "; the processes it started were not stopped (the inline executor finds "
                "them in /proc, which this system lacks: use the local executor)"
            )
        elif left:
            error += f"; processes it started could not be stopped: {left}"
        result = StepResult(ok=False, error=error)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return result


class LocalExecutor(Executor):
    """A pool of forked worker processes, started as work arrives and reused across steps.

    A worker that overruns its timeout is killed and replaced. Workers ignore Ctrl-C: the
    coordinator stops them.
    """

    name = "local"

    def __init__(self, workers: int | None = None) -> None:
        self.size = max(1, workers or _cpu_count())
        self.idle: list[_Worker] = []
        self.busy: dict[int, tuple[_Worker, Handle]] = {}
        self.queue: list[Handle] = []
        self.all: list[_Worker] = []

    def submit(self, handle: Handle) -> None:
        self.queue.append(handle)
        self._dispatch()

    def _dispatch(self) -> None:
        import cloudpickle

        while self.queue and (self.idle or len(self.all) < self.size):
            # A Ctrl-C between the fork and the busy mark would leave a worker running a step
            # that shutdown does not know to kill: it is held until the step is marked.
            with _signals_deferred():
                self._send_next(cloudpickle)

    def _send_next(self, cloudpickle: Any) -> None:
        if self.idle:
            w = self.idle.pop()
        else:
            w = _Worker.start()
            self.all.append(w)
        handle = self.queue.pop(0)
        try:
            w.conn.send_bytes(_forked_task_bytes(handle.task, cloudpickle))
        except Exception as e:
            self._retire(w)
            raise InvalidArgumentError(
                f"Step {handle.task.node!r} cannot be sent to a worker process: {e}."
            ) from e
        handle.started_at = time.monotonic()
        self.busy[handle.id] = (w, handle)

    def wait(self, timeout: float | None) -> list[tuple[Handle, StepResult]]:
        from multiprocessing.connection import wait

        import cloudpickle

        if not self.busy:
            if timeout:
                time.sleep(min(timeout, 0.05))
            return []
        by_conn = {w.conn: (w, h) for w, h in self.busy.values()}
        done: list[tuple[Handle, StepResult]] = []
        for conn in wait(list(by_conn), timeout):
            w, handle = by_conn[conn]
            del self.busy[handle.id]
            try:
                result = cloudpickle.loads(conn.recv_bytes())  # type: ignore[union-attr]
                self.idle.append(w)
            except (EOFError, OSError):
                code = w.process.exitcode
                self._retire(w)
                result = StepResult(
                    ok=False,
                    error=f"its worker process died (exit code {code}); it may have run out "
                    "of memory or crashed in native code",
                )
            done.append((handle, result))
        self._dispatch()
        return done

    def cancel(self, handle: Handle) -> None:
        entry = self.busy.pop(handle.id, None)
        if entry is not None:
            self._retire(entry[0], kill=True)
        self.queue = [h for h in self.queue if h is not handle]
        self._dispatch()

    def _retire(self, w: _Worker, *, kill: bool = False) -> None:
        if w in self.all:
            self.all.remove(w)
        if w in self.idle:
            self.idle.remove(w)
        w.stop(kill=kill)

    def shutdown(self) -> None:
        for w in list(self.all):
            self._retire(w, kill=bool(self.busy))
        self.busy.clear()
        self.queue.clear()


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block ends, then act on them as before (SIGTERM
    first when both came). Main thread only: elsewhere Python never runs signal handlers."""
    import threading

    signals = (signal.SIGTERM, signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or any(
        signal.getsignal(s) is None
        for s in signals  # set outside Python: cannot be restored
    ):
        yield
        return
    caught: dict[int, Any] = {}
    previous: dict[int, Any] = {
        s: signal.signal(s, lambda signum, frame: caught.setdefault(signum, frame)) for s in signals
    }
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for signum in signals:
            if signum in caught:
                handler = previous[signum]
                if callable(handler):
                    handler(signum, caught[signum])
                elif handler == signal.SIG_DFL:
                    signal.raise_signal(signum)
                break


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def _forked_task_bytes(task: Any, cloudpickle: Any) -> bytes:
    """``task`` pickled for a worker forked from this process.

    cloudpickle copies what a script (``__main__``) defines by value, so a class the script
    defines would arrive as a second class in the worker, one that a materializer the script
    registered for it does not recognise (its output then went to pickle). A forked worker
    holds the same ``__main__``, so the script's classes go by reference here; its
    functions still go by value (a step is a Step object under its name, not the function).
    """
    import io

    buffer = io.BytesIO()
    _main_by_reference(cloudpickle)(buffer, protocol=cloudpickle.DEFAULT_PROTOCOL).dump(task)
    return buffer.getvalue()


_MAIN_BY_REFERENCE: list[Any] = []


def _main_by_reference(cloudpickle: Any) -> Any:
    """A cloudpickle Pickler that names ``__main__``'s own classes instead of copying them."""
    if not _MAIN_BY_REFERENCE:

        class MainByReference(cloudpickle.Pickler):
            def reducer_override(self, obj: Any) -> Any:
                if isinstance(obj, type) and obj.__module__ == "__main__":
                    main = sys.modules.get("__main__")
                    if main is not None and getattr(main, obj.__qualname__, None) is obj:
                        return NotImplemented  # pickled as __main__.Name, found in the fork
                return super().reducer_override(obj)

        _MAIN_BY_REFERENCE.append(MainByReference)
    return _MAIN_BY_REFERENCE[0]


class _Worker:
    def __init__(self, process: Any, conn: Any) -> None:
        self.process = process
        self.conn = conn

    @classmethod
    def start(cls) -> _Worker:
        import multiprocessing

        ctx = multiprocessing.get_context("fork")
        parent, child = ctx.Pipe()
        process = ctx.Process(target=_worker_loop, args=(child, os.getpid()), daemon=True)
        process.start()
        child.close()
        # The worker makes itself a session (and process group) of its own as it starts: a
        # kill before that finds no group and falls back to killing the worker alone, which
        # has not run a step yet. (Setting its group from here as well would make it a group
        # leader, which cannot start a session.)
        return cls(process, parent)

    def stop(self, *, kill: bool = False) -> None:
        try:
            if not kill:
                self.conn.send_bytes(b"")
        except OSError:
            kill = True
        self.conn.close()
        if kill:
            self._kill()
        self.process.join(timeout=5)
        if self.process.is_alive():
            self._kill()
            self.process.join(timeout=5)

    def _kill(self) -> None:
        """Kill the worker and what its step started (a training script it ran, say): they
        share the worker's process group, unless they left it."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except OSError:  # the group is gone, or the worker had not made it yet
            self.process.kill()


def _worker_loop(conn: Any, parent: int) -> None:
    from conveyor.pipelines.worker import run_in_worker

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the coordinator handles Ctrl-C
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _detach_from_terminal()
    _die_with_parent(parent)
    while True:
        try:
            payload = conn.recv_bytes()
        except (EOFError, OSError):
            break
        if not payload:
            break
        conn.send_bytes(run_in_worker(payload))
    # Store what the tracker still holds (multiprocessing exits with os._exit).
    from conveyor.tracking import runs

    runs._at_exit()


def _detach_from_terminal() -> None:
    """Make this worker a session of its own, with no controlling terminal and stdin from
    /dev/null, for it and the processes its steps start.

    Its own process group (a new session is one) lets a kill (a timeout, a cancel) reach the
    processes the step starts as well, and keeps a Ctrl-C at the terminal to the coordinator.
    Without a terminal, a step that asks for input (``input()``, a tool it runs that prompts,
    ``getpass``) gets end-of-file or an error at once: in a background process group of the
    coordinator's session, a read from the terminal would stop the worker (SIGTTIN) and the
    run would never end.
    """
    try:
        os.setsid()
    except OSError:  # already a group leader: a group of its own at least
        with contextlib.suppress(OSError):
            os.setpgid(0, 0)
    try:
        null = os.open(os.devnull, os.O_RDONLY)
    except OSError:
        return
    try:
        os.dup2(null, 0)
    except OSError:
        pass
    finally:
        if null != 0:
            os.close(null)


def _die_with_parent(parent: int) -> None:
    """On Linux, have the kernel kill this worker when its coordinator dies, even by SIGKILL
    (otherwise a worker in the middle of a long step outlives it, orphaned)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the coordinator died before the line above: no one to serve
        os._exit(1)


def connect_ray(address: str | None) -> Any:
    """Return the ``ray`` module, connected to ``address`` (or a local Ray started here).

    A process already connected (``ray.init`` called by the user) keeps its connection.
    """
    try:
        import ray
    except ImportError as e:
        raise InvalidArgumentError(
            "The ray executor needs Ray, which is not installed.",
            hint="pip install 'conveyor-mlops[ray]'",
        ) from e
    if not ray.is_initialized():
        try:
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(
                    _node_ip_address="127.0.0.1",
                    include_dashboard=False,
                    log_to_driver=False,
                    configure_logging=False,
                )
        except Exception as e:
            where = address or "a local Ray"
            raise BackendUnavailableError(
                f"Cannot reach the Ray cluster at {where}: {str(e).splitlines()[0]}",
                hint="Check CONVEYOR_RAY_ADDRESS or the ray:// address, "
                "and that the cluster runs the same Python and Ray versions.",
            ) from e
    return ray


class RayExecutor(Executor):
    """Each step a Ray task with the step's ``resources``."""

    name = "ray"

    def __init__(self, address: str | None) -> None:
        self.ray = connect_ray(address)
        self.refs: dict[Any, Handle] = {}
        self.address = address
        self._remote = self.ray.remote(max_retries=0)(_ray_entry)

    def submit(self, handle: Handle) -> None:
        import cloudpickle

        options: dict[str, Any] = {"num_cpus": handle.resources.get("cpus", 1)}
        if "gpus" in handle.resources:
            options["num_gpus"] = handle.resources["gpus"]
        if "memory" in handle.resources:
            options["memory"] = handle.resources["memory"]
        _pickle_user_modules_by_value(handle.task.step.fn)
        ref = self._remote.options(**options).remote(cloudpickle.dumps(handle.task))
        handle.started_at = time.monotonic()  # Ray may queue it: the timeout covers the wait
        self.refs[ref] = handle

    def wait(self, timeout: float | None) -> list[tuple[Handle, StepResult]]:
        import cloudpickle

        if not self.refs:
            if timeout:
                time.sleep(min(timeout, 0.05))
            return []
        ready, _ = self.ray.wait(list(self.refs), num_returns=1, timeout=timeout)
        done = []
        for ref in ready:
            handle = self.refs.pop(ref)
            try:
                result = cloudpickle.loads(self.ray.get(ref))
            except Exception as e:  # noqa: BLE001 - a lost worker, a cancelled task
                result = StepResult(ok=False, error=f"its Ray task failed: {e}")
            done.append((handle, result))
        return done

    def cancel(self, handle: Handle) -> None:
        for ref, h in list(self.refs.items()):
            if h is handle:
                self.ray.cancel(ref, force=True)
                del self.refs[ref]

    def shutdown(self) -> None:
        for ref in list(self.refs):
            self.ray.cancel(ref, force=True)
        self.refs.clear()


def _pickle_user_modules_by_value(fn: Any) -> None:
    """Send the module that defines ``fn`` by value when it is the user's own code (not an
    installed package), so its helpers and classes reach Ray workers that lack the source."""
    import sys
    import sysconfig

    import cloudpickle

    module = sys.modules.get(getattr(fn, "__module__", "") or "")
    path = getattr(module, "__file__", None)
    if module is None or path is None or module.__name__ == "__main__":
        return
    installed = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
    if any(os.path.abspath(path).startswith(os.path.abspath(p) + os.sep) for p in installed):
        return
    if module.__name__.split(".")[0] == "conveyor":
        return
    try:
        cloudpickle.register_pickle_by_value(module)
    except ValueError:
        return  # already registered


def _ray_entry(payload: bytes) -> bytes:
    from conveyor.pipelines.worker import run_in_worker

    return run_in_worker(payload)


def check_executor(spec: str) -> None:
    """Refuse an executor spec that names none (before anything is said to run on it)."""
    if spec in ("inline", "local", "ray") or spec.startswith("ray://"):
        return
    if spec.startswith("local:"):
        n = spec.partition(":")[2]
        if not n.isdigit() or int(n) < 1:
            raise InvalidArgumentError(
                f"local:N takes a number of workers, at least 1; got {spec!r}."
            )
        return
    raise InvalidArgumentError(
        f"Unknown executor {spec!r}.",
        hint="Use 'inline' (this process), 'local' (worker processes) or 'ray' / 'ray://host:port'.",
    )


def make_executor(spec: str, ws: Any) -> Executor:
    """Return the executor ``spec`` names: inline, local, local:N, ray, ray://host:port."""
    check_executor(spec)
    if spec == "inline":
        return InlineExecutor(ws)
    if spec == "local" or spec.startswith("local:"):
        _, _, n = spec.partition(":")
        return LocalExecutor(int(n) if n else None)
    if spec == "ray" or spec.startswith("ray://"):
        address = spec if spec.startswith("ray://") else os.environ.get("CONVEYOR_RAY_ADDRESS")
        return RayExecutor(address or None)
    raise InvalidArgumentError(
        f"Unknown executor {spec!r}.",
        hint="Use 'inline' (this process), 'local' (worker processes) or 'ray' / 'ray://host:port'.",
    )
