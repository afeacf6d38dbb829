"""The background writer: logging calls return at once; a thread stores them in batches.

A bounded queue applies back-pressure (a caller waits when it is full) instead of dropping
anything. The thread writes as soon as something is queued, taking everything queued so far
into one transaction, so batches grow with the logging rate (on a VM disk a commit costs a
few hundred microseconds: sharing it is what makes logging fast). ``flush()`` waits until
everything submitted before it is stored and raises if anything could not be; the process
flushes at exit. ``CONVEYOR_SYNC_LOGGING=1`` (or ``sync=True``) stores every operation
before the call returns.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from conveyor.core.errors import BackendUnavailableError, ConveyorError

__all__ = ["LoggingFailedError", "Writer"]

log = logging.getLogger(__name__)

#: Operations waiting at most; past this, logging calls wait for the writer.
DEFAULT_QUEUE_SIZE = 200_000
#: Operations written in one transaction at most.
DEFAULT_BATCH_SIZE = 20_000
#: How long a batch is retried while the store is unreachable before it counts as failed.
DEFAULT_RETRY_FOR_S = 120.0


class LoggingFailedError(ConveyorError, RuntimeError):
    """Some logged values could not be stored (the first cause is chained)."""

    code = "conveyor.logging_failed"


class _Barrier:
    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


_STOP = object()


class Writer:
    """Stores operations through ``sink(batch)`` on a background thread, in order."""

    def __init__(
        self,
        sink: Callable[[Sequence[Any]], None],
        *,
        sync: bool | None = None,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        batch_size: int = DEFAULT_BATCH_SIZE,
        retry_for: float = DEFAULT_RETRY_FOR_S,
    ) -> None:
        self._sink = sink
        self._retry_for = retry_for
        if sync is None:
            from conveyor.core.config import parse_flag

            value = os.environ.get("CONVEYOR_SYNC_LOGGING", "")
            sync = parse_flag(value, "The environment variable CONVEYOR_SYNC_LOGGING")
        self.sync = sync
        self._queue_size = queue_size
        self._batch_size = batch_size
        self._lock = threading.Lock()
        self._errors: list[BaseException] = []
        self._failed_ops = 0
        self._pid = -1
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self._closed = False
        self._submit_lock = threading.Lock()
        self._down = False  # the last batch failed after its whole retry window
        self._submitted = 0  # operations queued, and
        self._done = 0  # operations the thread has finished with (stored or failed)

    # -- producer side ---------------------------------------------------------------------

    def submit(self, op: Any) -> None:
        """Queue ``op`` (or store it now in sync mode); waits only when the queue is full."""
        if self.sync:
            self._sink([op])
            return
        # close() takes the same lock, so an operation is never put behind the stop marker.
        with self._submit_lock:
            if self._thread is None or self._pid != os.getpid():
                self._start()
            self._submitted += 1
            self._queue.put(op)

    def submit_many(self, ops: Sequence[Any]) -> None:
        """Queue several operations, in order."""
        if self.sync:
            self._sink(list(ops))
            return
        for op in ops:
            self.submit(op)

    def shorten_retries(self, seconds: float) -> None:
        """Retry an unreachable store for at most ``seconds`` from now on (a process on its
        way out cannot wait the usual window)."""
        self._retry_for = min(self._retry_for, seconds)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything submitted so far is stored; raise if any of it failed."""
        idle = self._done == self._submitted
        if not idle and not self.sync and self._thread is not None and self._pid == os.getpid():
            barrier = _Barrier()
            self._queue.put(barrier)
            if not barrier.done.wait(timeout):
                raise LoggingFailedError(
                    f"Logged values were not stored within {timeout} s; the store may be locked "
                    "or unreachable."
                )
        self._raise_errors()

    def raise_pending(self) -> None:
        """Raise a failure the thread has already met, without waiting for anything."""
        self._raise_errors()

    def reset_after_fork(self) -> None:
        """In a forked child: drop the parent's thread, queue, counters and failures."""
        self._lock = threading.Lock()
        self._submit_lock = threading.Lock()
        self._thread = None
        self._pid = -1
        self._queue = queue.Queue(maxsize=self._queue_size)
        self._submitted = self._done = 0
        self._errors, self._failed_ops = [], 0
        self._closed = False

    def close(self) -> None:
        """Store what is queued and stop the thread; report failures in the log."""
        with self._submit_lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
            if thread is not None and self._pid == os.getpid() and thread.is_alive():
                self._queue.put(_STOP)
                thread.join()
            self._thread = None
        if self._errors:
            log.error(
                "conveyor: %d logged values could not be stored: %s",
                self._failed_ops,
                self._errors[0],
            )

    # -- the thread ------------------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None and self._pid == os.getpid():
                return
            # After a fork the parent's thread does not exist here: start afresh.
            self._pid = os.getpid()
            self._queue = queue.Queue(maxsize=self._queue_size)
            self._submitted = self._done = 0
            self._closed = False
            self._thread = threading.Thread(target=self._run, name="conveyor-writer", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        q = self._queue
        while True:
            item = q.get()
            batch: list[Any] = []
            barriers: list[_Barrier] = []
            stop = False
            while True:
                if item is _STOP:
                    stop = True
                elif isinstance(item, _Barrier):
                    barriers.append(item)
                else:
                    batch.append(item)
                if stop or len(batch) >= self._batch_size:
                    break
                try:
                    item = q.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._write(batch)
                self._done += len(batch)
            for barrier in barriers:
                barrier.done.set()
            if stop:
                return

    def _write(self, batch: list[Any]) -> None:
        """Store ``batch``; retry while the store is unreachable; isolate bad operations.

        The sink's writes are idempotent (a retried batch stores nothing twice), so a batch
        whose commit was lost with the connection can be sent again.
        """
        delay = 0.05
        # Once a whole retry window has passed without the store, later batches get one
        # attempt each until a write succeeds again: a full queue fails in seconds, not hours.
        started = time.monotonic()
        down = self._down
        while True:
            # Read each time round: shorten_retries applies to a batch already retrying.
            deadline = started + (0.0 if down else self._retry_for)
            try:
                self._sink(batch)
                self._down = False
                return
            except BackendUnavailableError as e:
                if time.monotonic() + delay > deadline:
                    self._down = True
                    self._fail(batch, e)
                    return
                log.warning("conveyor: the store is unreachable (%s); retrying in %.2fs", e, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
            except Exception as e:  # noqa: BLE001 - kept and raised to the caller at flush
                if len(batch) == 1:
                    self._fail(batch, e)
                    return
                # Store what can be stored: split the batch until the bad operations are alone.
                middle = len(batch) // 2
                self._write(batch[:middle])
                self._write(batch[middle:])
                return

    def _fail(self, batch: list[Any], error: BaseException) -> None:
        with self._lock:
            self._errors.append(error)
            self._failed_ops += len(batch)

    def _raise_errors(self) -> None:
        with self._lock:
            if not self._errors:
                return
            errors, self._errors = self._errors, []
            failed, self._failed_ops = self._failed_ops, 0
        first = errors[0]
        if len(errors) == 1 and isinstance(first, ConveyorError):
            raise first
        raise LoggingFailedError(
            f"{failed} logged values could not be stored; the first error: {first}"
        ) from first
