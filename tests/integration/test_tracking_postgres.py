"""Tracking on a real PostgreSQL server: the same suite as on SQLite."""

from __future__ import annotations

import pytest

from tests.suites.tracking import TrackingRobustnessSuite

pytestmark = pytest.mark.postgres


class TestTrackingOnPostgres(TrackingRobustnessSuite):
    @pytest.fixture
    def store_uri(self, postgres_uri: str) -> str:
        return postgres_uri
