"""Pipeline runs a team server starts for its callers, on its own host and stores.

A caller names an installed pipeline (``package.module:name``) under a package the server's
administrator allows (``conveyor server --pipelines``), never a file: the server imports it
and runs its code. The run goes in a process of its own (``python -m
conveyor.pipelines.launch``), so a server restart does not stop it and its workers never
fork from the server; it acts as the caller (their role is checked in every service the
pipeline calls, in every worker: see ``ACTING_ENV``), and the caller follows it through the
pipeline-run routes. It is cancelled once the caller may no longer write: their token revoked
or expired, their user disabled, their role lowered (checked every few seconds).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from conveyor.core.errors import InvalidArgumentError

__all__ = [
    "check_executor",
    "check_installed",
    "check_reference",
    "describe",
    "main",
    "settle",
    "start",
]

#: An installed module's object; no file path and no private or ``__main__`` module.
_INSTALLED = re.compile(r"[A-Za-z]\w*(\.[A-Za-z]\w*)*:[A-Za-z_]\w*")
#: Executors a server's caller may choose: never an address of their own (a Ray cluster
#: there would get the run's tasks and send back what the coordinator unpickles).
_EXECUTOR = re.compile(r"inline|local|local:([1-9]|[12][0-9]|3[0-2])|ray")
#: A run started for a caller: its steps run on this host, in processes that act as them.
_LAUNCH_EXECUTOR = re.compile(r"inline|local|local:([1-9]|1[0-6])")


def check_reference(reference: str, *, what: str = "pipeline") -> str:
    """Refuse ``reference`` unless it is ``package.module:name``; return the module."""
    module = reference.partition(":")[0] if isinstance(reference, str) else ""
    # (a module path ending in .py would be imported as a file by the loader)
    if not _INSTALLED.fullmatch(str(reference)) or module.endswith(".py"):
        raise InvalidArgumentError(
            f"{what} is {reference!r}; through a server it names an installed module's "
            "pipeline: package.module:name (not a file, no private module).",
        )
    return module


def check_installed(reference: str, allowed: Sequence[str], *, what: str = "pipeline") -> None:
    """Refuse ``reference`` unless it is ``package.module:name`` under an allowed package."""
    module = check_reference(reference, what=what)
    if not any(module == p or module.startswith(p + ".") for p in allowed):
        raise InvalidArgumentError(
            f"{what} {reference!r} is not in a package this server runs pipelines from "
            f"(allowed: {', '.join(allowed) or 'none'}).",
            hint="The server's administrator allows packages with conveyor server "
            "--pipelines PKG (the package must be installed on the server's host).",
        )


def check_executor(spec: str, *, what: str = "executor", launch: bool = False) -> None:
    """Refuse an executor a server's caller may not choose: never an address of theirs;
    for a run the server starts, only its own host's processes (``launch``)."""
    if launch:
        if not isinstance(spec, str) or not _LAUNCH_EXECUTOR.fullmatch(spec):
            raise InvalidArgumentError(
                f"{what} is {spec!r}; a run the server starts uses inline, local or local:N "
                "(N <= 16): its steps act as you, in processes on the server's host."
            )
        return
    if not isinstance(spec, str) or not _EXECUTOR.fullmatch(spec):
        raise InvalidArgumentError(
            f"{what} is {spec!r}; through a server: inline, local, local:N (N <= 32) or ray "
            "(the cluster the server's host is configured with)."
        )


