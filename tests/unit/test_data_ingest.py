"""Hashing and storing files: the stat cache, parallel ingest and the kernel-copy fast path."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from conveyor.core.errors import InvalidArgumentError
from conveyor.data.ingest import HashCache, ingest, scan
from conveyor.data.records import FileEntry, Manifest
from conveyor.store.artifacts.cas import ArtifactStore

OLD = time.time_ns() - 60_000_000_000  # a minute ago: outside the racy window


def make(root: Path, files: dict[str, bytes], *, age_ns: int = OLD) -> None:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, ns=(age_ns, age_ns))


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(str(tmp_path / "objects"))


def test_scan_lists_files_sorted_and_skips_hidden_entries(tmp_path: Path) -> None:
    make(tmp_path / "d", {"b.txt": b"b", "a/c.txt": b"c", ".git/x": b"x", ".DS_Store": b""})
    assert [f.name for f in scan(tmp_path / "d")] == ["a/c.txt", "b.txt"]


def test_ingest_stores_every_file_under_its_sha256(tmp_path: Path, store: ArtifactStore) -> None:
    files = {f"f{i}.bin": os.urandom(10_000 + i) for i in range(20)}
    make(tmp_path / "d", files)
    result = ingest(scan(tmp_path / "d"), store, HashCache(tmp_path / "cache.db"), workers=4)
    for entry in result.entries:
        data = files[entry.path]
        assert entry.digest == hashlib.sha256(data).hexdigest()
        assert store.get(entry.digest) == data
    assert result.hashed_files == 20


def test_a_re_ingest_reads_only_the_changed_file(tmp_path: Path, store: ArtifactStore) -> None:
    make(tmp_path / "d", {f"f{i}.bin": os.urandom(5000) for i in range(10)})
    cache = HashCache(tmp_path / "cache.db")
    ingest(scan(tmp_path / "d"), store, cache)
    make(tmp_path / "d", {"f3.bin": b"changed"})
    again = ingest(scan(tmp_path / "d"), store, cache)
    assert (again.hashed_files, again.cached_files) == (1, 9)
    assert dict((e.path, e.digest) for e in again.entries)["f3.bin"] == (
        hashlib.sha256(b"changed").hexdigest()
    )


def test_recently_modified_files_are_not_trusted_from_the_cache(
    tmp_path: Path, store: ArtifactStore
) -> None:
    make(tmp_path / "d", {"fresh.bin": b"1"}, age_ns=time.time_ns())
    cache = HashCache(tmp_path / "cache.db")
    ingest(scan(tmp_path / "d"), store, cache)
    assert ingest(scan(tmp_path / "d"), store, cache).hashed_files == 1


def test_a_cache_hit_whose_object_is_gone_is_stored_again(
    tmp_path: Path, store: ArtifactStore
) -> None:
    make(tmp_path / "d", {"x.bin": b"payload"})
    cache = HashCache(tmp_path / "cache.db")
    first = ingest(scan(tmp_path / "d"), store, cache)
    store.delete(first.entries[0].digest)
    again = ingest(scan(tmp_path / "d"), store, cache)
    assert again.hashed_files == 1
    assert store.get(again.entries[0].digest) == b"payload"


def test_large_files_take_the_pipelined_copy_and_keep_their_digest(
    tmp_path: Path, store: ArtifactStore
) -> None:
    data = os.urandom(20 * 1024 * 1024 + 123)
    make(tmp_path, {"big.bin": data})
    put = store.put_file(tmp_path / "big.bin", durable=False)
    assert put.digest == hashlib.sha256(data).hexdigest()
    assert put.size == len(data)
    assert store.get(put.digest) == data
    durable = store.put_file(tmp_path / "big.bin")  # the one-pass streaming path
    assert durable.digest == put.digest


def test_a_manifest_refuses_duplicate_paths_and_foreign_bytes() -> None:
    entry = FileEntry("a", 1, "a" * 64)
    with pytest.raises(InvalidArgumentError, match="appears twice"):
        Manifest.of([entry, entry])
    with pytest.raises(InvalidArgumentError, match="not a Conveyor manifest"):
        Manifest.decode(b'{"format": "other"}')
    with pytest.raises(InvalidArgumentError, match="not a Conveyor manifest"):
        Manifest.decode(b'{"format": "conveyor.manifest/1", "files": [["../x", 1, "zz"]]}')
