"""A store made by the first revision of Conveyor opens after upgrade with its data intact."""

from __future__ import annotations

import shutil
from pathlib import Path

from conveyor.store.metadata.migrate import HEAD
from conveyor.store.metadata.store import MetadataStore
from conveyor.store.records import ObjectRef
from conveyor.store.workspace import Workspace

FIXTURE = Path(__file__).parents[1] / "fixtures" / "store_rev0001.db"


def test_the_fixture_store_upgrades_to_head_with_its_data(tmp_path: Path) -> None:
    db = tmp_path / "conveyor.db"
    shutil.copyfile(FIXTURE, db)
    with MetadataStore(f"sqlite:///{db}", auto_migrate=False) as store:
        assert store.revision() == "0001"
    with MetadataStore(f"sqlite:///{db}") as store:
        assert store.revision() == HEAD
        project = store.get_project("legacy")
        assert (project.description, project.created_at.isoformat()) == (
            "made at 0001",
            "2026-11-01T12:00:00+00:00",
        )
        up = store.lineage(ObjectRef("model_version", "churn@1"))
        assert {str(n) for n in up.nodes()} == {"run:r1", "dataset_version:customers@1"}
        assert [e.actor for e in store.audit_log()] == ["founder"]


def test_the_upgraded_store_takes_new_kinds_of_records(tmp_path: Path) -> None:
    shutil.copyfile(FIXTURE, tmp_path / "conveyor.db")
    ws = Workspace.from_settings(
        tmp_path, project="legacy", store_uri=f"sqlite:///{tmp_path / 'conveyor.db'}"
    )
    with ws:
        link = ws.log_artifact(b"weights", ObjectRef("model_version", "churn@1"), "model.bin")
        assert ws.list_artifacts(ObjectRef("model_version", "churn@1")) == [link]
