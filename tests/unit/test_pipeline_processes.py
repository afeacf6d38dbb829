"""The processes a step runs in and starts: terminals, sessions, what a timeout stops."""

from __future__ import annotations

import os
import select
import signal
import sys
import time
from pathlib import Path

import pytest

import conveyor as cv

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
