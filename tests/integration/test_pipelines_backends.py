"""Pipelines on the team backends: PostgreSQL metadata and S3 artifacts, worker processes
recording into them; two schedulers on PostgreSQL start a due run once."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest

import conveyor as cv
from conveyor.pipelines.schedules import Scheduler
from tests.fixtures import flows


@pytest.mark.postgres
@pytest.mark.s3
def test_worker_processes_record_into_postgres_and_s3(
    tmp_path: Path, postgres_uri: str, s3_bucket: str
) -> None:
    cv.init(
        tmp_path, project="team", store_uri=postgres_uri, artifact_uri=f"s3://{s3_bucket}/objects"
    )
    first = flows.numbers.run(executor="local:2", n=4, factor=3)
    assert first.outputs["total"] == 18
    assert cv.get_run(first.step("scale").id).metrics == {"length": 4.0}
    again = flows.numbers.run(executor="local:2", n=4, factor=3)
    assert {str(s.status) for s in again.steps} == {"CACHED"}
    assert again.outputs["scale"] == [0, 3, 6, 9]


@pytest.mark.postgres
def test_two_schedulers_on_postgres_start_a_due_run_once(tmp_path: Path, postgres_uri: str):
    ws = cv.init(tmp_path, project="sched", store_uri=postgres_uri)
    made = cv.schedule(flows.chain, cron="*/10 * * * *", params={"length": 1}, executor="inline")
    due = made.next_run_at + timedelta(seconds=5)
    started: list[object] = []
    barrier = threading.Barrier(2)

    def scheduler(holder: str) -> None:
        own = cv.Workspace.from_settings(tmp_path, project="sched", store_uri=postgres_uri)
        barrier.wait()
        started.extend(Scheduler(own, holder=holder).tick(now=due))
        own.close()

    threads = [threading.Thread(target=scheduler, args=(h,)) for h in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(started) == 1
    assert len(cv.pipelines.list_runs("chain", workspace=ws)) == 1
