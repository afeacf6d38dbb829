"""The same workspace and CLI on the team backends: PostgreSQL metadata, S3 artifacts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from conveyor.store.records import ObjectRef
from conveyor.store.workspace import Workspace

pytestmark = [pytest.mark.postgres, pytest.mark.s3]


@pytest.fixture
def team_env(postgres_uri: str, s3_bucket: str) -> dict[str, str]:
    return {
        "CONVEYOR_STORE_URI": postgres_uri,
        "CONVEYOR_ARTIFACT_URI": f"s3://{s3_bucket}/conveyor",
        "CONVEYOR_PROJECT": "team",
    }


def test_workspace_on_postgres_and_s3(team_env: dict[str, str], tmp_path: Path) -> None:
    ws = Workspace.from_settings(
        tmp_path,
        project="team",
        store_uri=team_env["CONVEYOR_STORE_URI"],
        artifact_uri=team_env["CONVEYOR_ARTIFACT_URI"],
    )
    run = ObjectRef("run", "r1")
    with ws:
        link = ws.log_artifact(b"model bytes", run, "model/model.bin")
        with ws.metadata.transaction(project_id=ws.project.id) as uow:
            uow.link(run, ObjectRef("model_version", "m@1"), "produced")
        with ws.open_artifact(run, "model/model.bin") as f:
            assert f.read() == b"model bytes"
        orphan = ws.artifacts.put(b"nobody points here")
        report = ws.gc(grace=timedelta(0))
        assert report.deleted == [orphan.digest]
        assert ws.artifacts.exists(link.digest)
        assert [str(n) for n in ws.lineage(ObjectRef("model_version", "m@1")).nodes()] == ["run:r1"]


def test_cli_on_postgres_and_s3(team_env: dict[str, str], tmp_path: Path) -> None:
    def cli(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "conveyor", *args],
            cwd=tmp_path,
            env={**os.environ, **team_env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    cli("init")
    info = json.loads(cli("info", "--json"))
    assert info["store_uri"].startswith("postgresql://")
    assert info["artifact_uri"].startswith("s3://")
    assert info["counts"]["projects"] == 1
    assert "(head)" in cli("db", "current")
    assert "Would delete 0 of 0 objects" in cli("gc", "--dry-run")
