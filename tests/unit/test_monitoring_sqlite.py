"""Monitoring on the embedded default: SQLite metadata, local artifacts, local logs."""

from __future__ import annotations

from tests.suites.backends import OnSqliteAndLocalFiles
from tests.suites.monitoring import MonitoringSuite


class TestMonitoringOnSqliteAndLocalFiles(OnSqliteAndLocalFiles, MonitoringSuite):
    pass
