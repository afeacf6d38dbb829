"""The processes a step started in this process, found in ``/proc``, and stopping them.

A step the ``inline`` executor runs shares the coordinator's process, so a kill of a process
group (what the ``local`` executor does on a timeout) would stop the coordinator too. Instead,
the executor notes this process's children before the step and, when the step times out,
stops the children that appeared since and everything below them.

Limits: only on systems with ``/proc`` (Linux); a process that daemonized (its parent exited,
so it now belongs to init) is out of reach; a child that another thread of this process
started while the step ran is taken for the step's.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

__all__ = ["Snapshot", "snapshot", "stop_started_since"]

_PROC = Path("/proc")

#: A process as found in /proc: its pid and its start time (clock ticks after boot), so a
#: pid reused by an unrelated process is never taken for it.
Process = tuple[int, int]
#: This process's children at one moment, and that moment in clock ticks after boot
#: (None where there is no /proc to read).
Snapshot = tuple[frozenset[Process], int] | None


def _table() -> dict[int, tuple[int, int]]:
    """Every process's ``pid: (parent pid, start time)``, as /proc has them now."""
    table: dict[int, tuple[int, int]] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        found = _stat(int(entry.name))
        if found is not None:
            table[int(entry.name)] = found
    return table


def _stat(pid: int) -> tuple[int, int] | None:
    """``(parent pid, start time)`` of ``pid``, or None when it has gone (or is a zombie)."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The name (field 2) may hold spaces and parentheses: the fields after it follow the
    # last ")". From there: state (3), parent (4), ..., start time (22).
    fields = text.rsplit(")", 1)[-1].split()
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return int(fields[1]), int(fields[19])


def snapshot() -> Snapshot:
    """This process's children now, and the time now in clock ticks (None where they cannot
    be known: no /proc)."""
    if not (_PROC / "self" / "stat").exists():
        return None
    me = os.getpid()
    table = _table()
    children = frozenset((pid, start) for pid, (ppid, start) in table.items() if ppid == me)
    return children, _now()


def _now() -> int:
    """The time since boot in the clock ticks that /proc gives start times in."""
    try:
        uptime = float((_PROC / "uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0  # no clock to go by: every child not in the snapshot counts as new
    return int(uptime * os.sysconf("SC_CLK_TCK"))


def _started_since(before: frozenset[Process], mark: int) -> set[Process]:
    """The children of this process that are not in ``before`` and started at ``mark`` or
    later, and all their descendants. The start time keeps out an older process that became
    a child meanwhile: when this process is a subreaper (PID 1 in a container), the
    orphaned descendants of an earlier child are handed to it."""
    table = _table()
    below: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        below.setdefault(ppid, []).append(pid)
    me = os.getpid()
    todo = [
        pid
        for pid in below.get(me, [])
        if (pid, table[pid][1]) not in before and table[pid][1] >= mark
    ]
    found: set[Process] = set()
    while todo:
        pid = todo.pop()
        found.add((pid, table[pid][1]))
        todo.extend(below.get(pid, []))
    return found


def _signal(process: Process, signum: int) -> bool:
    """Send ``signum`` to ``process`` if it is still that process; whether it could be."""
    pid, start = process
    found = _stat(pid)
    if found is None or found[1] != start:
        return True  # gone (or a zombie): nothing left to stop
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return True
    except OSError:  # another user's (a setuid program): out of reach
        return False
    return True


def stop_started_since(before: Snapshot) -> list[int]:
    """Kill the processes this process started since ``before`` (and theirs); return the
    pids of those that could not be killed.

    They are first all stopped (SIGSTOP), looking again until no new one appears, so that
    none can start another while the others are killed; then killed (SIGKILL), as the
    ``local`` executor kills a worker's process group. Killed children stay zombies until
    whoever started them (a ``subprocess.Popen`` in the step) collects their exit status.
    """
    if before is None:
        return []
    children, mark = before
    seen: set[Process] = set()
    for _ in range(10):  # a process that keeps forking cannot keep this going forever
        new = _started_since(children, mark) - seen
        if not new:
            break
        for process in new:
            _signal(process, signal.SIGSTOP)
        seen |= new
    return [pid for pid, start in sorted(seen) if not _signal((pid, start), signal.SIGKILL)]
