"""Hashing and storing files: the stat cache, parallel ingest and the kernel-copy fast path."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from pathlib import Path

import pytest

from conveyor.core.errors import ConflictError, InvalidArgumentError, NotFoundError
from conveyor.data.ingest import HashCache, LocalFile, ingest, scan
from conveyor.data.records import (
    CHUNK_BYTES,
    CHUNKED_ABOVE,
    FileEntry,
    Manifest,
    chunk_count,
    chunked_digest,
)
from conveyor.store.artifacts import cas
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


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("new\nline.txt", "control character"),
        ("a\\b.txt", "backslash"),
        (os.fsdecode(b"lat\xe9.txt"), "not valid UTF-8"),
        ("a:b.txt", "Windows drive"),
        (" ", "blank"),
    ],
)
def test_scan_refuses_a_name_a_version_cannot_give_back(
    tmp_path: Path, name: str, problem: str
) -> None:
    make(tmp_path / "d", {"ok.txt": b"ok", "sub/x:y.txt": b"fine inside", name: b"x"})
    with pytest.raises(InvalidArgumentError, match=problem):
        scan(tmp_path / "d")
    with pytest.raises(InvalidArgumentError, match=problem):
        scan(tmp_path / "d" / name)  # the file alone


def test_scan_takes_names_that_only_look_suspect(tmp_path: Path) -> None:
    make(tmp_path / "d", {"sub/x:y.txt": b"1", "a b/ c.txt": b"2"})
    assert [f.name for f in scan(tmp_path / "d")] == ["a b/ c.txt", "sub/x:y.txt"]


def test_scan_follows_links_to_files_and_skips_links_that_lead_nowhere(tmp_path: Path) -> None:
    make(tmp_path / "d", {"a.txt": b"a"})
    (tmp_path / "d" / "to-a").symlink_to("a.txt")
    (tmp_path / "d" / "broken").symlink_to("missing.txt")
    (tmp_path / "d" / "loop1").symlink_to("loop2")  # ELOOP when followed
    (tmp_path / "d" / "loop2").symlink_to("loop1")
    assert [f.name for f in scan(tmp_path / "d")] == ["a.txt", "to-a"]
    with pytest.raises(InvalidArgumentError, match="Too many levels of symbolic links"):
        scan(tmp_path / "d" / "loop1")  # named: said, not skipped


def test_a_damaged_hash_cache_is_made_again(
    tmp_path: Path, store: ArtifactStore, caplog: pytest.LogCaptureFixture
) -> None:
    make(tmp_path / "d", {"a.txt": b"alpha"})
    cache_file = tmp_path / "hashes.db"
    cache_file.write_bytes(b"garbage, not a database" * 100)
    result = ingest(scan(tmp_path / "d"), store, HashCache(cache_file))
    assert result.entries[0].digest == hashlib.sha256(b"alpha").hexdigest()
    assert "is damaged" in caplog.text
    again = ingest(scan(tmp_path / "d"), store, HashCache(cache_file))
    assert again.cached_files == 1  # the new cache works


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


def test_a_small_file_whose_content_is_stored_is_not_written_again(
    tmp_path: Path, store: ArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    make(tmp_path, {"a.bin": b"same bytes", "b.bin": b"same bytes"})
    moved: list[str] = []
    put = store.backend.put_file
    monkeypatch.setattr(
        store.backend, "put_file", lambda key, *a, **k: moved.append(key) or put(key, *a, **k)
    )
    first = store.put_file(tmp_path / "a.bin", durable=False)
    again = store.put_file(tmp_path / "b.bin", durable=False)
    assert (first.created, again.created) == (True, False)
    assert again.digest == first.digest
    assert len(moved) == 1  # the second file was hashed, never written
    assert list(store.backend.staging_dir().iterdir()) == []


def test_a_small_file_is_stored_as_the_bytes_that_were_hashed(
    tmp_path: Path, store: ArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A write through a shared mmap need not change the file's stat: whatever the file holds
    # after it was read, the object holds the bytes its digest names.
    make(tmp_path, {"a.bin": b"original bytes"})
    reuse = store._reuse

    def rewrite_then_reuse(key: str) -> bool:  # after the hash, before anything is written
        with open(tmp_path / "a.bin", "r+b") as f:
            f.write(b"REWRITTEN")
        return reuse(key)

    monkeypatch.setattr(store, "_reuse", rewrite_then_reuse)
    monkeypatch.setattr(cas, "_changed", lambda before, after: False)  # the stat shows nothing
    stored = store.put_file(tmp_path / "a.bin", durable=False)
    assert stored.digest == hashlib.sha256(b"original bytes").hexdigest()
    assert store.get(stored.digest) == b"original bytes"


@pytest.mark.parametrize("kind", ["folder", "fifo", "missing"])
def test_storing_anything_but_a_regular_file_is_refused_without_blocking(
    tmp_path: Path, store: ArtifactStore, kind: str
) -> None:
    path = tmp_path / kind
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)  # opening it for reading would wait for a writer
    with pytest.raises(NotFoundError, match="it is not a file"):
        store.put_file(path, durable=False)


def test_a_manifest_refuses_duplicate_paths_and_foreign_bytes() -> None:
    entry = FileEntry("a", 1, "a" * 64)
    with pytest.raises(InvalidArgumentError, match="appears twice"):
        Manifest.of([entry, entry])
    with pytest.raises(InvalidArgumentError, match="not a Conveyor manifest"):
        Manifest.decode(b'{"format": "other"}')
    with pytest.raises(InvalidArgumentError, match="not a Conveyor manifest"):
        Manifest.decode(b'{"format": "conveyor.manifest/1", "files": [["../x", 1, "zz"]]}')


# -- large files, in chunks ------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_bytes() -> bytes:
    return os.urandom(CHUNKED_ABOVE + 2 * 2**20 + 5)  # 9 chunks, the last 2 MiB + 5 bytes


def test_a_large_file_is_hashed_in_chunks_named_by_their_list(
    tmp_path: Path, store: ArtifactStore, big_bytes: bytes
) -> None:
    make(tmp_path / "d", {"big.bin": big_bytes})
    entry = ingest(scan(tmp_path / "d"), store, HashCache(None), workers=3).entries[0]
    expected = [
        hashlib.sha256(big_bytes[i : i + CHUNK_BYTES]).hexdigest()
        for i in range(0, len(big_bytes), CHUNK_BYTES)
    ]
    assert list(entry.chunks) == expected
    assert entry.digest == chunked_digest(expected)
    assert entry.size == len(big_bytes)
    assert b"".join(store.get(d) for d in entry.objects) == big_bytes
    assert Manifest.decode(Manifest.of([entry]).encode()) == Manifest.of([entry])


def test_a_cached_large_file_is_not_read_unless_a_chunk_is_missing(
    tmp_path: Path, store: ArtifactStore, big_bytes: bytes
) -> None:
    make(tmp_path / "d", {"big.bin": big_bytes})
    cache = HashCache(tmp_path / "cache.db")
    first = ingest(scan(tmp_path / "d"), store, cache).entries[0]
    again = ingest(scan(tmp_path / "d"), store, cache)
    assert (again.hashed_files, again.entries[0]) == (0, first)
    store.delete(first.chunks[4])
    restored = ingest(scan(tmp_path / "d"), store, cache)
    assert restored.hashed_files == 1
    assert restored.fresh == {first.chunks[4]}  # only the missing chunk was written
    assert store.get(first.chunks[4]) == big_bytes[4 * CHUNK_BYTES : 5 * CHUNK_BYTES]


def _changed(data: bytes, at: int, length: int = 4096) -> bytes:
    return data[:at] + os.urandom(length) + data[at + length :]


def test_a_few_bytes_changed_in_a_large_file_hash_and_store_one_chunk_again(
    tmp_path: Path, store: ArtifactStore, big_bytes: bytes
) -> None:
    make(tmp_path / "d", {"big.bin": big_bytes})
    cache = HashCache(tmp_path / "cache.db")
    ingest(scan(tmp_path / "d"), store, cache)
    edited = _changed(big_bytes, 3 * CHUNK_BYTES + 100)
    make(tmp_path / "d", {"big.bin": edited}, age_ns=OLD + 1)
    again = ingest(scan(tmp_path / "d"), store, cache)
    entry = again.entries[0]
    assert (again.kept_chunks, len(again.fresh or ())) == (len(entry.chunks) - 1, 1)
    # What is recorded is what hashing every chunk from scratch gives.
    assert entry == ingest(scan(tmp_path / "d"), store, HashCache(None)).entries[0]
    assert b"".join(store.get(d) for d in entry.objects) == edited


def test_a_kept_chunk_whose_object_is_gone_is_stored_again(
    tmp_path: Path, store: ArtifactStore, big_bytes: bytes
) -> None:
    make(tmp_path / "d", {"big.bin": big_bytes})
    cache = HashCache(tmp_path / "cache.db")
    first = ingest(scan(tmp_path / "d"), store, cache).entries[0]
    make(tmp_path / "d", {"big.bin": _changed(big_bytes, 100)}, age_ns=OLD + 1)
    store.delete(first.chunks[5])
    again = ingest(scan(tmp_path / "d"), store, cache)
    assert first.chunks[5] in (again.fresh or ())
    assert store.get(first.chunks[5]) == big_bytes[5 * CHUNK_BYTES : 6 * CHUNK_BYTES]


def _old_cache(path: Path) -> Path:
    """A cache as it was made before chunk fingerprints, holding one row for /d/a."""
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")  # as every cache is
        conn.execute(
            "CREATE TABLE files (path TEXT PRIMARY KEY, size INTEGER NOT NULL, "
            "mtime_ns INTEGER NOT NULL, inode INTEGER NOT NULL, digest TEXT NOT NULL, "
            "chunks TEXT NOT NULL) WITHOUT ROWID"
        )
        conn.execute("INSERT INTO files VALUES ('/d/a', 3, 1, 7, ?, '')", ("a" * 64,))
    return path


def test_a_cache_from_before_chunk_fingerprints_still_hits(tmp_path: Path) -> None:
    path = _old_cache(tmp_path / "cache.db")
    f = LocalFile("/d/a", "a", 3, 1, 7)
    assert HashCache(path).lookup([f]) == {"/d/a": ("a" * 64, ())}


def test_an_old_cache_another_writer_holds_still_answers(tmp_path: Path) -> None:
    path = _old_cache(tmp_path / "cache.db")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # the cache cannot gain its column meanwhile
    try:
        cache = HashCache(path, timeout=0.05)
        assert cache.lookup([LocalFile("/d/a", "a", 3, 1, 7)]) == {"/d/a": ("a" * 64, ())}
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_each_cache_fingerprints_with_a_seed_of_its_own(tmp_path: Path) -> None:
    f = LocalFile("/d/a", "a", 3, 1, 7)
    seeds = []
    for name in ("one.db", "two.db", "one.db"):  # the last reopens the first
        cache = HashCache(tmp_path / name)
        cache.lookup([f])
        seeds.append(cache.seed)
    assert seeds[0] == seeds[2]
    assert seeds[0] != seeds[1]


def test_a_large_file_written_to_while_it_is_read_is_refused(
    tmp_path: Path, store: ArtifactStore, big_bytes: bytes
) -> None:
    make(tmp_path / "d", {"big.bin": big_bytes})
    found = scan(tmp_path / "d")
    make(tmp_path / "d", {"big.bin": big_bytes[::-1]}, age_ns=OLD + 1)  # same size, new mtime
    with pytest.raises(ConflictError, match=r"big\.bin changed while it was being added"):
        ingest(found, store, HashCache(None))


def test_a_manifest_refuses_chunks_that_do_not_match_the_entry() -> None:
    chunks = ["c" * 64] * chunk_count(CHUNKED_ABOVE + 1)
    good = FileEntry("big", CHUNKED_ABOVE + 1, chunked_digest(chunks), tuple(chunks))
    assert Manifest.decode(Manifest.of([good]).encode()).files == (good,)
    for bad in (
        FileEntry("big", CHUNKED_ABOVE + 1, "d" * 64, tuple(chunks)),  # digest of another list
        FileEntry("big", CHUNKED_ABOVE * 2, good.digest, good.chunks),  # too few for the size
    ):
        with pytest.raises(InvalidArgumentError, match="chunks of 'big' do not match"):
            Manifest.decode(Manifest.of([bad]).encode())
