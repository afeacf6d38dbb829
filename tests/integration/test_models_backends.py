"""The model registry on the real backends: PostgreSQL metadata, and an S3-compatible store."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.suites.models import ModelsSuite


@pytest.mark.postgres
class TestModelsOnPostgres(ModelsSuite):
    @pytest.fixture
    def store_uri(self, postgres_uri: str) -> str:
        return postgres_uri

    @pytest.fixture
    def artifact_uri(self, tmp_path: Path) -> str:
        return str(tmp_path / "objects")


@pytest.mark.s3
class TestModelsOnS3(ModelsSuite):
    @pytest.fixture
    def store_uri(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'meta.db'}"

    @pytest.fixture
    def artifact_uri(self, s3_bucket: str) -> str:
        return f"s3://{s3_bucket}/objects"


@pytest.mark.postgres
def test_concurrent_logs_and_approvals_on_postgres(tmp_path: Path, postgres_uri: str) -> None:
    """Four writers log one model at once: distinct numbers; of two approvals, one wins."""
    from sklearn.linear_model import LinearRegression

    import conveyor as cv
    from conveyor.core.errors import ConflictError

    model = LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0])
    root = tmp_path / "p"
    spaces = [
        cv.Workspace.from_settings(root, project="race", store_uri=postgres_uri, actor=f"u{i}")
        for i in range(4)
    ]
    try:
        numbers: list[int] = []
        errors: list[BaseException] = []

        def log(ws: cv.Workspace) -> None:
            try:
                numbers.append(cv.models.log(model, "lin", workspace=ws).version)
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=log, args=(ws,)) for ws in spaces]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert sorted(numbers) == [1, 2, 3, 4]
        cv.models.require_approval("lin", workspace=spaces[0])
        request = cv.models.request_promotion("lin/4", "champion", workspace=spaces[0])
        outcomes: list[str] = []

        def approve(ws: cv.Workspace) -> None:
            try:
                cv.models.approve(request.id, workspace=ws)
                outcomes.append("approved")
            except ConflictError:
                outcomes.append("conflict")

        racers = [threading.Thread(target=approve, args=(ws,)) for ws in spaces[1:3]]
        for t in racers:
            t.start()
        for t in racers:
            t.join()
        assert sorted(outcomes) == ["approved", "conflict"]
        history = cv.models.alias_history("lin", "champion", workspace=spaces[0])
        assert [m.version for m in history] == [4]
    finally:
        for ws in spaces:
            ws.close()
