"""Tracking on SQLite, the embedded default."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.suites.tracking import TrackingRobustnessSuite


class TestTrackingOnSqlite(TrackingRobustnessSuite):
    @pytest.fixture
    def store_uri(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'conveyor.db'}"
