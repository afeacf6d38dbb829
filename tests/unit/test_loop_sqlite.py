"""The closed loop on the embedded default: SQLite metadata, local artifacts, local logs."""

from __future__ import annotations

from tests.suites.backends import OnSqliteAndLocalFiles
from tests.suites.loop import LoopSuite


class TestLoopOnSqliteAndLocalFiles(OnSqliteAndLocalFiles, LoopSuite):
    pass
