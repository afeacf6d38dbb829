"""An object store's SDK errors become the store's errors, saying what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.core.errors import InvalidArgumentError, PermissionDeniedError
from conveyor.store.artifacts.remote import FsspecBackend


def test_an_s3_store_without_credentials_says_which_to_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("s3fs", reason="the S3 store needs conveyor-mlops[s3]")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    backend = FsspecBackend("s3://bucket/prefix")
    with pytest.raises(PermissionDeniedError, match="has no credentials") as caught:
        backend.exists("ab/cdef")
    assert "AWS_ACCESS_KEY_ID" in str(caught.value)


@pytest.mark.parametrize(
    "uri", ["s3://bucket/prefix?endpoint_url=http://127.0.0.1:9000", "memory://tests/p#frag"]
)
def test_options_after_a_store_uri_are_refused_not_taken_as_keys(uri: str) -> None:
    with pytest.raises(InvalidArgumentError, match="followed by options") as caught:
        FsspecBackend(uri)
    assert "127.0.0.1" not in str(caught.value)  # an option's value may be a secret
    assert uri.split("://")[0] + "://" in str(caught.value)


def test_a_remote_store_stages_files_in_a_folder_only_this_user_can_enter() -> None:
    import os
    import stat
    import tempfile

    from conveyor.store.artifacts.cas import ArtifactStore

    store = ArtifactStore("memory://staging-test/p")
    staging = store.backend.staging_dir()
    assert staging.parent == Path(tempfile.gettempdir())  # not the shared folder itself
    info = staging.stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode) & 0o077) == (os.getuid(), 0)
    assert store.put_bytes(b"staged").size == 6
    assert list(staging.iterdir()) == []  # nothing left behind


def test_a_forked_process_removes_its_staging_folder_when_it_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import multiprocessing
    import tempfile

    from conveyor.store.artifacts.cas import ArtifactStore

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    def stage() -> None:  # a pipeline worker's life: it ends with os._exit
        import io

        ArtifactStore("memory://staging-fork/p").put_stream(io.BytesIO(b"from a child"))

    child = multiprocessing.get_context("fork").Process(target=stage)
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert list(tmp_path.glob("conveyor-staging-*")) == []


def test_threads_that_first_use_a_store_together_make_one_filesystem(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A transfer's first existence checks run on many threads at once; each making its own
    filesystem (and S3 client) cost seconds before a push or pull copied anything."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import fsspec.core

    threads = 8
    made: list[object] = []
    everyone_in = threading.Event()
    real = fsspec.core.url_to_fs

    def counting(*args: object, **kwargs: object) -> object:
        made.append(args)
        if len(made) == threads:
            everyone_in.set()
        # Hold the first caller until every thread has asked, or long enough to be sure no
        # other one will: without one filesystem per store, all of them get in here.
        everyone_in.wait(0.3)
        return real(*args, **kwargs)

    monkeypatch.setattr(fsspec.core, "url_to_fs", counting)
    backend = FsspecBackend("memory://one-filesystem/p")
    with ThreadPoolExecutor(threads) as pool:
        found = list(pool.map(backend.exists, [f"ab/{i}" for i in range(threads)]))
    assert found == [False] * threads
    assert len(made) == 1


def test_the_staging_folder_of_a_killed_process_is_removed_by_the_next_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A push killed by SIGTERM (a cancelled CI job) leaves its partial uploads behind."""
    import os
    import tempfile
    import time

    from conveyor.store.artifacts import remote
    from conveyor.store.artifacts.cas import ArtifactStore

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(remote, "_staging", [])
    two_hours_ago = time.time() - 7200

    def left(name: str, at: float = two_hours_ago) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "upload.part").write_bytes(b"half an object")
        for path in (folder / "upload.part", folder):
            os.utime(path, (at, at))
        return folder

    killed = left("conveyor-staging-999999999-x1")  # beyond any pid: its process is gone
    just_killed = left("conveyor-staging-999999998-x2", at=time.time())
    running = left(f"conveyor-staging-{os.getppid()}-x3")
    unrelated = left("something-else-999999999-x4")
    staging = ArtifactStore("memory://sweep-test/p").backend.staging_dir()
    assert staging.name.startswith(f"conveyor-staging-{os.getpid()}-")
    assert not killed.exists()
    assert [f.exists() for f in (just_killed, running, unrelated)] == [True, True, True]


def test_a_remote_store_can_be_handed_to_another_process() -> None:
    """A store in a spawned worker's arguments (or a Ray task's) is pickled."""
    import pickle

    from conveyor.store.artifacts.cas import ArtifactStore

    store = ArtifactStore("memory://pickled-store/p")
    put = store.put_bytes(b"kept")  # the filesystem made, as a store in use has it
    copy = pickle.loads(pickle.dumps(store))
    assert copy.get(put.digest) == b"kept"


def test_a_staging_folder_removed_under_a_live_process_is_made_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another PID namespace's process sharing the temporary folder, or a cleaner of old
    files, may remove it while this process lives on (a server idle for hours)."""
    import io
    import shutil
    import tempfile

    from conveyor.store.artifacts import remote
    from conveyor.store.artifacts.cas import ArtifactStore

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(remote, "_staging", [])
    store = ArtifactStore("memory://staging-removed/p")
    shutil.rmtree(store.backend.staging_dir())
    assert store.put_stream(io.BytesIO(b"staged again")).size == 12
    assert store.backend.staging_dir().is_dir()
