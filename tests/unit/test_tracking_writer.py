"""The background writer: order, back-pressure, flush, and failures that surface."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from conveyor.core.errors import ConflictError
from conveyor.tracking.writer import LoggingFailedError, Writer


class SlowSink:
    """Stores batches after a gate opens, recording what it stored."""

    def __init__(self) -> None:
        self.stored: list[int] = []
        self.batches = 0
        self.gate = threading.Event()

    def __call__(self, batch: Sequence[int]) -> None:
        self.gate.wait()
        self.batches += 1
        for item in batch:
            if item < 0:
                raise ConflictError(f"bad item {item}")
        self.stored.extend(batch)


def test_everything_is_stored_in_order_and_batched() -> None:
    sink = SlowSink()
    writer = Writer(sink, sync=False)
    for i in range(10_000):
        writer.submit(i)
    sink.gate.set()
    writer.flush()
    assert sink.stored == list(range(10_000))
    assert sink.batches < 10_000
    writer.close()


def test_a_full_queue_makes_the_caller_wait_instead_of_dropping() -> None:
    sink = SlowSink()
    writer = Writer(sink, sync=False, queue_size=10)
    submitted = threading.Event()

    def produce() -> None:
        for i in range(100):
            writer.submit(i)
        submitted.set()

    producer = threading.Thread(target=produce)
    producer.start()
    assert not submitted.wait(0.5)  # blocked on the full queue, not dropping
    sink.gate.set()
    producer.join(timeout=30)
    writer.flush()
    assert sink.stored == list(range(100))
    writer.close()


def test_a_bad_operation_fails_alone_and_surfaces_at_flush() -> None:
    sink = SlowSink()
    sink.gate.set()
    writer = Writer(sink, sync=False)
    for item in [*range(50), -1, *range(50, 100)]:
        writer.submit(item)
    with pytest.raises(ConflictError, match="bad item -1"):
        writer.flush()
    assert sink.stored == list(range(100))
    writer.flush()  # reported once
    writer.close()


def test_several_failures_are_summarized() -> None:
    sink = SlowSink()
    sink.gate.set()
    writer = Writer(sink, sync=False)
    for item in (1, -1, 2, -2):
        writer.submit(item)
    with pytest.raises(LoggingFailedError, match="2 logged values could not be stored"):
        writer.flush()
    writer.close()


def test_sync_mode_stores_before_returning() -> None:
    sink = SlowSink()
    sink.gate.set()
    writer = Writer(sink, sync=True)
    writer.submit(7)
    assert sink.stored == [7]


def test_sync_mode_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_SYNC_LOGGING", "1")
    assert Writer(SlowSink()).sync is True
    monkeypatch.setenv("CONVEYOR_SYNC_LOGGING", "0")
    assert Writer(SlowSink()).sync is False


def test_an_unreachable_store_is_retried_and_nothing_is_lost() -> None:
    from conveyor.core.errors import BackendUnavailableError

    stored: list[int] = []
    failures = {"left": 3}

    def flaky(batch: Sequence[int]) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise BackendUnavailableError("connection refused")
        stored.extend(batch)

    writer = Writer(flaky, sync=False)
    for i in range(1000):
        writer.submit(i)
    writer.flush()
    assert stored == list(range(1000))
    writer.close()


def test_a_store_that_stays_down_fails_the_batch_after_the_retry_window() -> None:
    from conveyor.core.errors import BackendUnavailableError

    def down(batch: Sequence[int]) -> None:
        raise BackendUnavailableError("connection refused")

    writer = Writer(down, sync=False, retry_for=0.2)
    writer.submit(1)
    with pytest.raises(BackendUnavailableError, match="connection refused"):
        writer.flush()
    writer.close()


def test_once_the_store_stayed_down_later_batches_fail_fast() -> None:
    from conveyor.core.errors import BackendUnavailableError

    calls: list[int] = []

    def down(batch: Sequence[int]) -> None:
        calls.append(len(batch))
        raise BackendUnavailableError("connection refused")

    writer = Writer(down, sync=False, retry_for=0.3)
    writer.submit(1)
    with pytest.raises(BackendUnavailableError):
        writer.flush()
    first_window = len(calls)
    assert first_window > 1  # retried within its window
    writer.submit(2)
    with pytest.raises(BackendUnavailableError):
        writer.flush()
    assert len(calls) == first_window + 1  # one attempt, no second window
    writer.close()
