"""What a step printed while it ran: kept with its tracked run as the artifact ``step.log``.

While any step runs in a process, ``sys.stdout`` and ``sys.stderr`` are proxies: what is
written still reaches the real stream (the terminal, the worker's output) and is also kept in
the running step's :class:`StepLog`, up to :data:`LIMIT` characters (past that, the oldest part
is dropped and the log says how much). A write goes to the log of the step its thread runs,
or, from a thread no step runs in (one the step started), to the only step running.

Log records go in too: those of handlers bound to the proxies (``logging.basicConfig`` called
while a step runs), and, mirrored, those of root handlers that print to the real terminal
(``logging.basicConfig`` called before the run), in their format. Bytes written to
``sys.stdout.buffer``, and output that native code or child processes write straight to the
file descriptors, are not kept.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any, TextIO

__all__ = ["LIMIT", "NAME", "StepLog", "capture"]

#: The artifact name a step's log is stored under, on the step's tracked run.
NAME = "step.log"
#: How many characters of a step's output are kept (the newest ones).
LIMIT = 1 << 20
_JOIN_AT = 256  # parts held before they are joined into one string (bounds per-part overhead)


class StepLog:
    """The newest ``limit`` characters written to it (thread-safe)."""

    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self._parts: list[str] = []
        self._size = 0
        self.dropped = 0
        self._lock = threading.RLock()  # a write from a __del__ during a write must not hang

    def write(self, text: str) -> None:
        if not text:
            return
        with self._lock:
            self._parts.append(text)
            self._size += len(text)
            # Up to twice the limit is held between trims, so that a step printing on and
            # on past the limit costs a join of the log every few hundred writes, not each.
            if self._size > 2 * self.limit or len(self._parts) > _JOIN_AT:
                self._trim()

    def _trim(self) -> str:
        body = "".join(self._parts)
        over = max(0, len(body) - self.limit)
        self.dropped += over
        body = body[over:]
        self._parts = [body]
        self._size = len(body)
        return body

    def text(self) -> str:
        with self._lock:
            body = self._trim()
        if self.dropped:
            return f"[{self.dropped:,} earlier characters left out]\n{body}"
        return body


# -- routing: which step's log a write from this thread belongs to -------------------------

_lock = threading.Lock()
_active: list[StepLog] = []  # the logs of the steps running in this process
_local = threading.local()


def _target() -> StepLog | None:
    log: StepLog | None = getattr(_local, "log", None)
    if log is not None:
        return log
    active = _active
    return active[0] if len(active) == 1 else None


class _Proxy:
    """Stands in for ``sys.stdout`` / ``sys.stderr``: writes go to the stream it was put in
    front of (fixed for its life) and to the running step's log; everything else is that
    stream's. A write that reaches a proxy through another one (a step wrapped ``sys.stdout``,
    and a later step put a proxy in front of the wrapper) is logged once, by the outer one."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        outer = not getattr(_local, "writing", False)
        _local.writing = True
        try:
            written = self._stream.write(text)  # its errors (a non-str) stay the stream's
        finally:
            if outer:
                _local.writing = False
        log = _target() if outer else None
        if log is not None:
            log.write(text)
        return written

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def writable(self) -> bool:
        return True

    def __getattr__(self, name: str) -> Any:  # buffer, fileno, isatty, encoding, flush, ...
        return getattr(self._stream, name)


_proxies: dict[str, _Proxy] = {}  # the newest per stream name: reused for the same stream
_mirror: _Records | None = None


class _Records(logging.Handler):
    """Mirrors the records that root handlers print to the real terminal into the step log."""

    def __init__(self, level: int, formatter: logging.Formatter | None) -> None:
        super().__init__(level)
        self.setFormatter(formatter or logging.Formatter("%(levelname)s:%(name)s:%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        log = _target()
        if log is None:
            return
        try:
            log.write(self.format(record) + "\n")
        except Exception:  # noqa: BLE001 - logging must never fail the step
            self.handleError(record)


def _install() -> None:
    """Put the proxies in place (the first step to start in this process does)."""
    global _mirror
    real = {}
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is None or isinstance(stream, _Proxy):
            continue
        proxy = _proxies.get(name)
        if proxy is None or proxy._stream is not stream:
            # A new stream gets a new proxy; an old one (a handler may hold it) keeps its own
            # stream, and still logs: routing does not depend on which proxy is written to.
            proxy = _proxies[name] = _Proxy(stream)
        real[name] = stream
        setattr(sys, name, proxy)
    root = logging.getLogger()
    terminal = [
        h
        for h in root.handlers
        if type(h) is logging.StreamHandler
        and getattr(h, "stream", None) in (*real.values(), sys.__stdout__, sys.__stderr__)
    ]
    if terminal:
        _mirror = _Records(terminal[0].level, terminal[0].formatter)
        root.addHandler(_mirror)


def _uninstall() -> None:
    """Give the real streams back (the last step to end does), unless someone replaced ours."""
    global _mirror
    for name, proxy in _proxies.items():
        if getattr(sys, name) is proxy:
            setattr(sys, name, proxy._stream)
    if _mirror is not None:
        logging.getLogger().removeHandler(_mirror)
        _mirror = None


@contextlib.contextmanager
def capture() -> Iterator[StepLog]:
    """Keep what this thread (and threads it starts) prints into a new StepLog."""
    log = StepLog()
    outer = getattr(_local, "log", None)
    with _lock:
        if not _active:
            _install()
        _active.append(log)
    _local.log = log
    try:
        yield log
    finally:
        _local.log = outer
        try:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
        finally:
            with _lock:
                if log in _active:
                    _active.remove(log)
                if not _active:
                    _uninstall()


def _after_fork_in_child() -> None:
    """A process forked while a step runs starts with no step of its own (and fresh locks:
    another thread may have held them at the fork)."""
    global _lock
    _lock = threading.Lock()
    _active.clear()
    _local.__dict__.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def read(ws: Any, run_id: str, name: str = NAME) -> str | None:
    """The artifact ``name`` (a step's log) of run ``run_id`` as text (None when it has none)."""
    from conveyor.store.records import ObjectRef

    for link in ws.list_artifacts(ObjectRef("run", run_id)):
        if link.name == name:
            with ws.artifacts.open(link.digest) as f:
                return f.read().decode("utf-8", errors="replace")
    return None
