"""Data versioning on the embedded default: SQLite metadata and a local artifact store."""

from __future__ import annotations

from pathlib import Path

import pytest

import conveyor as cv
from conveyor.core.errors import ConflictError
from conveyor.store.workspace import Workspace
from tests.suites.data import DataSuite, read_tree, write_tree


class TestDataOnSqliteAndLocalFiles(DataSuite):
    @pytest.fixture
    def store_uri(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'meta.db'}"

    @pytest.fixture
    def artifact_uri(self, tmp_path: Path) -> str:
        return str(tmp_path / "objects")

    def test_a_forced_checkout_never_removes_the_stores_it_would_replace(
        self, ws: Workspace, tmp_path: Path
    ) -> None:
        # The metadata database (meta.db) and the objects folder are in tmp_path, visible.
        write_tree(tmp_path / "d", {"x.txt": b"x"})
        cv.data.add("d", tmp_path / "d")
        with pytest.raises(ConflictError, match=r"would remove .*(meta\.db|objects)"):
            cv.data.checkout("d@1", tmp_path, force=True)
        assert (tmp_path / "meta.db").is_file()
        assert read_tree(tmp_path / "d") == {"x.txt": b"x"}  # nothing was replaced
        assert cv.data.get("d@1").files == 1

    def test_a_checkout_into_a_link_to_an_empty_folder_fills_that_folder(
        self, ws: Workspace, tmp_path: Path
    ) -> None:
        write_tree(tmp_path / "d", {"x.txt": b"x"})
        cv.data.add("d", tmp_path / "d")
        (tmp_path / "real").mkdir()
        (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
        cv.data.checkout("d@1", tmp_path / "link")
        assert (tmp_path / "link").is_symlink()
        assert read_tree(tmp_path / "real") == {"x.txt": b"x"}
