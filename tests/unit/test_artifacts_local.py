"""The artifact store contract on a local folder and on memory://, plus local atomicity."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conveyor.store.artifacts.cas import ArtifactStore
from conveyor.testing.contracts import ArtifactStoreContract


class TestLocalArtifactStore(ArtifactStoreContract):
    @pytest.fixture
    def artifact_store(self, tmp_path: Path) -> ArtifactStore:
        return ArtifactStore(str(tmp_path / "objects"))


class TestLocalArtifactStoreWithoutDirFd(ArtifactStoreContract):
    """The local store where ``os.access`` takes no folder descriptor (Windows)."""

    @pytest.fixture
    def artifact_store(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ArtifactStore:
        from conveyor.store.artifacts import local

        monkeypatch.setattr(local, "_ACCESS_AT", False)
        return ArtifactStore(str(tmp_path / "objects"))


class TestFileUriArtifactStore(ArtifactStoreContract):
    @pytest.fixture
    def artifact_store(self, tmp_path: Path) -> ArtifactStore:
        return ArtifactStore((tmp_path / "objects").as_uri())


class TestMemoryArtifactStore(ArtifactStoreContract):
    @pytest.fixture
    def artifact_store(self) -> ArtifactStore:
        return ArtifactStore(f"memory://conveyor-tests/{uuid.uuid4().hex}")


_WRITER = """
import sys
from conveyor.store.artifacts.cas import ArtifactStore
ArtifactStore(sys.argv[1]).put(sys.stdin.buffer)
print("finished", flush=True)
"""


def test_a_killed_writer_leaves_no_object_under_its_final_name(tmp_path: Path) -> None:
    root = tmp_path / "objects"
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert writer.stdin is not None
    writer.stdin.write(os.urandom(4 * 1024 * 1024))
    writer.stdin.flush()
    staging = root / ".tmp"
    deadline = time.monotonic() + 30
    while not (staging.is_dir() and any(p.stat().st_size > 0 for p in staging.iterdir())):
        assert time.monotonic() < deadline, "the writer never started writing"
        time.sleep(0.02)
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=10)
    writer.stdin.close()

    store = ArtifactStore(str(root))
    assert list(store.objects()) == []
    assert len(list(staging.iterdir())) == 1  # the unfinished temporary file
    assert store.cleanup_staging(datetime.now(UTC) + timedelta(seconds=1)) == 1
    put = store.put(b"the store still works")
    assert store.get(put.digest) == b"the store still works"


def test_storing_known_content_again_leaves_no_temporary_files(tmp_path: Path) -> None:
    src = tmp_path / "same.bin"
    src.write_bytes(b"same bytes" * 1000)
    store = ArtifactStore(str(tmp_path / "objects"))
    first, second = store.put(src), store.put(src)
    assert (first.created, second.created) == (True, False)
    assert list((tmp_path / "objects" / ".tmp").iterdir()) == []
    assert [d for d, _ in store.objects()] == [first.digest]


def test_a_partial_read_is_verified_when_the_stream_closes(tmp_path: Path) -> None:
    import pickle

    from conveyor.core.errors import IntegrityError
    from conveyor.store.artifacts.cas import key_of

    store = ArtifactStore(str(tmp_path / "objects"))
    put = store.put(pickle.dumps({"ok": 1}))
    store.backend.put_bytes(key_of(put.digest), pickle.dumps({"evil": 1}) + b"trailing")
    with pytest.raises(IntegrityError, match=put.digest), store.open(put.digest) as f:
        pickle.load(f)  # stops before the end; closing the stream checks the rest


def test_a_store_whose_path_runs_through_a_file_says_so(tmp_path: Path) -> None:
    from conveyor.core.errors import InvalidArgumentError

    (tmp_path / "notes.txt").write_text("a file, not a folder")
    store = ArtifactStore(str(tmp_path / "notes.txt" / "objects"))
    assert store.exists_many(["ab" * 32]) == set()  # nothing stored there, as exists() says
    with pytest.raises(InvalidArgumentError, match="Not a directory") as caught:
        store.put_bytes(b"where to?")
    assert str(tmp_path / "notes.txt" / "objects") in str(caught.value)
