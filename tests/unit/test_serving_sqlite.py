"""Serving on the embedded default: SQLite metadata, local artifacts, local prediction logs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.suites.serving import ServingSuite


class TestServingOnSqliteAndLocalFiles(ServingSuite):
    @pytest.fixture
    def store_uri(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'meta.db'}"

    @pytest.fixture
    def artifact_uri(self, tmp_path: Path) -> str:
        return str(tmp_path / "objects")

    @pytest.fixture
    def log_uri(self, tmp_path: Path) -> str:
        return str(tmp_path / "logs")
