"""The online-store contract on SQLite, the embedded default."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.features.online_stores import OnlineStore, SqliteOnlineStore
from tests.suites.online_stores import OnlineStoreContract


class TestSqliteOnlineStore(OnlineStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[OnlineStore]:
        store = SqliteOnlineStore(tmp_path / "online.db")
        yield store
        store.close()
