"""Monitors on the embedded default: SQLite, local artifacts, local logs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.suites.monitoring import MonitoringSuite


class TestMonitoringOnSqliteAndLocalFiles(MonitoringSuite):
    @pytest.fixture
    def store_uri(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'meta.db'}"

    @pytest.fixture
    def artifact_uri(self, tmp_path: Path) -> str:
        return str(tmp_path / "objects")

    @pytest.fixture
    def log_uri(self, tmp_path: Path) -> str:
        return str(tmp_path / "logs")