def start(
    root: Path,
    *,
    project: str,
    actor: str,
    acting_as: str | None,
    job: dict[str, Any],
    on_exit: Callable[[int], None] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``job`` in a process of its own under ``root`` (the server's project folder),
    as ``actor`` (``acting_as``: their principal, see ``ACTING_ENV``): ``run_id``,
    ``reference``, ``executor`` and either ``params`` and ``cache`` (a new run) or
    ``resume`` (the id of the run to resume); with ``root`` and ``settings`` (a project's
    settings by key), it opens that workspace rather than the one its folder and
    environment give. It runs in ``cwd`` (default: ``root``), where a module reference is
    imported from. Its output goes to ``.conveyor/launches/RUN_ID.log`` under ``root``;
    ``on_exit(status)`` is called, in a thread, once the process ends."""
    from conveyor.core.config import STATE_DIR
    from conveyor.store.principal import ACTING_ENV

    logs = root / STATE_DIR / "launches"
    logs.mkdir(parents=True, exist_ok=True)
    _prune(logs)
    env = {**os.environ, "CONVEYOR_PROJECT": project, "CONVEYOR_ACTOR": actor}
    env.pop("CONVEYOR_TOKEN", None)
    env.pop(ACTING_ENV, None)
    if acting_as is not None:
        env[ACTING_ENV] = acting_as
    run_id = job["run_id"]
    # The job goes in on stdin: params of any size (an argument is at most 128 KiB).
    data = json.dumps(job).encode()
    with open(logs / f"{run_id}.log", "wb") as log:
        proc = subprocess.Popen(  # our own module; the reference was checked
            [sys.executable, "-m", "conveyor.pipelines.launch"],
            cwd=cwd or root,
            env=env,
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C to the server is not the run's
        )
    stdin = proc.stdin
    assert stdin is not None
    # What the pipe takes is written before this returns, so a caller that dies right
    # after (a scheduler stopped) still leaves the run its whole job; only a job larger
    # than the pipe can hold leaves a rest to the thread.
    rest = _feed(stdin.fileno(), data)
    if not rest:
        _close_quietly(stdin)

    def reap() -> None:  # in a thread: a large job must not hold up the caller
        if rest:
            with contextlib.suppress(OSError):  # it died at once: its log says why
                stdin.write(rest)
            _close_quietly(stdin)
        status = proc.wait()
        if on_exit is not None:
            on_exit(status)

    threading.Thread(target=reap, name=f"reap-{run_id}", daemon=True).start()
    return proc


#: The most a launch asks of the pipe to its process's stdin (Linux's default ceiling for
#: an unprivileged process, /proc/sys/fs/pipe-max-size).
PIPE_BYTES = 1 << 20


def _feed(fd: int, data: bytes) -> bytes:
    """Write what the pipe ``fd`` takes of ``data`` without waiting; return the rest.

    The pipe is first grown towards the size of ``data`` (at most :data:`PIPE_BYTES`), as
    far as the system allows: an unprivileged user over their pipe allowance
    (/proc/sys/fs/pipe-user-pages-soft) may get no more than a few pages, and then a
    larger job is only partly written here. Where a pipe cannot be written without
    waiting (not POSIX), nothing is written here.
    """
    if os.name != "posix":  # pragma: no cover - Windows: the thread writes it all
        return data
    _grow(fd, min(len(data), PIPE_BYTES))
    os.set_blocking(fd, False)
    written = 0
    try:
        while written < len(data):
            written += os.write(fd, data[written : written + PIPE_BYTES])
    except BlockingIOError:  # full: the process reads the rest once it runs
        pass
    except OSError:  # it died at once: its log says why
        return b""
    finally:
        os.set_blocking(fd, True)
    return data[written:]


def _grow(fd: int, size: int) -> None:
    """Ask for the pipe ``fd`` to hold ``size`` bytes, or the most it may below that (each
    refusal halves the request); where pipes cannot grow (not Linux), leave it."""
    import fcntl

    get, grow = getattr(fcntl, "F_GETPIPE_SZ", None), getattr(fcntl, "F_SETPIPE_SZ", None)
    if get is None or grow is None:
        return
    try:
        have = fcntl.fcntl(fd, get)
    except OSError:
        return
    while size > have:
        try:
            fcntl.fcntl(fd, grow, size)
            return
        except OSError:  # above this user's ceiling: try half
            size //= 2


def _close_quietly(stream: Any) -> None:
    with contextlib.suppress(OSError):
        stream.close()


#: How long a launch's log is kept (the run's own records, step logs included, stay).
LOG_DAYS = 30


def _prune(logs: Path) -> None:
    """Remove launch logs older than :data:`LOG_DAYS`."""
    import time

    cutoff = time.time() - LOG_DAYS * 86400
    for log in logs.glob("*.log"):
        try:
            if log.stat().st_mtime < cutoff:
                log.unlink()
        except OSError:  # another worker removed it first
            continue


def settle(store: Any, run_id: str, pid: int, status: int) -> None:
    """After the launch process ``pid`` ended with ``status``: a run it recorded and left
    unfinished (killed, out of memory) is marked KILLED, not left RUNNING forever. Only its
    own run: not one another process recorded under the id."""
    import socket

    from conveyor.core.errors import NotFoundError

    try:
        run = store.get_run(run_id)
    except NotFoundError:
        return
    ours = f"{socket.gethostname()}:{pid}"[:200]
    if run.ended_at is None and run.coordinator == ours:
        store.mark_abandoned(run, f"its process ended ({status})")


def last_words(root: Path, run_id: str) -> str:
    """The last line a launch process wrote (why it stopped before its run began)."""
    from conveyor.core.config import STATE_DIR

    try:
        text = (root / STATE_DIR / "launches" / f"{run_id}.log").read_text(errors="replace")
    except OSError:
        return ""
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1][:500] if lines else ""


#: How long describing a pipeline may take (importing its package).
DESCRIBE_TIMEOUT_S = 60.0


def describe(
    root: Path, reference: str, params: dict[str, Any], *, acting_as: str | None
) -> dict[str, Any]:
    """Import the pipeline at ``reference`` in a process of its own (never in the server's)
    acting as ``acting_as`` (see :func:`start`), and bind ``params``: its ``name`` and its
    bound ``params``. Raise InvalidArgumentError with the reason when it cannot be imported
    or the params do not fit."""
    from conveyor.store.principal import ACTING_ENV

    env = {k: v for k, v in os.environ.items() if k not in ("CONVEYOR_TOKEN", ACTING_ENV)}
    if acting_as is not None:
        env[ACTING_ENV] = acting_as
    try:
        done = subprocess.run(  # our own module; the reference was checked
            [sys.executable, "-m", "conveyor.pipelines.launch"],
            cwd=root,
            env=env,
            input=json.dumps({"describe": reference, "params": params}).encode(),
            capture_output=True,
            timeout=DESCRIBE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise InvalidArgumentError(
            f"Importing pipeline {reference!r} took over {DESCRIBE_TIMEOUT_S:.0f} s."
        ) from None
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines() or ["no reason given"]
        reason = lines[-1].removeprefix("error: ")[:500]
        raise InvalidArgumentError(f"Pipeline {reference!r} cannot be used: {reason}")
    described: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return described


#: How often a started run checks that the one it acts as may still write.
WATCH_S = 5.0


def _watch(run_id: str, stop: threading.Event) -> None:
    """Cancel run ``run_id`` once the principal it acts as may no longer write: their token
    revoked or expired, their user disabled, their role lowered (checked every
    :data:`WATCH_S` seconds, in a thread of the launch process)."""
    from conveyor.core.errors import ConflictError
    from conveyor.pipelines.service import cancel
    from conveyor.store.identity import IdentityStore
    from conveyor.store.principal import current_principal
    from conveyor.store.workspace import current_workspace

    principal = current_principal()
    if principal is None:
        return
    ws = current_workspace()
    identity = IdentityStore(ws.metadata)
    while not stop.wait(WATCH_S):
        try:
            reason = identity.lapsed(principal, ws.project.id)
            if reason is None:
                continue
            sys.stderr.write(f"conveyor: cancelling run {run_id}: {reason}.\n")
            cancel(run_id, workspace=ws)
            return
        except ConflictError:  # it has ended already
            return
        except Exception as e:  # noqa: BLE001 - not recorded yet, the store away: try again
            sys.stderr.write(f"conveyor: checking who run {run_id} acts as: {e}\n")


def main() -> int:
    job = json.loads(sys.stdin.buffer.read())
    # Let go of the pipe (it may have been grown to hold the job, and counts against its
    # user's allowance while open); steps that read stdin read nothing, as before.
    with open(os.devnull, "rb") as nothing:
        os.dup2(nothing.fileno(), 0)
    from conveyor.core.errors import ConveyorError
    from conveyor.pipelines.engine import PipelineFailed, run_pipeline
    from conveyor.pipelines.loader import load_pipeline

    stop = threading.Event()
    try:
        if job.get("settings") is not None:  # the stores of the scheduler that started it
            from conveyor.store.workspace import Workspace, use_workspace

            use_workspace(Workspace.from_settings(job["root"], **job["settings"]), default=True)
        if "describe" in job:
            described = load_pipeline(job["describe"])
            bound = described.bind(job["params"])
            sys.stdout.write(json.dumps({"name": described.name, "params": bound}) + "\n")
            return 0
        pipeline = load_pipeline(job["reference"])
        watch = threading.Thread(target=_watch, args=(job["run_id"], stop), daemon=True)
        watch.start()
        if job.get("resume"):
            from conveyor.pipelines.service import resume

            resume(
                job["resume"],
                executor=job["executor"],
                pipeline=pipeline,
                new_run_id=job["run_id"],
                cache=bool(job.get("cache", True)),
            )
        else:
            run_pipeline(
                pipeline,
                job["params"],
                executor=job["executor"],
                cache=bool(job["cache"]),
                run_id=job["run_id"],
            )
    except PipelineFailed:
        return 1
    except ConveyorError as e:  # before the run began: the server tells the caller this line
        sys.stderr.write(f"error: {e}\n")
        return 2
    finally:
        stop.set()
    return 0


if __name__ == "__main__":
    sys.exit(main())
