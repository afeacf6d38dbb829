"""Where a run ran: git state, command line, Python, host, user, installed packages.

Gathered once per process (git and the package list cost milliseconds, and do not change
while a script runs), so creating thousands of runs stays cheap.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
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
    """Return ``name==version`` lines of every installed distribution, sorted.

    Names are normalized (lower case, ``-`` for ``_``). Read from the ``*.dist-info``
    folder names on ``sys.path`` (``name-version.dist-info`` by the wheel spec), which takes
    milliseconds; parsing every METADATA file took a fifth of a second with 400 packages.
    """
    found: set[str] = set()
    for entry in sys.path:
        try:
            listing = os.scandir(entry or ".")
        except OSError:
            continue
        with listing:
            for item in listing:
                line = _from_folder_name(item.name)
                if line is None and item.name.endswith((".dist-info", ".egg-info")):
                    line = _from_metadata(item.path)
                if line is not None:
                    found.add(line)
    return ("\n".join(sorted(found)) + "\n").encode()


def _from_folder_name(name: str) -> str | None:
    if name.endswith(".dist-info"):
        stem = name[: -len(".dist-info")]
    elif name.endswith(".egg-info"):
        stem = name[: -len(".egg-info")].split("-py", 1)[0]
    else:
        return None
    dist, sep, version = stem.partition("-")
    if not sep or not dist or not version or "-" in version:
        return None
    return f"{dist.lower().replace('_', '-').replace('.', '-')}=={version}"


def _from_metadata(path: str) -> str | None:
    dist = importlib.metadata.PathDistribution(Path(path))
    name = dist.metadata["Name"]
    if not name:
        return None
    return f"{name.lower().replace('_', '-').replace('.', '-')}=={dist.version}"


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
