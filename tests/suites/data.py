"""Data versioning as users rely on it, written once; run on every metadata/artifact backend.

A subclass provides the ``store_uri`` and ``artifact_uri`` fixtures.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

import conveyor as cv
from conveyor.core.errors import (
    ConflictError,
    IntegrityError,
    InvalidArgumentError,
    NotFoundError,
)
from conveyor.store.records import ObjectRef
from conveyor.store.workspace import Workspace


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def read_tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def forget_objects(ws: Workspace) -> None:
    """Delete every stored object, as on a machine that has only the records."""
    for digest, _ in list(ws.artifacts.objects()):
        ws.artifacts.delete(digest)


def tamper(ws: Workspace, content: bytes) -> None:
    """Overwrite the stored object of ``content`` with other bytes, as a bad disk would."""
    digest = hashlib.sha256(content).hexdigest()
    ws.artifacts.backend.put_bytes(f"{digest[:2]}/{digest[2:]}", b"tampered bytes")


def customers(n: int = 60) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": range(n),
            "plan": ["basic", "pro", "basic"] * (n // 3),
            "spend": [float(i % 17) * 2.5 for i in range(n)],
        }
    )


class RecordedProgress:
    """A progress reporter that records what it was told, sizes left out."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    def start(self, description: str, files: int, size: int) -> None:
        self.calls.append(("start", description, files))

    def advance(self, files: int, size: int) -> None:
        self.calls.append(("advance", files))

    def stop(self) -> None:
        self.calls.append(("stop",))


def customers_schema() -> object:
    from conveyor.data.validation import infer_schema

    return infer_schema(customers())


