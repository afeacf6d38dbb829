"""Where a run ran: git state, command line, Python, host, user, installed packages.

Gathered once per process (git and the package list cost milliseconds, and do not change
while a script runs), so creating thousands of runs stays cheap.
"""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["GitState", "RunEnvironment", "capture"]


@dataclass(frozen=True, slots=True)
class GitState:
    """The repository a run's code came from."""

    commit: str
    branch: str | None
    dirty: bool
    diff: bytes


@dataclass(frozen=True, slots=True)
class RunEnvironment:
    """Everything recorded about where runs of this process ran."""

    command: str
    python_version: str
    host: str
    git: GitState | None
    packages: bytes


def _git(args: list[str], cwd: Path) -> bytes | None:
    git = shutil.which("git")
    if git is None:
        return None
    try:
        out = subprocess.run(  # noqa: S603 - fixed arguments, no shell
            [git, *args], cwd=cwd, capture_output=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def git_state(cwd: Path) -> GitState | None:
    """Return the git commit, branch and uncommitted diff of ``cwd``, or None outside git."""
    commit = _git(["rev-parse", "HEAD"], cwd)
    if not commit:
        return None
    branch = (_git(["rev-parse", "--abbrev-ref", "HEAD"], cwd) or b"").decode().strip()
    diff = _git(["diff", "HEAD", "--no-color", "--no-ext-diff"], cwd) or b""
    status = _git(["status", "--porcelain", "--untracked-files=no"], cwd) or b""
    return GitState(
        commit=commit.decode().strip(),
        branch=None if branch in ("", "HEAD") else branch,
        dirty=bool(status.strip()),
        diff=diff,
    )


def installed_packages() -> bytes:
    """Return ``name==version`` lines of every installed distribution, sorted."""
    found = {
        f"{(d.metadata['Name'] or '').lower()}=={d.version}"
        for d in importlib.metadata.distributions()
        if d.metadata["Name"]
    }
    return ("\n".join(sorted(found)) + "\n").encode()


def _command() -> str:
    argv = [sys.executable.rsplit("/", 1)[-1], *sys.argv] if sys.argv and sys.argv[0] else []
    return " ".join(argv)[:4000]


@functools.lru_cache(maxsize=8)
def capture(cwd: str) -> RunEnvironment:
    """Return the run environment of this process for code in ``cwd`` (cached)."""
    return RunEnvironment(
        command=_command(),
        python_version=platform.python_version(),
        host=socket.gethostname(),
        git=git_state(Path(cwd)),
        packages=installed_packages(),
    )
