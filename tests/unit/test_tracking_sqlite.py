"""Tracking on SQLite, the embedded default."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.suites.tracking import TrackingRobustnessSuite


class TestTrackingOnSqlite(TrackingRobustnessSuite):
    @pytest.fixture
    def store_uri(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'conveyor.db'}"


def test_an_in_memory_store_takes_the_writer_and_the_caller_in_turns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import conveyor as cv

    with cv.init(tmp_path, store_uri="sqlite://", artifact_uri=f"memory://{tmp_path.name}"):
        for attempt in range(3):
            with cv.start_run(experiment="memory") as run:
                for i in range(200):  # the writer stores while this thread reads below
                    cv.log_metric("loss", float(i))
                cv.log_text("notes", "notes.txt")
            stored = cv.get_run(run.id)
            assert (str(stored.status), attempt) == ("FINISHED", attempt)
            assert len(cv.get_metric_history(run.id, "loss")) == 200
    assert "unreachable" not in caplog.text


def test_a_child_forked_while_a_thread_uses_an_in_memory_store_is_not_stuck() -> None:
    import multiprocessing
    import threading

    from conveyor.store.metadata.store import MetadataStore

    store = MetadataStore("sqlite://").open()
    stop = threading.Event()

    def busy() -> None:
        while not stop.is_set():
            with store.transaction():  # holds the store's turn most of the time
                pass

    def child() -> None:
        with store.read() as conn:
            conn.exec_driver_sql("SELECT 1")

    worker = threading.Thread(target=busy)
    worker.start()
    try:
        forked = multiprocessing.get_context("fork")
        for _ in range(10):
            proc = forked.Process(target=child)
            proc.start()
            proc.join(timeout=30)
            stuck = proc.is_alive()
            if stuck:
                proc.kill()
            assert not stuck
            assert proc.exitcode == 0
    finally:
        stop.set()
        worker.join()
        store.close()
