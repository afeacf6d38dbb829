"""The workspace ties settings to stores; gc deletes only what nothing references."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import pytest

import conveyor as cv
from conveyor.core.errors import ConflictError, InvalidArgumentError, NotFoundError
from conveyor.store.records import ObjectRef
from conveyor.store.workspace import Workspace, init_project
from conveyor.testing import memory_workspace

RUN = ObjectRef("run", "r1")


@pytest.fixture
def ws(tmp_path: Path):  # type: ignore[no-untyped-def]
    with Workspace.from_settings(tmp_path, project="demo", actor="alice") as ws:
        yield ws


def _age(ws: Workspace, digest: str, seconds: float) -> None:
    path = ws.artifacts.backend.local_path(f"{digest[:2]}/{digest[2:]}")
    assert path is not None
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_nothing_is_created_until_first_use(tmp_path: Path) -> None:
    ws = cv.init(tmp_path, project="lazy")
    assert not (tmp_path / ".conveyor").exists()
    assert ws.project.name == "lazy"
    assert (tmp_path / ".conveyor" / "conveyor.db").is_file()
    assert cv.workspace() is ws
    ws.close()


def test_log_artifact_stores_links_and_audits(ws: Workspace, tmp_path: Path) -> None:
    src = tmp_path / "roc.png"
    src.write_bytes(b"\x89PNG fake")
    link = ws.log_artifact(src, RUN, "plots/roc.png")
    assert (link.name, link.media_type, link.size) == ("plots/roc.png", "image/png", 9)
    with ws.open_artifact(RUN, "plots/roc.png") as f:
        assert f.read() == b"\x89PNG fake"
    (event,) = ws.metadata.audit_log(action="artifact.link")
    assert (event.actor, event.object, event.after["name"]) == ("alice", RUN, "plots/roc.png")
    assert event.project_id == ws.project.id


def test_a_traversal_name_is_refused_before_anything_is_stored(ws: Workspace) -> None:
    with pytest.raises(InvalidArgumentError, match=r"'\.\.'"):
        ws.log_artifact(b"x", RUN, "../../etc/cron.d/evil")
    assert list(ws.artifacts.objects()) == []


def test_renaming_content_under_an_existing_name_needs_replace(ws: Workspace) -> None:
    ws.log_artifact(b"v1", RUN, "model.bin")
    with pytest.raises(ConflictError, match=r"model\.bin"):
        ws.log_artifact(b"v2", RUN, "model.bin")
    ws.log_artifact(b"v2", RUN, "model.bin", replace=True)
    with ws.open_artifact(RUN, "model.bin") as f:
        assert f.read() == b"v2"


def test_opening_a_missing_artifact_is_not_found(ws: Workspace) -> None:
    with pytest.raises(NotFoundError, match=r"no artifact named 'nope\.txt'"):  # noqa: SIM117
        with ws.open_artifact(RUN, "nope.txt"):
            pass


def test_gc_deletes_old_unreferenced_objects_and_reports_bytes(ws: Workspace) -> None:
    kept = ws.log_artifact(b"referenced", RUN, "keep.txt")
    orphan = ws.artifacts.put(b"orphaned bytes")
    young = ws.artifacts.put(b"just written")
    _age(ws, orphan.digest, 7200)
    _age(ws, kept.digest, 7200)

    dry = ws.gc(dry_run=True)
    assert (dry.deleted, dry.bytes_freed, dry.kept_recent) == ([orphan.digest], 14, 1)
    assert ws.artifacts.exists(orphan.digest)

    report = ws.gc()
    assert report.deleted == [orphan.digest]
    assert report.bytes_freed == len(b"orphaned bytes")
    assert not ws.artifacts.exists(orphan.digest)
    assert ws.artifacts.exists(kept.digest)
    assert ws.artifacts.exists(young.digest)
    assert ws.metadata.audit_log(action="artifacts.gc")[0].after == {"objects": 1, "bytes": 14}


def test_gc_with_no_grace_collects_replaced_content(ws: Workspace) -> None:
    first = ws.log_artifact(b"v1", RUN, "model.bin")
    ws.log_artifact(b"v2", RUN, "model.bin", replace=True)
    report = ws.gc(grace=timedelta(0))
    assert report.deleted == [first.digest]


def test_gc_reports_referenced_objects_that_are_missing(ws: Workspace) -> None:
    link = ws.log_artifact(b"will vanish", RUN, "gone.txt")
    ws.artifacts.delete(link.digest)
    assert ws.gc(dry_run=True).missing == [link.digest]


def test_init_project_is_idempotent(tmp_path: Path) -> None:
    ws, created = init_project(tmp_path / "proj", project="churn")
    ws.close()
    assert sorted(Path(p).name for p in created) == [".conveyor", "conveyor.toml"]
    ws, created = init_project(tmp_path / "proj")
    assert created == []
    assert ws.project.name == "churn"
    ws.close()


def test_memory_workspaces_are_isolated() -> None:
    a, b = memory_workspace(), memory_workspace()
    a.log_artifact(b"only in a", RUN, "x.txt")
    assert b.list_artifacts(RUN) == []
    assert len(a.list_artifacts(RUN)) == 1
