"""The metadata store contract on SQLite, the embedded default."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.store.metadata.store import MetadataStore
from conveyor.testing.contracts import MetadataStoreContract


class TestSqliteMetadataStore(MetadataStoreContract):
    @pytest.fixture
    def store_uri(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'nested' / 'conveyor.db'}"


def test_sqlite_store_uses_wal_and_enforces_foreign_keys(tmp_path: Path) -> None:
    with MetadataStore(f"sqlite:///{tmp_path / 'c.db'}") as store, store.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_in_memory_sqlite_store_works_for_tests() -> None:
    with MetadataStore("sqlite://") as store:
        assert store.ensure_project("p").name == "p"
