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
    with pytest.raises(ConflictError, match=r"model\.bin") as refused:
        ws.log_artifact(b"v2", RUN, "model.bin")
    assert "replace=True" in str(refused.value)  # the hint says how
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


def test_gc_between_a_put_and_its_link_cannot_lose_the_content(ws: Workspace) -> None:
    old = ws.artifacts.put(b"popular content")
    _age(ws, old.digest, 7200)
    real_put = ws.artifacts.put
    collected: list[list[str]] = []

    def put_then_collect(data):  # type: ignore[no-untyped-def]
        result = real_put(data)
        if not collected:
            _age(ws, old.digest, 7200)  # as on an object store, where a put cannot touch
            collected.append(ws.gc().deleted)
        return result

    ws.artifacts.put = put_then_collect  # type: ignore[method-assign]
    ws.log_artifact(b"popular content", RUN, "model.bin")
    assert collected == [[old.digest]]  # gc did delete it in between...
    with ws.open_artifact(RUN, "model.bin") as f:
        assert f.read() == b"popular content"  # ...and the link stored it again


def test_storing_known_content_refreshes_its_age_for_gc(ws: Workspace) -> None:
    old = ws.artifacts.put(b"reused")
    _age(ws, old.digest, 7200)
    ws.artifacts.put(b"reused")
    assert ws.gc().deleted == []


def test_threads_sharing_a_new_store_never_see_it_unmigrated(tmp_path: Path) -> None:
    import threading

    from conveyor.store.metadata.store import MetadataStore

    for trial in range(5):
        store = MetadataStore(f"sqlite:///{tmp_path / f'{trial}.db'}")
        barrier, errors = threading.Barrier(4), []

        def read(
            store: MetadataStore = store,
            barrier: threading.Barrier = barrier,
            errors: list[Exception] = errors,
        ) -> None:
            barrier.wait()
            try:
                store.audit_log()
            except Exception as e:  # noqa: BLE001 - collected for the assertion
                errors.append(e)

        threads = [threading.Thread(target=read) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        store.close()
        assert errors == []


def test_init_refuses_to_rename_an_existing_project(tmp_path: Path) -> None:
    ws, _ = init_project(tmp_path, project="churn")
    ws.close()
    with pytest.raises(ConflictError, match="already names the project 'churn'"):
        init_project(tmp_path, project="other")


def test_a_file_uri_with_a_host_is_refused(tmp_path: Path) -> None:
    from conveyor.store.artifacts.cas import ArtifactStore

    with pytest.raises(InvalidArgumentError, match="three slashes"):
        ArtifactStore("file://objects").put(b"x")


def test_gc_refuses_an_artifact_store_that_another_metadata_store_collects(
    tmp_path: Path,
) -> None:
    shared = str(tmp_path / "blobs")
    a = Workspace.from_settings(tmp_path / "a", project="a", artifact_uri=shared)
    b = Workspace.from_settings(tmp_path / "b", project="b", artifact_uri=shared)
    with a, b:
        kept = b.log_artifact(b"only b knows this", ObjectRef("report", "b1"), "b.txt")
        b.gc(grace=timedelta(0))  # b collects the store first: it records itself as its owner
        with pytest.raises(ConflictError, match="collected by another metadata store"):
            a.gc(grace=timedelta(0))
        assert b.artifacts.get(kept.digest) == b"only b knows this"
        assert b.gc(grace=timedelta(0)).deleted == []  # its owner still collects it
        # a project whose id sorts first (made on a host whose clock is behind) changes
        # nothing: the store is known by the project it recorded, not by the smallest id
        from conveyor.store.metadata.schema import projects

        with b.metadata.transaction() as uow:
            uow.conn.execute(
                projects.insert().values(id="0" * 26, name="early", created_at=uow.now)
            )
        assert b.gc(grace=timedelta(0)).deleted == []


def test_a_memory_workspace_takes_nothing_from_the_environment_or_its_neighbours(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CONVEYOR_LOG_URI", str(tmp_path / "shared-logs"))
    monkeypatch.setenv("CONVEYOR_TRUST_PICKLED_MODELS", "true")
    a, b = memory_workspace(), memory_workspace()
    assert not a.settings.trusts_pickled_models
    assert a.settings.log_uri != b.settings.log_uri
    assert a.settings.online_uri != b.settings.online_uri
    assert not a.settings.log_uri.startswith(str(tmp_path))


def test_a_memory_workspace_can_be_the_one_cv_calls_use_until_it_is_closed(
    tmp_path: Path,
) -> None:
    before = cv.init(tmp_path / "before")
    with memory_workspace(current=True) as ws:
        with cv.start_run() as run:
            cv.log_metric("loss", 0.5)
        assert cv.workspace() is ws
        assert cv.get_run(run.id).metrics == {"loss": 0.5}
    assert cv.workspace() is before  # the tests after this one do not see it


def test_objects_may_be_named_as_kind_id_text_and_wrong_types_are_clear(ws: Workspace) -> None:
    ws.log_artifact(b"x", "run:r1", "a.txt")
    assert [a.name for a in ws.list_artifacts("run:r1")] == ["a.txt"]
    with ws.open_artifact("run:r1", "a.txt") as f:
        assert f.read() == b"x"
    assert ws.lineage("run:r1").edges == []
    with pytest.raises(InvalidArgumentError, match="kind and id are text"):
        ObjectRef("run", 5)  # type: ignore[arg-type]


def test_logging_bytes_as_a_run_artifact_points_at_the_calls_that_take_them(
    tmp_path: Path,
) -> None:
    cv.init(tmp_path / "p")
    with cv.start_run(), pytest.raises(InvalidArgumentError, match="log_text"):
        cv.log_artifact(b"content", "a.txt")  # type: ignore[arg-type]
