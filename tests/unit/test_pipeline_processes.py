"""The processes a step runs in and starts: terminals, sessions, what a timeout stops."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import conveyor as cv
from conveyor.pipelines import PipelineFailed, child_processes
from tests.fixtures import flows

linux_only = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="reads process states in /proc"
)


@pytest.fixture
def ws(tmp_path: Path) -> cv.Workspace:
    return cv.init(tmp_path, project="procs")


# -- a step's worker has no terminal --------------------------------------------------------

#: Steps that ask the terminal for input, each in its own way.
_READS = {
    "input": "input('your name? ')",
    "a_child_reading_stdin": (
        "subprocess.run([sys.executable, '-c', 'input()'], check=True, timeout=60)"
    ),
    "dev_tty": "open('/dev/tty').readline()",
}

_SCRIPT = """
import subprocess, sys
import conveyor as cv

cv.init(sys.argv[1], project="tty")

@cv.step(name="ask")
def ask() -> str:
    {read}
    return "answered"

@cv.pipeline(name="asking")
def asking():
    ask()

try:
    asking.run(executor="local")
    print("RESULT: the step succeeded")
except cv.pipelines.PipelineFailed as e:
    print("RESULT: " + e.run.step("ask").error.splitlines()[0])
"""


def _run_on_a_terminal(argv: list[str], deadline_s: float) -> str:
    """Run ``argv`` as the foreground job of a new pseudo-terminal (as a user's shell would),
    and return what it printed; fail if it has not ended within ``deadline_s``."""
    import pty

    # It imports conveyor from where this process does.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    pid, fd = pty.fork()
    if pid == 0:  # the child: its controlling terminal is the pty
        try:
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    output = b""
    deadline = time.monotonic() + deadline_s
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(
                    f"the pipeline did not end within {deadline_s} s (a step waiting for the "
                    f"terminal hangs the run); it printed:\n{output.decode(errors='replace')}"
                )
            ready, _, _ = select.select([fd], [], [], min(left, 0.5))
            if not ready:
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the child and its terminal are gone
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(fd)
        if os.waitpid(pid, os.WNOHANG) == (0, 0):
            os.kill(pid, signal.SIGKILL)  # its workers die with it (PR_SET_PDEATHSIG)
            os.waitpid(pid, 0)
    return output.decode(errors="replace").replace("\r\n", "\n")


@linux_only
@pytest.mark.parametrize("read", list(_READS))
def test_a_step_reading_the_terminal_fails_instead_of_hanging(tmp_path: Path, read: str):
    script = tmp_path / "asking.py"
    script.write_text(_SCRIPT.replace("{read}", _READS[read]))
    printed = _run_on_a_terminal(
        [sys.executable, str(script), str(tmp_path / "project")], deadline_s=60
    )
    result = [line.partition("RESULT: ")[2] for line in printed.splitlines() if "RESULT: " in line]
    assert result, f"the pipeline printed no result:\n{printed}"
    expected = {
        "input": "EOFError",
        "a_child_reading_stdin": "CalledProcessError",
        "dev_tty": "OSError",
    }[read]
    assert result[0].startswith(f"Step 'ask' failed: {expected}"), printed


def test_a_steps_worker_runs_in_a_session_of_its_own(ws: cv.Workspace):
    @cv.step(name="where")
    def where() -> list[int]:
        return [os.getsid(0), os.getpgid(0), os.getpid()]

    @cv.pipeline(name="sessions")
    def sessions():
        where()

    sid, pgid, pid = sessions.run(executor="local").outputs["where"]
    assert sid != os.getsid(0), "the worker shares this process's session (and its terminal)"
    assert sid == pgid == pid  # the session's leader, and its own process group (for killpg)


# -- an inline step's timeout stops what it started -----------------------------------------


def _gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie no one reaped yet counts as ended)."""
    return child_processes._stat(pid) is None


def _all_gone(pids: list[int], deadline_s: float) -> list[int]:
    """The pids still running after waiting up to ``deadline_s`` for all of them to end."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline and not all(_gone(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if not _gone(p)]


@linux_only
def test_an_inline_timeout_stops_the_processes_the_step_started(ws: cv.Workspace):
    @cv.step(name="spawn_and_wait", timeout=0.5)
    def spawn_and_wait() -> None:
        child = subprocess.Popen(["sleep", "600"])
        # ... and one below another, as a shell script would start it
        shell = subprocess.Popen(
            ["sh", "-c", "sleep 600 & echo $! > grandchild.pid; wait"],
        )
        Path("children.pid").write_text(f"{child.pid} {shell.pid}")
        time.sleep(30)

    @cv.pipeline(name="spawning")
    def spawning():
        spawn_and_wait()

    with pytest.raises(PipelineFailed, match=r"timed out after 0\.5s"):
        spawning.run(executor="inline")
    pids = [int(p) for p in Path("children.pid").read_text().split()]
    deadline = time.monotonic() + 5
    while not Path("grandchild.pid").read_text().strip():  # written by the shell, at once
        assert time.monotonic() < deadline, "the shell never noted its child"
        time.sleep(0.05)
    pids.append(int(Path("grandchild.pid").read_text()))
    left = _all_gone(pids, deadline_s=10)
    for pid in left:  # not to leave them behind when the test fails
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes the step started ({left} of {pids}) outlived its timeout"


@linux_only
def test_an_inline_step_waiting_for_a_process_it_started_still_times_out(ws: cv.Workspace):
    @cv.step(name="wait_for_child", timeout=0.5)
    def wait_for_child() -> None:
        # Leaving the with block waits for the process again, whatever interrupted it.
        with subprocess.Popen(["sleep", "20"]) as child:
            Path("child.pid").write_text(str(child.pid))
            child.wait()

    @cv.pipeline(name="waiting")
    def waiting():
        wait_for_child()

    started = time.monotonic()
    with pytest.raises(PipelineFailed, match=r"timed out after 0\.5s"):
        waiting.run(executor="inline")
    took = time.monotonic() - started
    assert took < 10, f"the step ran {took:.1f} s: its timeout waited for the process it started"
    assert _gone(int(Path("child.pid").read_text()))


def test_an_inline_step_s_timeout_leaves_processes_from_before_the_step_alone(
    ws: cv.Workspace,
):
    with subprocess.Popen(["sleep", "60"]) as bystander:
        try:
            with pytest.raises(PipelineFailed, match=r"timed out after 0\.5s"):
                flows.sleeper.run(executor="inline", seconds=30.0)
            assert bystander.poll() is None, "a process started before the step was stopped"
        finally:
            bystander.kill()


#: Run apart (a subreaper stays one for life): a process that adopts orphans, as PID 1 in a
#: container does, takes a snapshot, then adopts an older grandchild; stopping what started
#: since must leave that grandchild alone. Prints the grandchild's state afterwards.
_SUBREAPER = """
import ctypes, os, subprocess, sys, time
from conveyor.pipelines import child_processes
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
shell = subprocess.Popen(["sh", "-c", "sleep 600 & echo $!; sleep 1"], stdout=subprocess.PIPE)
orphan = int(shell.stdout.readline())
time.sleep(0.05)  # let the orphan's start time fall before the snapshot's
before = child_processes.snapshot()
shell.wait()  # the shell is gone: its sleep is now this process's child
deadline = time.monotonic() + 10
while child_processes._stat(orphan)[0] != os.getpid():
    assert time.monotonic() < deadline, "the orphan was never adopted"
    time.sleep(0.02)
child_processes.stop_started_since(before)
deadline = time.monotonic() + 2  # a kill takes effect soon after it is sent
while child_processes._stat(orphan) is not None and time.monotonic() < deadline:
    time.sleep(0.05)
state = child_processes._stat(orphan)  # None: a zombie, or gone
os.kill(orphan, 9)
print("alive" if state is not None else "killed")
"""


@linux_only
def test_an_older_process_adopted_during_the_step_is_not_taken_for_the_steps():
    done = subprocess.run(
        [sys.executable, "-c", _SUBREAPER], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "alive"
