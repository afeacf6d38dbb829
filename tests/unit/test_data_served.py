"""How a team server finds and lists a dataset version's files by name (``_Served``)."""

from __future__ import annotations

from conveyor.data.records import CHUNK_BYTES, FileEntry, Manifest, chunked_digest
from conveyor.data.service import _Served


def _digest(c: str) -> str:
    return c * 64


def _manifest() -> Manifest:
    big = (_digest("c"), _digest("c"), _digest("e"))  # a chunk repeated in one file
    other = (_digest("b"), _digest("a"))
    return Manifest.of(
        [
            FileEntry("z.csv", 3, _digest("1")),
            FileEntry("big.bin", 2 * CHUNK_BYTES + 5, chunked_digest(list(big)), big),
            FileEntry("a/x.txt", 2, _digest("2")),
            FileEntry("more.bin", CHUNK_BYTES + 1, chunked_digest(list(other)), other),
            FileEntry("a/w.txt", 1, _digest("3")),
        ]
    )


def test_a_version_lists_each_chunk_once_then_its_whole_files_by_name() -> None:
    names = [name for name, *_ in _Served(_manifest()).page(None, None)]
    assert names == [
        "chunks/" + _digest("a"),
        "chunks/" + _digest("b"),
        "chunks/" + _digest("c"),
        "chunks/" + _digest("e"),
        "files/a/w.txt",
        "files/a/x.txt",
        "files/z.csv",
    ]


def test_pages_of_any_size_give_the_whole_listing_in_order() -> None:
    served = _Served(_manifest())
    whole = served.page(None, None)
    for size in (1, 2, 4, 7, 8):
        paged, after = [], None
        while True:
            page = served.page(after, size)
            assert len(page) <= size
            paged += page
            if len(page) < size:
                break
            after = page[-1][0]
        assert paged == whole, size
    # a name that is not listed still places a page
    assert [n for n, *_ in served.page("files/a/w.zzz", None)] == ["files/a/x.txt", "files/z.csv"]
    assert [n for n, *_ in served.page("b", 1)] == ["chunks/" + _digest("a")]
    assert served.page(None, 0) == served.page(None, -1) == []


def test_each_listed_name_is_found_and_nothing_else() -> None:
    served = _Served(_manifest())
    for name, digest, size, media_type in served.page(None, None):
        assert served.get(name) == (digest, size, media_type)
    assert served.get("files/z.csv") == (_digest("1"), 3, "text/csv")
    assert served.get("chunks/" + _digest("a")) == (_digest("a"), 1, "application/octet-stream")
    assert served.get("chunks/" + _digest("c")) == (
        _digest("c"),
        CHUNK_BYTES,
        "application/octet-stream",
    )
    for missing in ("files/big.bin", "files/a", "files/zz.csv", "manifest.json", "chunks/x"):
        assert served.get(missing) is None, missing
