"""Adaptive micro-batching: concurrent requests for one model share one ``predict`` call.

A request that finds the model idle runs at once, alone: nothing waits for company. While a
batch runs, requests that arrive queue up; when it finishes, the queue is taken as the next
batch (up to ``max_batch`` rows). If more requests are known to be on their way (their bodies
are being read), the batch waits up to ``max_wait_ms`` for them. So batches grow with load
and shrink to one when it falls, with no timer on the quiet path.

The model runs on one thread of its own, off the event loop. If a batch of several requests
fails, each request is run again alone, so one bad request fails only itself.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from conveyor.serving.payloads import Block, concat_blocks

__all__ = ["BatchResult", "Batcher"]


@dataclass(slots=True)
class BatchResult:
    """One request's share of a batch: its outputs and the batch it ran in."""

    outputs: dict[str, Any]
    batch_rows: int
    compute_s: float


@dataclass(slots=True)
class _Pending:
    block: Block
    future: asyncio.Future[BatchResult]
    want: frozenset[str] = field(default_factory=frozenset)


class Batcher:
    """Coalesces requests for one model into ``predict(input, want) -> {name: array}`` calls."""

    def __init__(
        self,
        predict: Callable[[Any, frozenset[str]], dict[str, Any]],
        *,
        max_batch: int = 64,
        max_wait_ms: float = 2.0,
        name: str = "model",
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be 0 or more, not {max_wait_ms}")
        self._predict = predict
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self._queue: deque[_Pending] = deque()
        self._running = False
        self._arriving = 0
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"conveyor-model-{name}")
        self._on_batch = on_batch
        self._idle: asyncio.Event | None = None
        self._drainer: asyncio.Task[None] | None = None

    @property
    def queue_depth(self) -> int:
        """Requests waiting for the model (not counting the batch that runs)."""
        return len(self._queue)

    def expect(self) -> None:
        """Say a request is on its way (its body is being read); ``arrived`` undoes it."""
        self._arriving += 1

    def arrived(self) -> None:
        self._arriving = max(0, self._arriving - 1)

    async def submit(self, block: Block, want: frozenset[str] = frozenset()) -> BatchResult:
        """Queue ``block`` and return its outputs once its batch has run."""
        loop = asyncio.get_running_loop()
        pending = _Pending(block, loop.create_future(), want)
        self._queue.append(pending)
        if not self._running:
            self._running = True
            self._drainer = loop.create_task(self._drain())
        return await pending.future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        batch: list[_Pending] = []
        try:
            while self._queue:
                batch = self._take()
                rows = sum(p.block.rows for p in batch)
                if rows < self.max_batch and self._arriving > 0 and self.max_wait > 0:
                    # Others are being read right now: give them a moment to join.
                    deadline = loop.time() + self.max_wait
                    while self._arriving > 0 and rows < self.max_batch:
                        if loop.time() >= deadline:
                            break
                        await asyncio.sleep(0.0002)
                        more = self._take(self.max_batch - rows, allow_empty=True)
                        batch += more
                        rows += sum(p.block.rows for p in more)
                await self._run(loop, batch, rows)
                batch = []
        except BaseException as error:
            # Whatever went wrong here, no request may wait forever: fail what was taken
            # and what is queued (they get a 500 with an error id, the log the traceback).
            for pending in [*batch, *self._queue]:
                _fail(pending, error if isinstance(error, Exception) else RuntimeError("stopped"))
            self._queue.clear()
            if not isinstance(error, Exception):
                raise
        finally:
            self._running = False
            if self._idle is not None and not self._queue:
                self._idle.set()

    def _take(self, limit: int | None = None, *, allow_empty: bool = False) -> list[_Pending]:
        limit = self.max_batch if limit is None else limit
        batch: list[_Pending] = []
        rows = 0
        while self._queue:
            nxt = self._queue[0]
            if (batch or allow_empty) and rows + nxt.block.rows > limit:
                break
            batch.append(self._queue.popleft())
            rows += nxt.block.rows
            if rows >= limit:
                break
        return batch

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending], rows: int) -> None:
        want = frozenset().union(*(p.want for p in batch))
        started = time.perf_counter()
        try:
            data = concat_blocks([p.block for p in batch])
            outputs = await loop.run_in_executor(self._executor, self._predict, data, want)
            outputs = {k: np.asarray(v) for k, v in outputs.items()}
            if any(v.ndim == 0 for v in outputs.values()):
                raise ValueError("The model returned a single value, not one per row.")
        except Exception as error:  # noqa: BLE001 - the model's error goes to its requests
            if len(batch) == 1:
                _fail(batch[0], error)
                return
            # One request may be the cause: run each alone so only it fails.
            for pending in batch:
                await self._run(loop, [pending], pending.block.rows)
            return
        elapsed = time.perf_counter() - started
        if self._on_batch is not None:
            self._on_batch(rows, elapsed)
        for name, values in outputs.items():
            if len(values) != rows:
                mismatch = ValueError(
                    f"The model returned {len(values)} {name} for {rows} input row(s)."
                )
                for pending in batch:
                    _fail(pending, mismatch)
                return
        start = 0
        for pending in batch:
            end = start + pending.block.rows
            share = {k: v[start:end] for k, v in outputs.items()}
            if not pending.future.done():
                pending.future.set_result(BatchResult(share, rows, elapsed))
            start = end

    async def wait_idle(self) -> None:
        """Return once nothing is queued or running (for a graceful reload or shutdown)."""
        while self._running or self._queue:
            self._idle = asyncio.Event()
            await self._idle.wait()

    def close(self, *, wait: bool = True) -> None:
        self._executor.shutdown(wait=wait, cancel_futures=not wait)


def _fail(pending: _Pending, error: BaseException) -> None:
    if not pending.future.done():
        pending.future.set_exception(error)
