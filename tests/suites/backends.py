"""The backend fixtures a suite runs on: mix one of these in with the suite.

Each provides ``store_uri``, ``artifact_uri`` and ``log_uri``.
"""

from __future__ import annotations

from pathlib import Path

import pytest


class OnSqliteAndLocalFiles:
    @pytest.fixture
    def store_uri(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'meta.db'}"

    @pytest.fixture
    def artifact_uri(self, tmp_path: Path) -> str:
        return str(tmp_path / "objects")

    @pytest.fixture
    def log_uri(self, tmp_path: Path) -> str:
        return str(tmp_path / "logs")


class OnPostgres(OnSqliteAndLocalFiles):
    """PostgreSQL metadata; local artifacts and logs."""

    @pytest.fixture
    def store_uri(self, postgres_uri: str) -> str:
        return postgres_uri


class OnS3(OnSqliteAndLocalFiles):
    """SQLite metadata; artifacts and logs on S3 (moto's server)."""

    @pytest.fixture
    def artifact_uri(self, s3_bucket: str) -> str:
        return f"s3://{s3_bucket}/objects"

    @pytest.fixture
    def log_uri(self, s3_bucket: str) -> str:
        return f"s3://{s3_bucket}/logs"
