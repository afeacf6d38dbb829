"""Ids sort by creation time and never collide; digests are sha256."""

from __future__ import annotations

import hashlib
import multiprocessing
import time
from pathlib import Path

import pytest

from conveyor.core import hashing, ids


def _many(n: int) -> list[str]:
    return [ids.new_id() for _ in range(n)]


def test_ids_are_unique_across_processes() -> None:
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        batches = pool.map(_many, [5000] * 4)
    every = [i for batch in batches for i in batch]
    assert len(set(every)) == 20000
    assert all(ids.is_id(i) for i in every)


def test_ids_made_later_sort_later() -> None:
    first = ids.new_id()
    later = [ids.new_id() for _ in range(1000)][-1]
    assert first[:10] <= later[:10]  # the 48-bit millisecond time prefix


def test_an_id_tells_when_it_was_made() -> None:
    before = time.time_ns() // 1_000_000
    made = ids.made_at_ms(ids.new_id())
    after = time.time_ns() // 1_000_000
    assert before <= made <= after
    assert ids.made_at_ms(ids.new_id().lower()) >= made  # ids are read in either case
    with pytest.raises(ValueError, match="not an id"):
        ids.made_at_ms("latest")


def test_sha256_of_bytes_files_and_streams_agree(tmp_path: Path) -> None:
    data = b"x" * (hashing.CHUNK_SIZE + 3)
    path = tmp_path / "f"
    path.write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    assert hashing.sha256_bytes(data) == expected
    assert hashing.sha256_file(path) == expected
    with path.open("rb") as f:
        assert hashing.sha256_stream(f) == expected
    assert hashing.sha256_chunks([data[:5], data[5:]]) == expected
    assert hashing.is_sha256(expected)
    assert not hashing.is_sha256(expected.upper())


def test_the_fast_digest_detects_a_one_byte_change(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"0" * 10_000)
    b.write_bytes(b"0" * 9_999 + b"1")
    assert hashing.fast_digest_file(a) != hashing.fast_digest_file(b)
    assert len(hashing.fast_digest_file(a)) == 32


def test_ids_made_one_after_another_sort_in_that_order() -> None:
    from conveyor.core.ids import new_id

    made = [new_id() for _ in range(5000)]  # many share a millisecond
    assert made == sorted(made)
    assert len(set(made)) == len(made)


def test_ids_made_at_once_are_those_made_one_after_another(monkeypatch) -> None:
    batch = ids.new_ids(3000)
    assert batch == sorted(batch)
    assert len(set(batch)) == 3000
    assert all(map(ids.is_id, batch))
    assert ids.new_id() > batch[-1]
    # Past the point where the first 14 characters change, in a batch and one by one.
    start = (int(time.time() * 1000) + 86_400_000) << 80 | ((1 << 60) - 3)
    monkeypatch.setattr(ids, "_last", start)
    at_once = ids.new_ids(6)
    monkeypatch.setattr(ids, "_last", start)
    assert at_once == [ids.new_id() for _ in range(6)]
    assert at_once[1][:14] != at_once[2][:14]  # the ids after start: ...fe, ...ff, then a carry


DIGEST = hashlib.sha256(b"x").hexdigest()


@pytest.mark.parametrize(
    "bad",
    [
        DIGEST.upper(),
        DIGEST[:-1],
        DIGEST[:30] + " " + DIGEST[30:60] + " " + DIGEST[60:62],  # 64 characters, 2 spaces
        DIGEST[:32] + "\n" + DIGEST[:31],  # 64 characters, a line break among them
        DIGEST[:63] + "g",
        DIGEST[:63] + "é",
    ],
)
def test_a_batch_of_digests_with_one_malformed_is_refused(bad: str) -> None:
    assert not hashing.is_sha256(bad)  # the batch check agrees with the single one
    assert not hashing.all_sha256([DIGEST, bad, DIGEST])
    assert hashing.all_sha256([DIGEST, "0" * 64, DIGEST])


def test_a_store_asked_about_a_malformed_digest_names_it(tmp_path: Path) -> None:
    from conveyor.core.errors import InvalidArgumentError
    from conveyor.store.artifacts.cas import ArtifactStore

    store = ArtifactStore(f"file://{tmp_path / 'store'}")
    stored = store.put_bytes(b"x").digest
    assert store.exists_many([stored, "0" * 64]) == {stored}
    with pytest.raises(InvalidArgumentError, match=r"'\.\./etc' is not an artifact digest"):
        store.exists_many([stored, "../etc"])
