"""Serving on the embedded default: SQLite metadata, local artifacts, local logs."""

from __future__ import annotations

from tests.suites.backends import OnSqliteAndLocalFiles
from tests.suites.serving import ServingSuite


class TestServingOnSqliteAndLocalFiles(OnSqliteAndLocalFiles, ServingSuite):
    pass
