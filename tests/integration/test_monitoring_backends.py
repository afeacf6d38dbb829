"""Monitors on PostgreSQL metadata, and on S3 for artifacts and logs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.suites.monitoring import MonitoringSuite


@pytest.mark.postgres
class TestMonitoringOnPostgres(MonitoringSuite):
    @pytest.fixture
    def store_uri(self, postgres_uri: str) -> str:
        return postgres_uri

    @pytest.fixture
    def artifact_uri(self, tmp_path: Path) -> str:
        return str(tmp_path / "objects")

    @pytest.fixture
    def log_uri(self, tmp_path: Path) -> str:
        return str(tmp_path / "logs")


@pytest.mark.s3
class TestMonitoringOnS3(MonitoringSuite):
    @pytest.fixture
    def store_uri(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'meta.db'}"

    @pytest.fixture
    def artifact_uri(self, s3_bucket: str) -> str:
        return f"s3://{s3_bucket}/objects"

    @pytest.fixture
    def log_uri(self, s3_bucket: str) -> str:
        return f"s3://{s3_bucket}/logs"
