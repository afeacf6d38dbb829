"""Monitoring on the embedded default: SQLite metadata, local artifacts, local logs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

import conveyor as cv
from tests.suites.backends import OnSqliteAndLocalFiles
from tests.suites.monitoring import MonitoringSuite


class TestMonitoringOnSqliteAndLocalFiles(OnSqliteAndLocalFiles, MonitoringSuite):
    pass


def test_projects_sharing_a_log_store_never_read_each_others_deployments(tmp_path: Path) -> None:
    a = cv.Workspace.from_settings(tmp_path, project="alpha")
    b = cv.Workspace.from_settings(tmp_path, project="beta")
    try:
        labels = pd.DataFrame({"prediction_id": ["p1", "p2"], "label": [1, 0]})
        assert cv.monitoring.log_labels(labels, deployment="prod", workspace=a) == 2
        assert len(cv.serving.read_feedback("prod", workspace=a)) == 2
        assert cv.serving.read_feedback("prod", workspace=b).empty  # its own "prod": nothing
        assert a.log_uri.endswith("/project=alpha")
    finally:
        a.close()
        b.close()
