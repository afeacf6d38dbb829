"""What a step printed while it ran: kept with its tracked run as the artifact ``step.log``.

While a step's function runs, ``sys.stdout`` and ``sys.stderr`` are teed: what the step prints
still reaches the terminal (or the worker's output) and is also kept, up to :data:`LIMIT`
bytes (past that, the oldest part is dropped and the log says how much). Log records go in
too when logging is set up to print to the terminal (``logging.basicConfig`` before the run),
since such a handler writes to the stream it was given, not to the teed one. Output written
by native code or child processes straight to the file descriptors is not kept.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any, TextIO

__all__ = ["LIMIT", "NAME", "StepLog", "capture"]

#: The artifact name a step's log is stored under, on the step's tracked run.
NAME = "step.log"
#: How many bytes of a step's output are kept (the newest ones).
LIMIT = 1 << 20


class StepLog:
    """The newest :data:`LIMIT` bytes written to it (thread-safe)."""

    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self._parts: deque[str] = deque()
        self._size = 0
        self.dropped = 0
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        if not text:
            return
        with self._lock:
            self._parts.append(text)
            self._size += len(text)
            while self._size > self.limit and self._parts:
                over = self._size - self.limit
                first = self._parts[0]
                if len(first) <= over:
                    self._parts.popleft()
                    self._size -= len(first)
                    self.dropped += len(first)
                else:
                    self._parts[0] = first[over:]
                    self._size -= over
                    self.dropped += over

    def text(self) -> str:
        with self._lock:
            body = "".join(self._parts)
        if self.dropped:
            return f"[{self.dropped:,} earlier characters left out]\n{body}"
        return body


class _Tee(io.TextIOBase):
    def __init__(self, stream: TextIO, log: StepLog) -> None:
        self._stream = stream
        self._log = log

    def write(self, text: str) -> int:
        self._log.write(text)
        try:
            return self._stream.write(text)
        except (OSError, ValueError):  # a closed terminal must not fail the step
            return len(text)

    def flush(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._stream.flush()

    def isatty(self) -> bool:
        return bool(getattr(self._stream, "isatty", lambda: False)())

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._stream, "encoding", None) or "utf-8"

    def fileno(self) -> int:
        return self._stream.fileno()


class _Records(logging.Handler):
    def __init__(self, log: StepLog, level: int, formatter: logging.Formatter | None) -> None:
        super().__init__(level)
        self._log = log
        self.setFormatter(formatter or logging.Formatter("%(levelname)s:%(name)s:%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._log.write(self.format(record) + "\n")
        except Exception:  # noqa: BLE001 - logging must never fail the step
            self.handleError(record)


@contextlib.contextmanager
def capture() -> Iterator[StepLog]:
    """Tee ``sys.stdout``/``sys.stderr`` (and terminal-bound log records) into a StepLog."""
    log = StepLog()
    out, err = sys.stdout, sys.stderr
    root = logging.getLogger()
    terminal = [
        h
        for h in root.handlers
        if isinstance(h, logging.StreamHandler)
        and not isinstance(h, logging.FileHandler)
        and getattr(h, "stream", None) in (out, err, sys.__stdout__, sys.__stderr__)
    ]
    handler: logging.Handler | None = None
    if terminal:
        handler = _Records(log, terminal[0].level, terminal[0].formatter)
        root.addHandler(handler)
    sys.stdout = _Tee(out, log)
    sys.stderr = _Tee(err, log)
    try:
        yield log
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        sys.stdout, sys.stderr = out, err
        if handler is not None:
            root.removeHandler(handler)


def read(ws: Any, run_id: str) -> str | None:
    """The log a step run stored (None when it stored none)."""
    from conveyor.store.records import ObjectRef

    for link in ws.list_artifacts(ObjectRef("run", run_id)):
        if link.name == NAME:
            with ws.artifacts.open(link.digest) as f:
                return f.read().decode("utf-8", errors="replace")
    return None
