"""Monitoring on the real backends: PostgreSQL metadata, and S3 for artifacts and logs."""

from __future__ import annotations

import pytest

from tests.suites.backends import OnPostgres, OnS3
from tests.suites.monitoring import MonitoringSuite


@pytest.mark.postgres
class TestMonitoringOnPostgres(OnPostgres, MonitoringSuite):
    pass


@pytest.mark.s3
class TestMonitoringOnS3(OnS3, MonitoringSuite):
    pass
