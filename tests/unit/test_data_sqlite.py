"""Data versioning on the embedded default: SQLite metadata and a local artifact store."""

from __future__ import annotations

import os
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

    def test_a_forced_checkout_stopped_by_ctrl_c_midway_puts_the_folder_back(
        self, ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        import conveyor.data.service as service

        write_tree(tmp_path / "d", {"a.txt": b"new a", "b.txt": b"new b"})
        cv.data.add("d", tmp_path / "d")
        write_tree(tmp_path / "out", {"a.txt": b"old a", "b.txt": b"old b"})
        real_rename = os.rename

        def interrupted_moving_in_b(src: str, dst: str) -> None:
            # The old entries are aside by then (and a.txt may be in place).
            if Path(dst) == tmp_path / "out" / "b.txt" and ".part" in str(src):
                raise KeyboardInterrupt
            real_rename(src, dst)

        monkeypatch.setattr(service.os, "rename", interrupted_moving_in_b)
        with pytest.raises(KeyboardInterrupt):
            cv.data.checkout("d@1", tmp_path / "out", force=True)
        monkeypatch.undo()
        assert read_tree(tmp_path / "out") == {"a.txt": b"old a", "b.txt": b"old b"}

    def test_a_forced_checkout_stopped_removing_the_old_files_leaves_them_to_the_next_one(
        self, ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        import shutil

        import conveyor.data.service as service

        write_tree(tmp_path / "d", {"a.txt": b"new a"})
        cv.data.add("d", tmp_path / "d")
        write_tree(tmp_path / "out", {"a.txt": b"old a", "b.txt": b"old b"})
        calls: list[str] = []
        real_rmtree = shutil.rmtree

        def interrupted_at_first(path: str, ignore_errors: bool = False) -> None:
            calls.append(str(path))
            if len(calls) == 1:  # the version is in place; its old files go first
                raise KeyboardInterrupt
            real_rmtree(path, ignore_errors=ignore_errors)

        monkeypatch.setattr(service.shutil, "rmtree", interrupted_at_first)
        with pytest.raises(KeyboardInterrupt):
            cv.data.checkout("d@1", tmp_path / "out", force=True)
        monkeypatch.undo()
        visible = [n for n in os.listdir(tmp_path / "out") if not n.startswith(".")]
        assert visible == ["a.txt"]  # the whole version (the old files hidden, going)
        monkeypatch.setattr(service, "alive", lambda pid: False)  # that process is gone
        cv.data.checkout("d@1", tmp_path / "out", force=True)
        assert sorted(os.listdir(tmp_path / "out")) == ["a.txt"]  # the old files too

    def test_a_ctrl_c_whose_rollback_fails_says_so_and_where_the_old_files_are(
        self, ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        import conveyor.data.service as service

        write_tree(tmp_path / "d", {"a.txt": b"new a", "b.txt": b"new b"})
        cv.data.add("d", tmp_path / "d")
        write_tree(tmp_path / "out", {"a.txt": b"old a", "b.txt": b"old b"})
        real_rename = os.rename

        def interrupted_then_stuck(src: str, dst: str) -> None:
            if Path(dst) == tmp_path / "out" / "b.txt" and ".part" in str(src):
                raise KeyboardInterrupt  # moving the version in
            if Path(dst) == tmp_path / "out" / "a.txt" and ".old" in str(src):
                raise PermissionError(13, "Permission denied")  # putting the old a.txt back
            real_rename(src, dst)

        monkeypatch.setattr(service.os, "rename", interrupted_then_stuck)
        with pytest.raises(ConflictError) as failed:
            cv.data.checkout("d@1", tmp_path / "out", force=True)
        monkeypatch.undo()
        kept = next((tmp_path / "out").glob(".out.*.old"))
        assert failed.value.message == (
            f"Checking out into {tmp_path / 'out'} was interrupted, and 1 of its entries could "
            f"not be put back: they are in {kept}."
        )
        assert (kept / "a.txt").read_bytes() == b"old a"
