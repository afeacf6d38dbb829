"""Eight processes writing records and artifacts into one SQLite store lose nothing."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import sqlalchemy as sa

from conveyor.store.metadata.schema import artifact_links, audit_events, lineage_edges
from conveyor.store.records import ObjectRef
from conveyor.store.workspace import Workspace

WRITERS = 8
PER_WRITER = 40


def _writer(root: str, n: int) -> int:
    with Workspace.from_settings(root, project="busy", actor=f"writer-{n}") as ws:
        for i in range(PER_WRITER):
            run = ObjectRef("run", f"w{n}-r{i}")
            with ws.metadata.transaction(project_id=ws.project.id) as uow:
                uow.link(ObjectRef("dataset_version", "shared@1"), run, "used_by")
                uow.audit("run.create", run)
            ws.log_artifact(f"writer {n} item {i}".encode(), run, "out.txt")
            ws.log_artifact(b"identical in every writer", run, "common.txt")
    return n


def test_eight_processes_write_at_once_and_nothing_is_lost(tmp_path: Path) -> None:
    with multiprocessing.get_context("spawn").Pool(WRITERS) as pool:
        assert sorted(pool.starmap(_writer, [(str(tmp_path), n) for n in range(WRITERS)])) == list(
            range(WRITERS)
        )
    with Workspace.from_settings(tmp_path, project="busy") as ws:
        with ws.metadata.read() as conn:

            def count(table: sa.Table) -> int:
                return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()

            total = WRITERS * PER_WRITER
            assert count(lineage_edges) == total
            assert count(artifact_links) == 2 * total
            # one project.create, one run.create per run, two artifact.link per run
            assert count(audit_events) == 1 + 3 * total
        digests = [d for d, _ in ws.artifacts.objects()]
        assert len(digests) == total + 1  # the common artifact is stored once
        for digest in digests:
            ws.artifacts.verify(digest)