class DataSuite:
    @pytest.fixture
    def ws(self, store_uri: str, artifact_uri: str, tmp_path: Path):  # type: ignore[no-untyped-def]
        ws = cv.init(
            tmp_path / "project",
            project="data",
            store_uri=store_uri,
            artifact_uri=artifact_uri,
            actor="ada",
        )
        yield ws
        ws.close()

    # -- files and folders -----------------------------------------------------------------

    def test_add_modify_add_then_checkout_v1_gives_the_original_bytes(
        self, ws: Workspace, tmp_path: Path
    ) -> None:
        src = tmp_path / "raw"
        original = {"a.csv": b"id\n1\n", "nested/b.bin": os.urandom(3000), "empty.txt": b""}
        write_tree(src, original)
        v1 = cv.data.add("raw", src)
        (src / "a.csv").write_bytes(b"id\n1\n2\n")
        (src / "nested" / "c.bin").write_bytes(b"new")
        v2 = cv.data.add("raw", src)
        assert (v1.version, v2.version) == (1, 2)
        assert v1.digest != v2.digest
        out = cv.data.checkout("raw@1", tmp_path / "restored")
        assert read_tree(out) == original

    def test_a_version_records_files_size_and_digest(self, ws: Workspace, tmp_path: Path) -> None:
        write_tree(tmp_path / "d", {"x.bin": b"abc", "y/z.bin": b"hello"})
        v = cv.data.add("d", tmp_path / "d", description="first cut")
        assert (v.name, v.version, v.files, v.size, v.kind) == ("d", 1, 2, 8, "files")
        assert v.description == "first cut"
        assert len(v.digest) == 64
        assert v.rows is None

    def test_adding_unchanged_content_returns_the_latest_version(
        self, ws: Workspace, tmp_path: Path
    ) -> None:
        write_tree(tmp_path / "d", {"x.bin": b"abc"})
        first = cv.data.add("d", tmp_path / "d")
        again = cv.data.add("d", tmp_path / "d")
        assert again.id == first.id
        assert [v.version for v in cv.data.versions("d")] == [1]

    def test_an_object_lost_from_the_store_is_stored_again_by_the_next_add(
        self, ws: Workspace, tmp_path: Path
    ) -> None:
        write_tree(tmp_path / "d", {"keep.bin": b"kept bytes", "edit.bin": b"1"})
        an_hour_ago = time.time() - 3600  # old enough for the hash cache to keep the digests
        for path in (tmp_path / "d").iterdir():
            os.utime(path, (an_hour_ago, an_hour_ago))
        cv.data.add("d", tmp_path / "d")
        kept = hashlib.sha256(b"kept bytes").hexdigest()
        ws.artifacts.delete(kept)
        (tmp_path / "d" / "edit.bin").write_bytes(b"2")
        second = cv.data.add("d", tmp_path / "d")
        assert (second.version, ws.artifacts.get(kept)) == (2, b"kept bytes")
        ws.artifacts.delete(kept)  # and when nothing changed: the same version, repaired
        assert cv.data.add("d", tmp_path / "d").id == second.id
        assert read_tree(cv.data.checkout("d@2", tmp_path / "out"))["keep.bin"] == b"kept bytes"

    def test_unchanged_files_are_stored_once_across_versions(
        self, ws: Workspace, tmp_path: Path
    ) -> None:
        write_tree(tmp_path / "d", {f"f{i}.bin": os.urandom(1000) for i in range(5)})
        cv.data.add("d", tmp_path / "d")
        before = sum(1 for _ in ws.artifacts.objects())
        (tmp_path / "d" / "f0.bin").write_bytes(b"changed")
        cv.data.add("d", tmp_path / "d")
        # one new file object and one new manifest
        assert sum(1 for _ in ws.artifacts.objects()) == before + 2

    def test_a_large_file_is_stored_in_chunks_and_a_small_change_stores_one(
        self, ws: Workspace, tmp_path: Path
    ) -> None:
        from datetime import timedelta

        from conveyor.data.records import CHUNK_BYTES, CHUNKED_ABOVE

        big = tmp_path / "d" / "big.bin"
        big.parent.mkdir()
        original = os.urandom(CHUNKED_ABOVE + 3 * 2**20)  # 9 chunks, the last 3 MiB
        big.write_bytes(original)
        (tmp_path / "d" / "small.txt").write_bytes(b"small")
        v1 = cv.data.add("d", tmp_path / "d")
        objects = {d for d, _ in ws.artifacts.objects()}
        chunk_digests = [
            hashlib.sha256(original[i : i + CHUNK_BYTES]).hexdigest()
            for i in range(0, len(original), CHUNK_BYTES)
        ]
        assert len(chunk_digests) == 9
        assert set(chunk_digests) <= objects
        assert hashlib.sha256(original).hexdigest() not in objects  # no whole copy
        changed = bytearray(original)
        changed[5 * CHUNK_BYTES + 100 : 5 * CHUNK_BYTES + 4196] = os.urandom(4096)
        big.write_bytes(bytes(changed))
        v2 = cv.data.add("d", tmp_path / "d")
        assert (v2.version, v2.size) == (2, v1.size)
        # one new chunk and one new manifest
        assert len({d for d, _ in ws.artifacts.objects()} - objects) == 2
        assert [old.path for old, _ in cv.data.diff("d@1", "d@2").changed] == ["big.bin"]
        ws.gc(grace=timedelta(0))
        assert read_tree(cv.data.checkout("d@1", tmp_path / "one"))["big.bin"] == original
        assert read_tree(cv.data.checkout("d@2", tmp_path / "two"))["big.bin"] == changed

    def test_a_single_file_can_be_versioned(self, ws: Workspace, tmp_path: Path) -> None:
        (tmp_path / "model-input.bin").write_bytes(b"12345")
        v = cv.data.add("blob", tmp_path / "model-input.bin")
        assert v.files == 1
        path = cv.data.path("blob@1")
        assert (path / "model-input.bin").read_bytes() == b"12345"

    def test_refs_by_number_latest_and_digest_prefix(self, ws: Workspace, tmp_path: Path) -> None:
        write_tree(tmp_path / "d", {"x": b"1"})
        v1 = cv.data.add("d", tmp_path / "d")
        write_tree(tmp_path / "d", {"x": b"2"})
        v2 = cv.data.add("d", tmp_path / "d")
        assert cv.data.get("d@1").id == v1.id
        assert cv.data.get("d@latest").id == v2.id
        assert cv.data.get("d").id == v2.id
        assert cv.data.get(f"d@{v1.digest[:10]}").id == v1.id
        assert cv.data.get(f"d@{v1.digest[:10].upper()}").id == v1.id  # as copied from a UI

    def test_a_digest_prefix_of_digits_only_is_still_a_digest(
        self, ws: Workspace, tmp_path: Path
    ) -> None:
        from conveyor.data.records import FileEntry, Manifest

        def digest_of(content: bytes) -> str:
            entry = FileEntry("x", len(content), hashlib.sha256(content).hexdigest())
            return hashlib.sha256(Manifest.of([entry]).encode()).hexdigest()

        # Content whose version's digest starts with 8 decimal digits (one in 40 does).
        content = next(c for i in range(10_000) if digest_of(c := str(i).encode())[:8].isdigit())
        write_tree(tmp_path / "d", {"x": content})
        version = cv.data.add("d", tmp_path / "d")
        assert version.digest == digest_of(content)
        assert cv.data.get(f"d@{version.digest[:8]}").id == version.id  # not "no version"
        assert cv.data.get("d@1").id == version.id  # a short number is still a number

    def test_a_missing_version_names_the_latest_ones(self, ws: Workspace, tmp_path: Path) -> None:
        write_tree(tmp_path / "d", {"x": b"1"})
        cv.data.add("d", tmp_path / "d")
        with pytest.raises(NotFoundError, match=r"no version '7'; latest versions: d@1"):
            cv.data.get("d@7")
        # Past what the store's version column holds (PostgreSQL's int4, SQLite's int64):
        # still no such version, not the database refusing the query.
        for number in ("2147483648", "99999999999999999999"):
            with pytest.raises(NotFoundError, match=rf"no version '{number}'; latest versions"):
                cv.data.get(f"d@{number}")
        with pytest.raises(InvalidArgumentError, match="put a version number"):
            cv.data.get("d@²")  # a digit to str.isdigit, not to int()
        with pytest.raises(NotFoundError, match="no dataset named 'nope'; datasets: d"):
            cv.data.get("nope@1")

    def test_bad_names_and_paths_are_refused_clearly(self, ws: Workspace, tmp_path: Path) -> None:
        with pytest.raises(InvalidArgumentError, match="not a valid dataset name"):
            cv.data.add("../escape", tmp_path)
        with pytest.raises(NotFoundError, match="no such file or folder"):
            cv.data.add("d", tmp_path / "missing")
        (tmp_path / "empty").mkdir()
        with pytest.raises(InvalidArgumentError, match="holds no files"):
            cv.data.add("d", tmp_path / "empty")
        with pytest.raises(InvalidArgumentError, match="Expected a path"):
            cv.data.add("d", 123)  # type: ignore[arg-type]
        with pytest.raises(NotFoundError, match="no such file"):
            cv.data.validate(str(tmp_path / "typo.csv"))
        cv.data.add("orders.csv", customers())  # a dataset named like a file still validates
        assert cv.data.validate("orders.csv", cv.data.infer_schema("orders.csv@1")).passed
        assert [d.name for d in cv.data.datasets()] == ["orders.csv"]

    def test_path_gives_read_only_files_and_mends_an_edited_folder(
        self, ws: Workspace, tmp_path: Path
    ) -> None:
        import stat

        write_tree(tmp_path / "d", {"labels.csv": b"a,b\n1,2\n", "img/x.png": b"png"})
        cv.data.add("d", tmp_path / "d")
        folder = cv.data.path("d@1")
        labels = folder / "labels.csv"
        assert not labels.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
        labels.chmod(0o644)  # as a user (or root, whom the mode does not stop) might
        labels.write_bytes(b"edited in place")
        (folder / "img" / "x.png").unlink()
        assert read_tree(cv.data.path("d@1")) == {"img/x.png": b"png", "labels.csv": b"a,b\n1,2\n"}
        (folder / "img" / "y.png").write_bytes(b"written by a script, not in d@1")
        assert read_tree(cv.data.path("d@1")) == {"img/x.png": b"png", "labels.csv": b"a,b\n1,2\n"}

    def test_checkout_refuses_a_non_empty_folder_unless_forced(
        self, ws: Workspace, tmp_path: Path
    ) -> None:
        write_tree(tmp_path / "d", {"x.txt": b"version one"})
        cv.data.add("d", tmp_path / "d")
        dest = tmp_path / "work"
        write_tree(dest, {"mine.txt": b"keep me"})
        with pytest.raises(ConflictError, match="not empty"):
            cv.data.checkout("d@1", dest)
        assert read_tree(dest) == {"mine.txt": b"keep me"}
        cv.data.checkout("d@1", dest, force=True)
        assert read_tree(dest) == {"x.txt": b"version one"}

    def test_a_forced_checkout_keeps_hidden_entries_and_spares_the_project(
        self, ws: Workspace, tmp_path: Path
    ) -> None:
        work = tmp_path / "work"
        write_tree(work, {"a.txt": b"one", "sub/b.txt": b"two", ".git/HEAD": b"ref"})
        cv.data.add("all", work)  # hidden entries are not part of it
        write_tree(work, {"a.txt": b"edited", "new.txt": b"not in the version"})
        cv.data.checkout("all@1", work / "sub" / "..", force=True)  # '..' as typed
        visible = {k: v for k, v in read_tree(work).items() if not k.startswith(".")}
        assert visible == {"a.txt": b"one", "sub/b.txt": b"two"}
        assert (work / ".git" / "HEAD").read_bytes() == b"ref"
        assert not [p for p in work.iterdir() if p.name.endswith((".old", ".part"))]
        root = tmp_path / "project"  # the workspace's folder
        write_tree(root, {"notes.txt": b"mine"})
        for dest in (root, tmp_path):  # the project's folder, or one that holds it
            with pytest.raises(ConflictError, match="this project"):
                cv.data.checkout("all@1", dest, force=True)
        assert (root / "notes.txt").read_bytes() == b"mine"
        with pytest.raises(ConflictError, match="inside this project's stores"):
            cv.data.checkout("all@1", root / ".conveyor" / "out")
        assert cv.data.get("all@1").files == 2

    def test_a_checkout_into_an_existing_folder_writes_only_inside_it(
        self, ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # A mounted volume is a file system of its own (no rename crosses into it), and the
        # folder that holds it may not be writable: nothing may be written beside it.
        from conveyor.data.service import DataService

        write_tree(tmp_path / "d", {"a.txt": b"one", "sub/b.txt": b"two"})
        cv.data.add("d", tmp_path / "d")
        volume = tmp_path / "outer" / "volume"
        volume.mkdir(parents=True)
        written = []
        materialize = DataService._materialize

        def spy(self: DataService, version: object, folder: Path, *args: object) -> None:
            written.append(folder)
            materialize(self, version, folder, *args)  # type: ignore[arg-type]

        monkeypatch.setattr(DataService, "_materialize", spy)
        cv.data.checkout("d@1", volume)
        write_tree(volume, {"a.txt": b"edited", "mine.txt": b"replaced"})
        cv.data.checkout("d@1", volume, force=True)
        assert all(folder.parent == volume for folder in written), written
        assert read_tree(volume) == {"a.txt": b"one", "sub/b.txt": b"two"}
        assert os.listdir(tmp_path / "outer") == ["volume"]

    def test_a_checkout_under_a_file_is_refused_naming_the_file(
        self, ws: Workspace, tmp_path: Path
    ) -> None:
        write_tree(tmp_path / "d", {"a.txt": b"one"})
        cv.data.add("d", tmp_path / "d")
        with pytest.raises(ConflictError, match=r"a\.txt is a file, not a folder"):
            cv.data.checkout("d@1", tmp_path / "d" / "a.txt" / "out")
        assert read_tree(tmp_path / "d") == {"a.txt": b"one"}

    def test_a_version_with_a_hidden_top_entry_never_replaces_a_kept_one(
        self, ws: Workspace, tmp_path: Path
    ) -> None:
        write_tree(tmp_path / "src", {".env": b"A=1"})
        cv.data.add("env", tmp_path / "src" / ".env")  # a single hidden file, added directly
        dest = tmp_path / "dest"
        write_tree(dest, {".env": b"mine", "x.txt": b"x"})
        with pytest.raises(ConflictError, match="hidden entry"):
            cv.data.checkout("env@1", dest, force=True)
        assert read_tree(dest) == {".env": b"mine", "x.txt": b"x"}  # nothing was moved

    def test_checkout_detects_a_corrupted_object_and_names_the_file(
        self, ws: Workspace, tmp_path: Path
    ) -> None:
        write_tree(tmp_path / "d", {"good.txt": b"fine", "bad.txt": b"original bytes"})
        cv.data.add("d", tmp_path / "d")
        tamper(ws, b"original bytes")
        with pytest.raises(IntegrityError, match=r"bad\.txt in d@1 is corrupted"):
            cv.data.checkout("d@1", tmp_path / "out")
        assert not (tmp_path / "out").exists()

    def test_adding_the_original_files_again_repairs_a_corrupted_copy(
        self, ws: Workspace, tmp_path: Path
    ) -> None:
        write_tree(tmp_path / "d", {"good.txt": b"fine", "bad.txt": b"original bytes"})
        cv.data.add("d", tmp_path / "d")
        tamper(ws, b"original bytes")
        # A local store drops the damaged copy; a bucket (shared) keeps it for pull --verify.
        local = getattr(ws.artifacts.backend, "is_local", False)
        hint = "damaged copy was removed" if local else r"pull d@1 --verify"
        with pytest.raises(IntegrityError, match=hint):
            cv.data.checkout("d@1", tmp_path / "out")
        if not local:
            digest = hashlib.sha256(b"original bytes").hexdigest()
            ws.artifacts.delete(digest)  # what a bucket's owner does after the error
        assert cv.data.add("d", tmp_path / "d").ref == "d@1"  # the same content: no new version
        assert read_tree(cv.data.checkout("d@1", tmp_path / "out"))["bad.txt"] == b"original bytes"

    def test_a_file_lost_from_the_store_says_how_to_store_it_again(
        self, ws: Workspace, tmp_path: Path
    ) -> None:
        write_tree(tmp_path / "d", {"a.txt": b"one"})
        cv.data.add("d", tmp_path / "d")
        cv.data.add("t", customers())
        forget_objects(ws)
        with pytest.raises(NotFoundError, match=r"pull\('t@1'\)\), or add the same table again"):
            cv.data.load("t@1")
        with pytest.raises(NotFoundError, match=r"or add the original files again \(conveyor"):
            cv.data.checkout("d@1", tmp_path / "out")

    def test_gc_keeps_the_files_of_every_version(self, ws: Workspace, tmp_path: Path) -> None:
        from datetime import timedelta

        write_tree(tmp_path / "d", {"x": b"one", "y": b"two"})
        cv.data.add("d", tmp_path / "d")
        report = ws.gc(grace=timedelta(0))
        assert report.deleted == []
        assert read_tree(cv.data.checkout("d@1", tmp_path / "o")) == {"x": b"one", "y": b"two"}

    def test_gc_keeps_a_file_that_only_an_earlier_version_has(
        self, ws: Workspace, tmp_path: Path
    ) -> None:
        from datetime import timedelta

        write_tree(tmp_path / "d", {"x": b"one", "gone": b"only in the first version"})
        cv.data.add("d", tmp_path / "d")
        (tmp_path / "d" / "gone").unlink()
        (tmp_path / "d" / "x").write_bytes(b"two")
        cv.data.add("d", tmp_path / "d")
        assert ws.gc(grace=timedelta(0)).deleted == []
        first = read_tree(cv.data.checkout("d@1", tmp_path / "o"))
        assert first == {"x": b"one", "gone": b"only in the first version"}

    def test_a_version_that_changes_one_file_records_one_new_object(
        self, ws: Workspace, tmp_path: Path
    ) -> None:
        from conveyor.store.metadata.schema import artifact_links

        def links() -> int:
            with ws.metadata.read() as conn:
                return len(conn.execute(sa.select(artifact_links.c.id)).all())

        write_tree(tmp_path / "d", {f"f{i}.bin": os.urandom(100) for i in range(20)})
        cv.data.add("d", tmp_path / "d")
        before = links()
        (tmp_path / "d" / "f3.bin").write_bytes(b"changed")
        cv.data.add("d", tmp_path / "d")
        assert links() == before + 2  # the changed file's object and the new manifest

    def test_a_dataset_that_holds_many_objects_holds_only_the_new_ones(self, ws: Workspace) -> None:
        """A dataset that already holds more objects than a read of all its links is allowed
        to fetch (a long history) finds what it holds by digest instead."""
        from conveyor.store import catalog

        holder = ObjectRef("dataset", "held-many")
        digests = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(1_100)]
        with ws.metadata.transaction() as uow:
            first = catalog.hold_many(uow, None, holder, {d: (1, "x.bin") for d in digests})
        fresh = hashlib.sha256(b"new").hexdigest()
        with ws.metadata.transaction() as uow:
            again = catalog.hold_many(
                uow, None, holder, {digests[7]: (1, "x.bin"), fresh: (1, "x.bin")}
            )
        assert (first, again) == (1_100, 1)

    def test_a_version_whose_files_were_linked_one_by_one_still_works(
        self, ws: Workspace, tmp_path: Path
    ) -> None:
        """Versions recorded before datasets held their objects linked each file to the
        version (``files/<path>``); gc keeps those, and reads and new versions work."""
        from datetime import timedelta

        from conveyor.store.metadata.schema import artifact_links

        write_tree(tmp_path / "d", {"a.txt": b"alpha", "b.txt": b"beta"})
        v1 = cv.data.add("d", tmp_path / "d")
        with ws.metadata.transaction() as uow:  # rewrite v1's links the old way
            held = uow.conn.execute(
                sa.select(artifact_links).where(artifact_links.c.owner_kind == "dataset")
            ).all()
            uow.conn.execute(
                artifact_links.delete().where(artifact_links.c.owner_kind == "dataset")
            )
            by_digest = {
                hashlib.sha256(b).hexdigest(): n
                for n, b in [("a.txt", b"alpha"), ("b.txt", b"beta")]
            }
            uow.conn.execute(
                artifact_links.insert(),
                [
                    {
                        "id": f"old{i}",
                        "digest": row.digest,
                        "owner_kind": "dataset_version",
                        "owner_id": v1.id,
                        "name": "files/" + by_digest[row.digest],
                        "created_at": row.created_at,
                    }
                    for i, row in enumerate(held)
                ],
            )
        assert ws.gc(grace=timedelta(0)).deleted == []
        (tmp_path / "d" / "b.txt").write_bytes(b"beta, edited")
        cv.data.add("d", tmp_path / "d")
        assert ws.gc(grace=timedelta(0)).deleted == []
        assert read_tree(cv.data.checkout("d@1", tmp_path / "one")) == {
            "a.txt": b"alpha",
            "b.txt": b"beta",
        }
        assert read_tree(cv.data.checkout("d@2", tmp_path / "two"))["b.txt"] == b"beta, edited"

    def test_a_version_finds_its_files_by_name_for_a_server(
        self, ws: Workspace, tmp_path: Path
    ) -> None:
        from conveyor.data.service import data_service

        svc = data_service(ws)
        write_tree(tmp_path / "d", {"a/x.txt": b"ex", "y.bin": b"why"})
        v = cv.data.add("d", tmp_path / "d")
        link = svc.file_artifact(v.id, "files/a/x.txt")
        assert link is not None
        assert (link.digest, link.size, link.media_type) == (
            hashlib.sha256(b"ex").hexdigest(),
            2,
            "text/plain",
        )
        assert svc.file_artifact(v.id, "files/a/missing.txt") is None
        assert svc.file_artifact(v.id, "manifest.json") is None  # a link, not a file
        assert svc.file_artifact("0" * 26, "files/a/x.txt") is None

    def test_add_returns_the_version_as_get_reads_it(self, ws: Workspace, tmp_path: Path) -> None:
        # Unsorted column names and large floats: JSONB (PostgreSQL) reorders and rewrites.
        frame = pd.DataFrame({"zeta": [1.6e18, 1.2345678901234567e20, None], "a": ["x", "y", "x"]})
        table = cv.data.add("t", frame, description="a table")
        assert table == cv.data.get("t@1")
        write_tree(tmp_path / "d", {"x.bin": b"1"})
        files = cv.data.add("d", tmp_path / "d")
        assert files == cv.data.get("d@1")

    def test_diff_lists_added_removed_and_changed_files(
        self, ws: Workspace, tmp_path: Path
    ) -> None:
        write_tree(tmp_path / "d", {"keep": b"k", "change": b"1", "drop": b"d"})
        cv.data.add("d", tmp_path / "d")
        (tmp_path / "d" / "drop").unlink()
        (tmp_path / "d" / "change").write_bytes(b"2")
        (tmp_path / "d" / "new").write_bytes(b"n")
        cv.data.add("d", tmp_path / "d")
        d = cv.data.diff("d@1", "d@2")
        assert [f.path for f in d.added] == ["new"]
        assert [f.path for f in d.removed] == ["drop"]
        assert [old.path for old, _ in d.changed] == ["change"]
        assert d.unchanged == 1

    # -- tables ----------------------------------------------------------------------------

    def test_a_dataframe_round_trips_with_rows_schema_and_profile(self, ws: Workspace) -> None:
        df = customers()
        v = cv.data.add("customers", df, description="weekly extract")
        assert (v.kind, v.rows) == ("table", 60)
        assert set(v.schema or {}) == {"id", "plan", "spend"}
        spend = (v.profile or {})["columns"]["spend"]
        assert spend["min"] == 0.0
        assert spend["max"] == 40.0
        assert spend["null_rate"] == 0.0
        assert sum(spend["histogram"]["counts"]) == 60
        assert (v.profile or {})["columns"]["plan"]["top"][0] == ["basic", 40]
        pd.testing.assert_frame_equal(cv.data.load("customers@1"), df, check_dtype=False)

    def test_a_tables_columns_keep_its_order_when_read_back(self, ws: Workspace) -> None:
        """Shows, cards and monitors list a version's columns as its table has them: on
        every store, though PostgreSQL keeps a JSON object's keys in an order of its own."""
        order = ["zeta", "id", "a_much_longer_name", "b", "middle"]
        frame = pd.DataFrame({name: [i, i + 1] for i, name in enumerate(order)})
        v = cv.data.add("ordered", frame)
        for got in (v, cv.data.get("ordered@1"), cv.data.versions("ordered")[0]):
            assert list(got.schema or {}) == order
            assert list((got.profile or {})["columns"]) == order

    def test_a_table_of_64_bit_ids_keeps_them_exact(self, ws: Workspace) -> None:
        """Ids above 2**53 have no exact float: the version is added, and its profile's
        bounds and distinct count are those of the integers, not of their rounding."""
        ids = [2**60 + 1, 2**60 + 2, 2**60 + 3, 7]  # the first three round to one float
        v = cv.data.add("events", pd.DataFrame({"id": ids}))
        profile = (v.profile or {})["columns"]["id"]
        assert (profile["min"], profile["max"], profile["distinct"]) == (7, 2**60 + 3, 4)
        assert cv.data.get("events@1").profile == v.profile  # as stored, on every backend
        assert cv.data.load("events@1")["id"].tolist() == ids

    def test_a_csv_file_is_a_table_version(self, ws: Workspace, tmp_path: Path) -> None:
        customers().to_csv(tmp_path / "c.csv", index=False)
        v = cv.data.add("c", tmp_path / "c.csv")
        assert (v.kind, v.table_format, v.rows) == ("table", "csv", 60)
        assert list(cv.data.load("c").columns) == ["id", "plan", "spend"]

    def test_a_table_with_categorical_columns_is_profiled_by_its_values(
        self, ws: Workspace
    ) -> None:
        frame = pd.DataFrame({"plan": pd.Categorical(["free", "pro", "free"] * 5), "n": range(15)})
        v = cv.data.add("cats", frame)
        plan = (v.profile or {})["columns"]["plan"]
        assert (plan["distinct"], plan["top"][0]) == (2, ["free", 10])
        schema = cv.data.infer_schema("cats@1")
        assert cv.data.validate("cats@1", schema).passed
        assert cv.data.load("cats@1")["plan"].tolist() == frame["plan"].tolist()

    def test_a_table_file_written_to_during_its_add_is_described_as_stored(
        self, ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from conveyor.data import service

        write_tree(tmp_path / "t", {"t.csv": b"a,b\n1,x\n2,y\n"})
        stored = service.ingest

        def then_rewritten(*args: object, **kwargs: object) -> object:
            result = stored(*args, **kwargs)  # type: ignore[arg-type]
            (tmp_path / "t" / "t.csv").write_bytes(b"a,b,c\n" + b"1,2,3\n" * 50)  # a writer
            return result

        monkeypatch.setattr(service, "ingest", then_rewritten)
        version = cv.data.add("t", tmp_path / "t")
        assert (version.rows, list(version.columns or {})) == (2, ["a", "b"])
        assert version.profile["rows"] == 2
        assert cv.data.load("t@1").shape == (2, 2)  # what the version holds

    def test_a_csv_file_with_a_repeated_column_name_is_versioned_as_a_file(
        self, ws: Workspace, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        write_tree(tmp_path, {"export.csv": b"id,,\n1,a,b\n"})  # blank names, twice
        version = cv.data.add("export", tmp_path / "export.csv")
        assert (version.kind, version.rows) == ("files", None)
        assert "more than one column named ''" in caplog.text
        with pytest.raises(InvalidArgumentError, match="more than one column named ''"):
            cv.data.validate(str(tmp_path / "export.csv"), customers_schema())

    def test_csv_files_that_are_not_one_table_are_versioned_as_files(
        self, ws: Workspace, tmp_path: Path
    ) -> None:
        write_tree(tmp_path / "d", {"a.csv": b"x,y\n1,2\n", "b.csv": b"x,y\n1,abc\n"})
        v = cv.data.add("mixed", tmp_path / "d")
        assert (v.kind, v.files, v.rows) == ("files", 2, None)
        with pytest.raises(InvalidArgumentError, match="do not share one schema, so they are not"):
            cv.data.load("mixed@1")
        write_tree(tmp_path / "e", {"broken.csv": b"x,y\n1,2,3\n"})  # a row too long
        assert cv.data.add("broken", tmp_path / "e").kind == "files"

    def test_table_files_whose_numbers_differ_in_type_are_one_table_of_floats(
        self, ws: Workspace, tmp_path: Path
    ) -> None:
        write_tree(tmp_path / "d", {"a.csv": b"x,y\n1,2\n", "b.csv": b"x,y\n1.5,3\n"})
        v = cv.data.add("nums", tmp_path / "d")
        assert (v.kind, v.rows, v.schema["x"]) == ("table", 2, "double")
        assert cv.data.load("nums@1")["x"].tolist() == [1.0, 1.5]

    def test_table_files_with_no_column_in_common_are_not_one_table(
        self, ws: Workspace, tmp_path: Path
    ) -> None:
        write_tree(tmp_path / "d", {"a.csv": b"a\n1\n", "b.csv": b"zz\nq\n"})
        v = cv.data.add("apart", tmp_path / "d")
        assert (v.kind, v.rows) == ("files", None)
        with pytest.raises(
            InvalidArgumentError, match=r"b\.csv of apart@1 has no column in common"
        ):
            cv.data.load("apart@1")

    def test_load_refuses_files_that_are_not_tables_and_lists_the_formats(
        self, ws: Workspace, tmp_path: Path
    ) -> None:
        write_tree(tmp_path / "d", {"image.png": b"\x89PNG"})
        cv.data.add("d", tmp_path / "d")
        with pytest.raises(InvalidArgumentError, match=r"not a table.*\.csv.*\.parquet"):
            cv.data.load("d@1")

    def test_diff_reports_schema_rows_and_statistic_shifts(self, ws: Workspace) -> None:
        df = customers()
        cv.data.add("c", df)
        changed = df.assign(spend=df.spend * 2, region="eu").drop(columns=["plan"]).head(30)
        cv.data.add("c", changed)
        d = cv.data.diff("c@1", "c@2")
        assert d.columns_added == {"region": d.columns_added["region"]}
        assert set(d.columns_removed) == {"plan"}
        assert d.rows == (60, 30)
        assert any(s.column == "spend" and s.statistic == "max" for s in d.shifts)

    # -- schemas and validation -------------------------------------------------------------

    def test_an_inferred_schema_passes_its_reference_and_catches_bad_data(
        self, ws: Workspace
    ) -> None:
        cv.data.add("c", customers())
        schema = cv.data.infer_schema("c@1")
        assert cv.data.validate("c@1").passed
        bad = customers()
        bad.loc[3, "plan"] = "enterprise"
        bad.loc[5, "spend"] = -1.0
        bad.loc[7, "id"] = 8  # duplicates id 8
        report = cv.data.validate(bad, schema)
        assert not report.passed
        failed = {(f.column, f.failures) for f in report.failures}
        assert ("plan", 1) in failed
        assert ("spend", 1) in failed
        assert any(f.column == "id" for f in report.failures)
        assert {r["_row"] for r in report.failing_rows} >= {3, 5}
        with pytest.raises(cv.DataValidationError, match="failed") as caught:
            report.raise_for_failures()
        assert caught.value.report is report

    def test_a_failure_shows_each_failing_value_once(self, ws: Workspace) -> None:
        cv.data.add("c", customers())
        schema = cv.data.infer_schema("c@1")
        bad = customers()
        bad.loc[::3, "plan"] = "gold"  # 20 rows, one value
        bad.loc[4, "plan"] = "platinum"
        (failure,) = cv.data.validate(bad, schema).failures
        assert (failure.column, failure.failures) == ("plan", 21)
        assert failure.examples == ["gold", "platinum"]

    def test_table_checks_cover_row_count_and_duplicate_rows(self, ws: Workspace) -> None:
        cv.data.add("c", customers())
        schema = cv.data.infer_schema("c@1")
        too_few = cv.data.validate(customers().head(5), schema)
        table_checks = [(f.check, f.examples) for f in too_few.failures if f.column is None]
        assert ("row_count(min_rows=30, max_rows=120)", ["5 rows"]) in table_checks
        dup = pd.concat([customers(), customers().head(1)], ignore_index=True)
        report = cv.data.validate(dup, schema)
        assert any(f.check == "no duplicate rows" for f in report.failures)

    def test_a_schema_is_saved_with_the_version_and_survives_yaml(self, ws: Workspace) -> None:
        from conveyor.data.validation import schema_from_yaml, schema_to_yaml

        cv.data.add("c", customers())
        inferred = cv.data.infer_schema("c@1")
        saved = cv.data.schema("c@1")
        assert saved is not None
        assert schema_to_yaml(saved) == schema_to_yaml(inferred)
        edited = schema_to_yaml(saved).replace("- basic\n", "")
        cv.data.set_schema("c@1", edited)
        assert not cv.data.validate("c@1").passed  # 'basic' is no longer allowed
        assert schema_from_yaml(edited).columns["plan"] is not None

    def test_inferring_again_keeps_an_edited_schema_unless_told_to_replace_it(
        self, ws: Workspace
    ) -> None:
        from conveyor.data.validation import schema_from_yaml, schema_to_yaml

        cv.data.add("c", customers())
        inferred = schema_to_yaml(cv.data.infer_schema("c@1"))
        assert schema_to_yaml(cv.data.infer_schema("c@1")) == inferred  # the same: no conflict
        edited = inferred.replace("- basic\n", "")
        cv.data.set_schema("c@1", edited)
        with pytest.raises(ConflictError, match="set or edited"):
            cv.data.infer_schema("c@1")
        assert schema_to_yaml(cv.data.schema("c@1")) == schema_to_yaml(schema_from_yaml(edited))
        cv.data.infer_schema("c@1", overwrite=True)
        assert schema_to_yaml(cv.data.schema("c@1")) == inferred

    def test_schema_text_that_names_a_file_is_not_read_from_that_file(
        self, ws: Workspace, tmp_path: Path
    ) -> None:
        from conveyor.data.validation import schema_to_yaml

        # A team server saves the schema text an editor sends: it must stay text.
        cv.data.add("c", customers())
        on_disk = tmp_path / "server-side.yaml"
        on_disk.write_text(schema_to_yaml(cv.data.infer_schema("c@1", save=False)))
        with pytest.raises(InvalidArgumentError, match="as a pandera schema"):
            cv.data.set_schema("c@1", str(on_disk))
        assert cv.data.schema("c@1") is None

    def test_the_report_is_json_serializable(self, ws: Workspace) -> None:
        import json

        cv.data.add("c", customers())
        schema = cv.data.infer_schema("c@1")
        bad = customers()
        bad.loc[0, "spend"] = float("nan")
        report = cv.data.validate(bad, schema)
        text = json.dumps(report.to_dict())
        assert json.loads(text)["passed"] is False

    def test_column_names_that_are_not_strings_are_stored_as_strings_with_a_warning(
        self, ws: Workspace
    ) -> None:
        import warnings

        with pytest.warns(UserWarning, match=r"column names 0, 1 are not strings") as caught:
            version = cv.data.add("ints", pd.DataFrame({0: range(12), 1: range(12)}))
        assert caught[0].filename == __file__  # it points at the add, not into conveyor
        assert version.columns == {"0": "int64", "1": "int64"}
        assert list(version.profile["columns"]) == ["0", "1"]
        assert list(cv.data.load("ints@1").columns) == ["0", "1"]  # as the profile names them
        cv.data.infer_schema("ints@1")
        assert cv.data.validate("ints@1").passed  # the version matches its own schema
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # string names: nothing to say
            cv.data.add("named", pd.DataFrame({"a": [1], "b": [2]}))

    def test_version_ids_resolve_to_refs(self, ws: Workspace) -> None:
        from conveyor.data.service import data_service

        first = cv.data.add("c", customers())
        second = cv.data.add("c", customers().head(50))
        found = data_service(ws).refs([second.id, first.id, "01NOSUCHVERSION", first.id])
        assert found == {first.id: "c@1", second.id: "c@2"}
        assert data_service(ws).refs([]) == {}

    def test_the_report_says_where_the_schema_came_from(
        self, ws: Workspace, tmp_path: Path
    ) -> None:
        from conveyor.data.validation import schema_to_yaml

        cv.data.add("c", customers())
        schema = cv.data.infer_schema("c@1")
        cv.data.add("c", customers().head(50))  # no schema of its own: c@1's checks it
        assert cv.data.validate("c@2").schema_source == "c@1"
        (tmp_path / "s.yaml").write_text(schema_to_yaml(schema))
        assert cv.data.validate("c@2", tmp_path / "s.yaml").schema_source == str(
            tmp_path / "s.yaml"
        )
        assert cv.data.validate("c@2", schema).schema_source is None  # an object: no source

    def test_validate_takes_a_schema_as_its_yaml_text(self, ws: Workspace) -> None:
        from conveyor.data.validation import schema_to_yaml

        cv.data.add("c", customers())
        text = schema_to_yaml(cv.data.infer_schema("c@1", save=False))  # as set_schema takes
        assert cv.data.validate("c@1", text).passed
        bad = customers().assign(plan="gold")
        assert [f.column for f in cv.data.validate(bad, text).failures] == ["plan"]
        with pytest.raises(InvalidArgumentError, match="the schema text"):
            cv.data.validate("c@1", "columns:\n  plan: [unclosed\n")

    def test_validate_a_version_without_a_schema_says_how_to_get_one(self, ws: Workspace) -> None:
        cv.data.add("c", customers())
        with pytest.raises(NotFoundError, match="No schema is saved"):
            cv.data.validate("c@1")

    def test_columns_of_dates_bytes_and_decimals_pass_their_own_schema(self, ws: Workspace) -> None:
        import datetime as dt
        from decimal import Decimal

        n = 40  # few distinct values: text of this kind would get an allowed-values check
        frame = pd.DataFrame(
            {
                "day": [dt.date(2024, 1, 1 + i % 3) for i in range(n)],
                "at": [dt.time(i % 2, 30) for i in range(n)],
                "raw": [b"x", b"y"] * (n // 2),
                "price": [Decimal("1.50"), Decimal("2.25")] * (n // 2),
                "plan": ["basic", "pro"] * (n // 2),
            }
        )
        cv.data.add("typed", frame)
        schema = cv.data.infer_schema("typed@1")
        assert cv.data.validate("typed@1").passed
        assert cv.data.validate(frame, schema).passed
        assert [c.name for c in schema.columns["plan"].checks] == ["isin"]  # text still is
        from conveyor.data.validation import infer_schema

        codes = pd.DataFrame({"code": pd.Categorical([1, 2] * 20)})  # categories of numbers
        assert cv.data.validate(codes, infer_schema(codes)).passed

    def test_a_table_of_durations_is_profiled_and_one_parquet_cannot_hold_is_refused(
        self, ws: Workspace
    ) -> None:
        import pyarrow as pa

        waits = pa.table({"wait": pa.array([5, None, 90, 30], pa.duration("s"))})
        version = cv.data.add("waits", waits)
        profile = version.profile["columns"]["wait"]
        assert (profile["min"], profile["max"]) == ("0:00:05", "0:01:30")
        assert profile["null_rate"] == 0.25
        cv.data.infer_schema("waits@1")
        assert cv.data.validate("waits@1").passed
        spans = pa.table({"span": pa.array([(1, 2, 3)], pa.month_day_nano_interval())})
        with pytest.raises(InvalidArgumentError, match="its column 'span'"):
            cv.data.add("spans", spans)
        with pytest.raises(NotFoundError):
            cv.data.get("spans")  # nothing recorded

    def test_validate_takes_a_dataset_named_like_a_folder_here(
        self, ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        write_tree(tmp_path / "orders", {"orders.csv": b"id,plan\n1,a\n2,b\n"})
        monkeypatch.chdir(tmp_path)  # as `conveyor data add orders orders/` leaves it
        cv.data.add("orders", "orders")
        cv.data.infer_schema("orders@1")
        assert cv.data.validate("orders").data == "orders@1"
        with pytest.raises(InvalidArgumentError, match="not a table file, nor a dataset version"):
            cv.data.validate(str(tmp_path))  # a folder, and no dataset of that name

    def test_a_table_with_list_and_dict_columns_gets_a_schema(self, ws: Workspace) -> None:
        frame = pd.DataFrame({"tags": [["a", "b"], ["c"]], "meta": [{"k": 1}, {"k": 2}]})
        cv.data.add("nested", frame.assign(n=[1, 2]))
        schema = cv.data.infer_schema("nested@1")
        assert list(schema.columns) == ["tags", "meta", "n"]
        assert cv.data.validate("nested@1").passed

    def test_a_frame_that_is_not_one_table_is_refused_clearly(self, ws: Workspace) -> None:
        with pytest.raises(InvalidArgumentError, match="more than one column named 'a'"):
            cv.data.add("t", pd.DataFrame([[1, 2]], columns=["a", "a"]))
        with pytest.raises(InvalidArgumentError, match="cannot be stored as a table"):
            cv.data.add("t", pd.DataFrame({"mixed": [1, "x", 2.5]}))

    def test_a_schema_file_that_is_not_utf8_is_named(self, ws: Workspace, tmp_path: Path) -> None:
        cv.data.add("c", customers())
        bad = tmp_path / "binary.yaml"
        bad.write_bytes(b"\x00\xff\xfe")
        with pytest.raises(InvalidArgumentError, match=r"binary\.yaml is not UTF-8"):
            cv.data.validate("c@1", bad)

    def test_a_schema_file_that_does_not_parse_is_named(
        self, ws: Workspace, tmp_path: Path
    ) -> None:
        cv.data.add("c", customers())
        bad = tmp_path / "schema.yaml"
        bad.write_text("columns: [unclosed\n")
        with pytest.raises(InvalidArgumentError, match=r"schema\.yaml"):
            cv.data.validate("c@1", bad)

    # -- lineage ---------------------------------------------------------------------------

    def test_a_run_records_the_versions_it_used_and_produced(self, ws: Workspace) -> None:
        cv.data.add("train", customers())
        with cv.start_run(experiment="e") as run:
            cv.data.load("train@1")
            out = cv.data.add("scored", customers().head(9))
        cv.flush()
        up = ws.lineage(ObjectRef("run", run.id), direction="upstream")
        down = ws.lineage(ObjectRef("run", run.id), direction="downstream")
        assert [(e.src.kind, e.relation) for e in up.edges] == [("dataset_version", "used_by")]
        assert [(e.dst.id, e.relation) for e in down.edges] == [(out.id, "produced")]

    def test_a_run_that_adds_unchanged_data_did_not_produce_it(self, ws: Workspace) -> None:
        v = cv.data.add("train", customers())
        with cv.start_run(experiment="e") as run:
            cv.data.load("train@1")
            assert cv.data.add("train", customers()).id == v.id  # the same content
        cv.flush()
        down = ws.lineage(ObjectRef("run", run.id), direction="downstream")
        assert down.edges == []  # used it, and made nothing new: no cycle through it

    def test_outside_a_run_no_lineage_is_recorded(self, ws: Workspace) -> None:
        v = cv.data.add("train", customers())
        cv.data.load("train@1")
        graph = ws.lineage(ObjectRef("dataset_version", v.id), direction="downstream")
        assert graph.edges == []

    # -- remotes ---------------------------------------------------------------------------

    def test_push_copies_only_missing_objects_and_pull_restores_them(
        self, ws: Workspace, tmp_path: Path
    ) -> None:
        write_tree(tmp_path / "d", {"a": b"alpha", "b": b"beta"})
        cv.data.add("d", tmp_path / "d")
        remote = str(tmp_path / "remote-store")
        assert cv.data.push([], remote).copied == 0  # a list that came out empty: nothing
        first = cv.data.push(["d@1"], remote)
        assert first.copied == 3  # two files and the manifest
        assert cv.data.push(["d@1"], remote).copied == 0
        forget_objects(ws)
        with pytest.raises(NotFoundError, match=r"conveyor data pull d@1 \(from Python"):
            cv.data.checkout("d@1", tmp_path / "before-pull")  # that version, not everything
        pulled = cv.data.pull(["d"], remote)
        assert pulled.copied == 3
        assert read_tree(cv.data.checkout("d@1", tmp_path / "after")) == {
            "a": b"alpha",
            "b": b"beta",
        }

    def test_pull_with_verify_replaces_a_damaged_object(
        self, ws: Workspace, tmp_path: Path
    ) -> None:
        write_tree(tmp_path / "d", {"good.txt": b"fine", "bad.txt": b"original bytes"})
        cv.data.add("d", tmp_path / "d")
        remote = str(tmp_path / "remote-store")
        cv.data.push(["d@1"], remote)
        tamper(ws, b"original bytes")
        assert cv.data.pull(["d@1"], remote).repaired == 0  # without --verify: only what lacks
        from conveyor.data.service import data_service

        progress = RecordedProgress()
        pulled = data_service(ws).pull(["d@1"], remote, verify=True, progress=progress)
        assert (pulled.copied, pulled.repaired, pulled.present) == (0, 1, 2)
        # Reading every object held is shown too, not only the copy that follows it.
        assert progress.calls == [
            ("start", "Verifying", 3),
            *[("advance", 1)] * 3,
            ("start", "Copying", 1),
            ("advance", 1),
            ("stop",),
        ]
        assert read_tree(cv.data.checkout("d@1", tmp_path / "after")) == {
            "bad.txt": b"original bytes",
            "good.txt": b"fine",
        }

    def test_a_damaged_copy_on_the_remote_is_named_by_pull_and_replaced_by_push_verify(
        self, ws: Workspace, tmp_path: Path
    ) -> None:
        files = {"bad.txt": b"original bytes, the largest file: copied first"}
        files.update({f"good-{i}.txt": b"fine %d" % i for i in range(60)})
        write_tree(tmp_path / "d", files)
        cv.data.add("d", tmp_path / "d")
        remote_uri = str(tmp_path / "remote-store")
        cv.data.push(["d@1"], remote_uri)
        remote = cv.ArtifactStore(remote_uri)
        digest = hashlib.sha256(files["bad.txt"]).hexdigest()
        remote.backend.put_bytes(f"{digest[:2]}/{digest[2:]}", b"tampered bytes")
        forget_objects(ws)
        with pytest.raises(IntegrityError) as caught:
            cv.data.pull(["d@1"], remote_uri)
        # Where the damage is and how to mend it, not a plea to restore it "from a remote".
        assert f"{remote_uri} holds a damaged copy of object {digest}" in str(caught.value)
        assert "push --verify" in str(caught.value)
        assert not ws.artifacts.exists(digest)
        # The damaged object held back none of the others.
        assert len(list(ws.artifacts.objects())) == 61  # the file list and the good files
        write_tree(tmp_path / "d", files)
        cv.data.add("d", tmp_path / "d")  # the same files: stores the objects again
        assert cv.data.push(["d@1"], remote_uri).repaired == 0  # without verify: only what lacks
        pushed = cv.data.push(["d@1"], remote_uri, verify=True)
        assert (pushed.copied, pushed.repaired, pushed.present) == (0, 1, 61)
        forget_objects(ws)
        assert cv.data.pull(["d@1"], remote_uri).copied == 62
        assert read_tree(cv.data.checkout("d@1", tmp_path / "after")) == files
        manifest = cv.data.get("d@1").digest  # the file list, read before any file is copied
        remote.backend.put_bytes(f"{manifest[:2]}/{manifest[2:]}", b"tampered bytes")
        forget_objects(ws)
        with pytest.raises(IntegrityError, match="damaged copy of the file list of d@1"):
            cv.data.pull(["d@1"], remote_uri)

    def test_a_pull_of_everything_pulls_what_the_remote_has_and_names_the_rest(
        self, ws: Workspace, tmp_path: Path
    ) -> None:
        write_tree(tmp_path / "d", {"a": b"alpha"})
        cv.data.add("d", tmp_path / "d")
        remote = str(tmp_path / "remote-store")
        cv.data.push("d@1", remote)  # one reference, as a string
        write_tree(tmp_path / "e", {"b": b"never pushed"})
        cv.data.add("e", tmp_path / "e")
        forget_objects(ws)
        pulled = cv.data.pull(None, remote)
        assert (pulled.copied, pulled.missing) == (2, ("e@1",))
        assert read_tree(cv.data.checkout("d@1", tmp_path / "out")) == {"a": b"alpha"}
        with pytest.raises(NotFoundError, match="lacks files of e@1"):
            cv.data.pull(["e"], remote)

    def test_a_pull_from_a_folder_that_does_not_exist_says_so(
        self, ws: Workspace, tmp_path: Path
    ) -> None:
        write_tree(tmp_path / "d", {"a": b"alpha"})
        cv.data.add("d", tmp_path / "d")
        forget_objects(ws)
        typo = tmp_path / "remote-stor"
        for refs in (["d@1"], None):
            with pytest.raises(NotFoundError, match=f"no folder {typo}"):
                cv.data.pull(refs, str(typo))
        assert not typo.exists()

    def test_a_push_of_everything_pushes_what_this_store_has_and_names_the_rest(
        self, ws: Workspace, tmp_path: Path
    ) -> None:
        # Shared metadata: versions others added and pushed (d), or added and did not (f).
        write_tree(tmp_path / "d", {"a": b"pushed by a teammate"})
        cv.data.add("d", tmp_path / "d")
        write_tree(tmp_path / "f", {"b": b"never pushed by a teammate"})
        cv.data.add("f", tmp_path / "f")
        remote = str(tmp_path / "remote-store")
        cv.data.push("d", remote)
        forget_objects(ws)
        write_tree(tmp_path / "e", {"c": b"mine"})
        cv.data.add("e", tmp_path / "e")
        pushed = cv.data.push(None, remote)
        assert (pushed.copied, pushed.present, pushed.missing) == (2, 2, ("f@1",))
        assert cv.data.push(["d", "e"], remote).copied == 0
        with pytest.raises(NotFoundError, match="lacks files of f@1"):
            cv.data.push(["f"], remote)
        forget_objects(ws)
        cv.data.pull(["e"], remote)
        assert read_tree(cv.data.checkout("e@1", tmp_path / "out")) == {"c": b"mine"}

    def test_a_relative_remote_folder_is_relative_to_the_working_directory(
        self, ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        write_tree(tmp_path / "d", {"a": b"alpha"})
        cv.data.add("d", tmp_path / "d")
        elsewhere = tmp_path / "project" / "notebooks"  # a folder of the project, not its root
        elsewhere.mkdir(parents=True)
        monkeypatch.chdir(elsewhere)
        pushed = cv.data.push(None, "../backup")  # as checkout's and add's paths are
        assert pushed.destination == str(tmp_path / "project" / "backup")
        assert cv.data.push(None, str(tmp_path / "project" / "backup")).copied == 0
        # A scheme in capitals is the same scheme, not a folder named 'FILE:' here.
        shouted = cv.data.push(None, f"FILE://{tmp_path / 'upper'}")
        assert (shouted.destination, shouted.copied) == (f"file://{tmp_path / 'upper'}", 2)
        assert cv.data.push(None, str(tmp_path / "upper")).copied == 0
        assert not (elsewhere / "FILE:").exists()

    def test_pulling_one_version_brings_the_schema_that_checks_it(
        self, ws: Workspace, tmp_path: Path
    ) -> None:
        cv.data.add("c", customers())
        cv.data.infer_schema("c@1")  # saved with c@1; c@2 is checked with it
        cv.data.add("c", customers().head(50))
        remote = str(tmp_path / "remote-store")
        cv.data.push(None, remote)
        forget_objects(ws)
        cv.data.pull(["c@2"], remote)
        assert cv.data.validate("c@2").passed
        # A schema saved after the push is not on the remote: the pull still brings the files.
        cv.data.add("c", customers().head(40))
        cv.data.push(["c@3"], remote)
        cv.data.set_schema("c@1", "columns:\n  id:\n    dtype: int64\n")  # here only
        forget_objects(ws)
        assert cv.data.pull(["c@3"], remote).copied >= 2  # its manifest and file

    def test_push_without_a_remote_explains_how_to_set_one(
        self, ws: Workspace, tmp_path: Path
    ) -> None:
        cv.data.add("c", customers())
        with pytest.raises(InvalidArgumentError, match="remote_uri"):
            cv.data.push()
        a_file = tmp_path / "notes.txt"
        a_file.write_text("not a folder")
        for nowhere in ("s3://", str(a_file)):
            with pytest.raises(InvalidArgumentError, match=r"names no bucket|is a file"):
                cv.data.push(None, nowhere)
        if "://" not in ws.artifacts.uri:  # a local store: a remote inside it is refused
            for inside in (Path(ws.artifacts.uri) / "sub", f"file://{ws.artifacts.uri}"):
                with pytest.raises(InvalidArgumentError, match="own artifact store"):
                    cv.data.push(None, str(inside))
