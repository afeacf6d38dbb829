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


def test_the_known_revisions_are_the_migration_scripts_in_order() -> None:
    import re

    from conveyor.store.metadata import migrate

    scripts = Path(migrate.__file__).parent / "migrations" / "versions"
    chain: dict[str, str | None] = {}
    for script in scripts.glob("[0-9]*.py"):
        text = script.read_text(encoding="utf-8")
        revision = re.search(r'^revision[^=]*= "(\w+)"', text, re.M)
        down = re.search(r'^down_revision[^=]*= (?:"(\w+)"|None)', text, re.M)
        assert revision, f"{script.name} names no revision"
        assert down, f"{script.name} names no down_revision"
        chain[revision.group(1)] = down.group(1)
    ordered = [r for r in chain if chain[r] is None]
    while len(ordered) < len(chain):
        ordered.append(next(r for r, d in chain.items() if d == ordered[-1]))
    assert tuple(ordered) == migrate.REVISIONS, "append each new script's revision to REVISIONS"
