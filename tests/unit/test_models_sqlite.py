"""The model registry on the embedded default: SQLite metadata and a local artifact store."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.suites.models import ModelsSuite


class TestModelsOnSqliteAndLocalFiles(ModelsSuite):
    @pytest.fixture
    def store_uri(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'meta.db'}"

    @pytest.fixture
    def artifact_uri(self, tmp_path: Path) -> str:
        return str(tmp_path / "objects")
